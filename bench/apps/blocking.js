// The article's blocking route (issue 16): `/block` spins the event loop for 30 s, so the worker answers
// nobody and never exits; every other path answers with the worker's pid (X-Pid). Plain http: no dependency.
'use strict';
const http = require('http');

http
  .createServer((req, res) => {
    if (req.url === '/block') {
      const until = Date.now() + 30_000;
      while (Date.now() < until) {
        // doWork(30000)
      }
    }
    const body = String(process.pid);
    res.writeHead(200, { 'X-Pid': body, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  })
  .listen(process.env.PORT);
