// An HTTP server on $PORT that leaks: every 100 ms it keeps another LEAK_MB (default 4) MiB, up to
// LEAK_CAP_MB (default 400). Answers 200 with its pid. SIGINT/SIGTERM close it gracefully.
'use strict';
const http = require('http');

const step = Number(process.env.LEAK_MB || 4) * 1024 * 1024;
const cap = Number(process.env.LEAK_CAP_MB || 400) * 1024 * 1024;
const kept = [];
let total = 0;
setInterval(() => {
  if (total < cap) {
    kept.push(Buffer.alloc(step, 1));
    total += step;
  }
}, 100);

const server = http.createServer((req, res) => {
  const body = String(process.pid);
  res.writeHead(200, { 'X-Pid': body, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(process.env.PORT);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => server.close(() => process.exit(0)));
}
