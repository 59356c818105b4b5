// Appends `<event> <name> <pid> <ns>` lines to $STAMP_FILE (ns: process.hrtime, the system's
// monotonic clock, comparable across processes): `start` at once, `listen` just before it calls
// listen($PORT) (after LISTEN_DELAY_MS ms, default 0; only when PORT is set, i.e. in cluster mode),
// `stop` on SIGINT/SIGTERM, then after STOP_DELAY_MS ms (default 0) it closes the server, appends
// `exit` and exits 0. <name> is $HERDSMAN_APP.
// Answers HTTP requests with 200 and `X-Pid: <pid>`. Without PORT it only waits (fork mode).
'use strict';
const fs = require('fs');
const http = require('http');

function stamp(event) {
  const name = process.env.HERDSMAN_APP ?? '-';
  fs.appendFileSync(process.env.STAMP_FILE, `${event} ${name} ${process.pid} ${process.hrtime.bigint()}\n`);
}

stamp('start');
let server = null;
const keepAlive = setInterval(() => {}, 1 << 30);
if (process.env.PORT) {
  server = http.createServer((req, res) => {
    const body = String(process.pid);
    res.writeHead(200, { 'X-Pid': body, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  setTimeout(() => {
    stamp('listen');
    server.listen(process.env.PORT);
  }, Number(process.env.LISTEN_DELAY_MS ?? 0));
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    stamp('stop');
    setTimeout(() => {
      clearInterval(keepAlive);
      const exit = () => {
        stamp('exit');
        process.exit(0);
      };
      if (server && server.listening) {
        server.close(exit);
      } else {
        exit();
      }
    }, Number(process.env.STOP_DELAY_MS ?? 0));
  });
}
