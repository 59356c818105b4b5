// An app with several servers, unaware of herdsman: one HTTP server per entry of LISTEN_CALLS, a JSON
// array of argument lists for `server.listen` (e.g. `[[3000], [3001, "127.0.0.1"], [{"path": "a.sock"}]]`).
// Server <i> answers 200 with `X-Pid: <pid>` and the body `<i> <pid>`. Once listening it prints
// `listening <i> fd=<fd>` on stdout (<fd>: the descriptor it listens on, 3, 4, ... for herdsman's
// sockets); if its listen fails it prints `error <i> <code>` on stderr and the others go on.
// SIGINT/SIGTERM close every server and exit 0.
'use strict';
const http = require('http');

const calls = JSON.parse(process.env.LISTEN_CALLS ?? '[]');
const servers = calls.map((args, i) => {
  const server = http.createServer((req, res) => {
    const body = `${i} ${process.pid}`;
    res.writeHead(200, {
      'X-Pid': String(process.pid),
      'Content-Type': 'text/plain',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  server.on('error', (err) => console.error(`error ${i} ${err.code}`));
  server.listen(...args, () => console.log(`listening ${i} fd=${server._handle.fd}`));
  return server;
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    let open = servers.length;
    if (open === 0) process.exit(0);
    for (const server of servers) {
      server.close(() => {
        open -= 1;
        if (open === 0) process.exit(0);
      });
    }
  });
}
