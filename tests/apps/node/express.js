// An unmodified express app: app.listen(PORT), as its docs say. X-Pid names the worker that answered.
'use strict';
const express = require('express');

const app = express();
app.get('/', (req, res) => {
  res.set('X-Pid', String(process.pid)).send(String(process.pid));
});
app.listen(process.env.PORT, () => console.log(`express listening pid=${process.pid}`));
