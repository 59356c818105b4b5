// A plain Node http server: it calls listen(PORT) itself, and under herdsman every worker serves from the
// one socket the daemon holds. The X-Pid header tells which worker answered.
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 3000);
const server = http.createServer((req, res) => {
  res.setHeader('X-Pid', String(process.pid));
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello from worker ${process.env.NODE_APP_INSTANCE ?? '-'} (pid ${process.pid})\n`);
});
server.listen(port, () => console.log(`worker ${process.pid} listening on ${port}`));

// Graceful stop: finish in-flight requests, then exit.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
