// Like http.js, but waits SLOW_LISTEN_MS (default 1500) ms after start before it calls listen(PORT):
// a replacement that takes a while to be able to serve.
// Answers 200 with `X-Pid: <pid>` and the pid as body. SIGINT/SIGTERM close the server gracefully.
// With STAMP_FILE set, appends `listen <pid> <ns>` just before it calls listen() and
// `closing <pid> <ns>` on SIGINT/SIGTERM (ns: process.hrtime, the system's monotonic clock,
// comparable across processes).
'use strict';
const fs = require('fs');
const http = require('http');

function stamp(what) {
  if (process.env.STAMP_FILE) {
    fs.appendFileSync(process.env.STAMP_FILE, `${what} ${process.pid} ${process.hrtime.bigint()}\n`);
  }
}

const server = http.createServer((req, res) => {
  const body = String(process.pid);
  res.writeHead(200, {
    'X-Pid': body,
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});

setTimeout(() => {
  stamp('listen');
  server.listen(process.env.PORT, () => {
    console.log(`listening pid=${process.pid}`);
  });
}, Number(process.env.SLOW_LISTEN_MS ?? 1500));

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    stamp('closing');
    server.close(() => process.exit(0));
  });
}
