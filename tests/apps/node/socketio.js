// A socket.io 4 server as a PM2 user writes it: `new Server(PORT)`, unaware of herdsman (the preload
// gives its listen() the inherited socket). Each `hello` is acknowledged with the worker's pid.
'use strict';
const { Server } = require('socket.io');

const io = new Server(Number(process.env.PORT));
io.on('connection', (socket) => {
  socket.on('hello', (message, ack) => ack({ pid: process.pid, echo: message }));
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => io.close(() => process.exit(0)));
}
