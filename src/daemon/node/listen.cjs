// herdsman's preload for Node workers (loaded with NODE_OPTIONS=--require).
//
// 1. Shared socket. herdsman binds the app's socket itself and passes it to every worker as fd 3 (systemd
//    socket activation: LISTEN_FDS, LISTEN_PID). This makes an unmodified app's `server.listen(PORT)`
//    (plain http, express, fastify, koa, ...) listen on that inherited socket instead of binding the port
//    again, so all workers share one socket and the kernel hands each connection to one of them.
//    Covered: net.Server#listen (and so http, https, http2 servers) called with the port herdsman was told
//    to listen on (the PORT variable), as a number, a numeric string or an options object with `port`. The
//    first such call takes the socket; a later one binds normally.
//    Not covered: listen on another port (binds normally), on a path (Unix sockets), or in a process that
//    is not the worker herdsman started (LISTEN_PID is checked, so child processes are left alone).
// 2. Readiness. When that server is listening, the worker tells herdsman, as PM2's cluster mode counts a
//    worker online. `process.send('ready')`
//    (PM2's way for --wait-ready apps) tells herdsman too: without an IPC channel the preload provides
//    `process.send` for it. Both go through a pipe herdsman passes (HERDSMAN_READY_FD), which costs nothing,
//    where an IPC channel would cost each worker 2.4 MiB.
'use strict';

(function herdsman() {
  const env = process.env;
  // The pipe is the worker's own only in the process herdsman started; children must not use it.
  const readyFd = Number.parseInt(env.HERDSMAN_READY_FD, 10);
  delete env.HERDSMAN_READY_FD;
  const ours = readyFd >= 3;

  const activated =
    Number.parseInt(env.LISTEN_FDS, 10) > 0 &&
    Number.parseInt(env.LISTEN_PID, 10) === process.pid &&
    Number.parseInt(env.PORT, 10) > 0;
  const port = Number.parseInt(env.PORT, 10);
  if (!activated && !ours) return;

  const fs = require('fs');
  function tell(byte) {
    if (!ours) return;
    try {
      fs.writeSync(readyFd, byte);
    } catch (_) {
      // The daemon is gone; the worker goes on serving.
    }
  }

  let reported = false;
  function reportListening() {
    if (reported) return;
    reported = true;
    tell('L');
  }

  if (ours && typeof process.send !== 'function') {
    // PM2's readiness idiom, process.send('ready'), without the cost of an IPC channel. Other messages
    // have nowhere to go, as with no supervisor at all.
    process.send = function send(message, ...rest) {
      if (message === 'ready') tell('R');
      const callback = rest.find((arg) => typeof arg === 'function');
      if (callback) process.nextTick(callback, null);
      return true;
    };
  }

  function requestedPort(args) {
    const first = args[0];
    if (first !== null && typeof first === 'object') {
      if (first.fd !== undefined || first.handle !== undefined || first.path !== undefined) return null;
      if (first._handle !== undefined) return null; // a server or socket handle
      return first.port === undefined ? null : Number(first.port);
    }
    if (typeof first === 'number') return first;
    if (typeof first === 'string' && /^\d+$/.test(first)) return Number(first);
    return null;
  }

  // Without a shared socket there is nothing to patch, and `net` is not loaded for nothing (an app that
  // never listens would pay for it): such a worker gets ready by process.send('ready') or its grace period.
  if (!activated) return;
  const net = require('net');
  const listen = net.Server.prototype.listen;
  let taken = false;
  net.Server.prototype.listen = function herdsmanListen(...args) {
    if (activated && !taken && requestedPort(args) === port) {
      taken = true;
      this.once('listening', reportListening);
      const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
      return callback === undefined ? listen.call(this, { fd: 3 }) : listen.call(this, { fd: 3 }, callback);
    }
    return listen.apply(this, args);
  };
})();
