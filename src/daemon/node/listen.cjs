// herdsman's listen preload for Node apps (loaded with NODE_OPTIONS=--require).
//
// herdsman binds the app's socket itself and passes it to every worker as fd 3 (systemd socket activation:
// LISTEN_FDS, LISTEN_PID). This makes an unmodified app's `server.listen(PORT)` (plain http, express,
// fastify, koa, ...) listen on that inherited socket instead of binding the port again, so all workers
// share one socket and the kernel hands each connection to one of them.
//
// Covered: net.Server#listen (and so http, https, http2 servers) called with the port herdsman was told to
// listen on (the PORT variable), as a number, a numeric string or an options object with `port`. The
// first such call takes the socket; a later one on the same port binds normally.
// Not covered: listen on another port (binds normally: every worker then needs its own port), on a path
// (Unix sockets), or a process that is not the worker herdsman started (LISTEN_PID is checked, so child
// processes are left alone).
'use strict';

(function herdsmanListen() {
  const env = process.env;
  const fds = Number.parseInt(env.LISTEN_FDS, 10);
  if (!(fds > 0) || Number.parseInt(env.LISTEN_PID, 10) !== process.pid) return;
  const port = Number.parseInt(env.PORT, 10);
  if (!(port > 0)) return;

  const net = require('net');
  const listen = net.Server.prototype.listen;
  let taken = false;

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

  net.Server.prototype.listen = function herdsmanListenOnInheritedSocket(...args) {
    if (taken || requestedPort(args) !== port) return listen.apply(this, args);
    taken = true;
    const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    return callback === undefined ? listen.call(this, { fd: 3 }) : listen.call(this, { fd: 3 }, callback);
  };
})();
