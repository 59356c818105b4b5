// A chatty HTTP server: it writes CHATTY_LINES lines (about 100 bytes each) to stdout every 5 ms, and
// answers every request with `X-Pid` and, as its body, how many lines it has written so far.
// GET /mark/<text> also writes the line `mark <text>`.
// Its stdout is written synchronously (a pipe on Linux): if nobody read it, the writes would block the
// event loop and the server would stop answering.
'use strict';
const http = require('http');

const perTick = Number(process.env.CHATTY_LINES || 20);
const pad = 'x'.repeat(80);
let written = 0;

setInterval(() => {
  let chunk = '';
  for (let i = 0; i < perTick; i++) {
    chunk += `chatty seq=${written + i} ${pad}\n`;
  }
  process.stdout.write(chunk);
  written += perTick;
}, 5);

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/mark/')) {
    process.stdout.write(`mark ${req.url.slice(6)}\n`);
  }
  const body = String(written);
  res.writeHead(200, {
    'X-Pid': String(process.pid),
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.listen(process.env.PORT);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    server.close(() => process.exit(0));
  });
}
