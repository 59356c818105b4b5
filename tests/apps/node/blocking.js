// The article's blocking route: an express app whose `/block` spins on the event loop for 30 s, so the
// worker answers nobody and never exits. Every other path answers with the worker's pid (X-Pid).
'use strict';
const express = require('express');

const app = express();
app.get('/block', () => {
  console.log(`blocking pid=${process.pid}`);
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    // doWork(30000): nothing else runs on this worker meanwhile
  }
});
app.use((req, res) => {
  res.set('X-Pid', String(process.pid)).send(String(process.pid));
});
app.listen(process.env.PORT, () => console.log(`blocking app listening pid=${process.pid}`));
