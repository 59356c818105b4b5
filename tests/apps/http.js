// A plain Node HTTP server, unaware of herdsman: it listens on $PORT itself.
// Answers 200 with `X-Pid: <pid>` and the pid as body.
// LOG_REQUESTS=1 logs one line per request to stdout.
// SIGINT/SIGTERM close the server gracefully (in-flight requests finish).
'use strict';
const http = require('http');

const server = http.createServer((req, res) => {
  if (process.env.LOG_REQUESTS) {
    console.log(`request pid=${process.pid} url=${req.url}`);
  }
  const body = String(process.pid);
  res.writeHead(200, {
    'X-Pid': body,
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.listen(process.env.PORT, () => {
  console.log(`listening pid=${process.pid}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    server.close(() => process.exit(0));
  });
}
