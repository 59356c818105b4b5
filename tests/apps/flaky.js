// Like http.js, but if the file named by $CRASH_FLAG exists at start-up it writes a line to stderr
// and exits 1 at once: once the test creates the flag, every new process of the app crashes while
// the ones already running go on serving.
// Answers 200 with `X-Pid: <pid>` and the pid as body. SIGINT/SIGTERM close the server gracefully.
'use strict';
const fs = require('fs');
const http = require('http');

const flag = process.env.CRASH_FLAG;
if (flag && fs.existsSync(flag)) {
  process.stderr.write(`flaky pid=${process.pid}: ${flag} exists, exiting with code 1\n`);
  process.exit(1);
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

server.listen(process.env.PORT, () => {
  console.log(`listening pid=${process.pid}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    server.close(() => process.exit(0));
  });
}
