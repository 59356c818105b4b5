// herdsman's preload for Node workers (loaded with NODE_OPTIONS=--require).
//
// 1. Shared sockets. herdsman binds the app's sockets itself and passes them to every worker as fds 3, 4, ...
//    (systemd socket activation: LISTEN_FDS, LISTEN_PID), with their addresses in HERDSMAN_LISTEN (a JSON
//    array, fd 3 first: `*:PORT` for every interface, `HOST:PORT`, `[V6]:PORT`, `unix:PATH`). This makes an
//    unmodified app's `server.listen(PORT)` (plain http, express, fastify, koa, ...) listen on the inherited
//    socket for that port instead of binding it again, so all workers share one socket and the kernel hands
//    each connection to one of them.
//    Covered: net.Server#listen (and so http, https, http2 servers) called with one of the ports herdsman
//    listens on, as a number, a numeric string or an options object with `port`, with or without a host;
//    or with one of its Unix socket paths (resolved against the current directory). The first such call
//    for each socket takes it; a later one binds normally.
//    A host is honoured: the call takes the socket only if the socket serves no more than that host (the
//    same address, a loopback socket for 'localhost', or any socket when the host is '0.0.0.0', '::' or
//    absent). A loopback-only server is never put on a socket that listens on every interface: the app's
//    own bind goes ahead instead (and fails while herdsman holds the port), and a line on stderr says
//    what to change.
//    Not covered: listen on a port or path herdsman was not given (binds normally), or in a process that is
//    not the worker herdsman started (LISTEN_PID is checked, so child processes are left alone).
// 2. Readiness. When a server is listening on an inherited socket, the worker tells herdsman, as PM2's
//    cluster mode counts a worker online. `process.send('ready')`
//    (PM2's way for --wait-ready apps) tells herdsman too: without an IPC channel the preload provides
//    `process.send` for it. Both go through a pipe herdsman passes (HERDSMAN_READY_FD), which costs nothing,
//    where an IPC channel would cost each worker 2.4 MiB.
// 3. Runtime metrics. Every 5 s (an unref'd timer: it never keeps a worker alive) the worker writes on the
//    same pipe `M<p50>,<p99>,<heap used>,<heap total>\n`: the event-loop delay percentiles over the last
//    interval in microseconds (how late a 100 ms timer fires, as perf_hooks.monitorEventLoopDelay measures
//    it) and V8's heap in bytes (process.memoryUsage). HERDSMAN_NODE_RUNTIME=off turns it off.
// 4. Watchdog. With WATCHDOG_USEC (the app's `watchdog`), the worker sends a heartbeat (`W` on the same pipe,
//    herdsman's WATCHDOG=1 for Node) at half the period from a timer on the event loop: a loop blocked by a
//    busy route stops it, and herdsman replaces the worker. The timer is unref'd: it never keeps a process
//    alive.
'use strict';

(function herdsman() {
  const env = process.env;
  // The pipe is the worker's own only in the process herdsman started; children must not use it.
  const readyFd = Number.parseInt(env.HERDSMAN_READY_FD, 10);
  delete env.HERDSMAN_READY_FD;
  const ours = readyFd >= 3;

  const activated =
    Number.parseInt(env.LISTEN_FDS, 10) > 0 && Number.parseInt(env.LISTEN_PID, 10) === process.pid;
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

  // The watchdog's heartbeat (see 4. above), in the process herdsman started only (WATCHDOG_PID).
  const watchdogUsec = Number.parseInt(env.WATCHDOG_USEC, 10);
  if (ours && watchdogUsec > 0 && Number.parseInt(env.WATCHDOG_PID, 10) === process.pid) {
    tell('W');
    setInterval(tell, Math.max(50, Math.floor(watchdogUsec / 2000)), 'W').unref();
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

  if (ours) reportRuntime(env, tell);

  // Without a shared socket there is nothing to patch, and `net` is not loaded for nothing (an app that
  // never listens would pay for it): such a worker gets ready by process.send('ready') or its grace period.
  if (!activated) return;
  const net = require('net');
  const path = require('path');

  // A host as a comparable value: `any` for every interface (no host, '0.0.0.0', '::'), otherwise `name`, an
  // IP address in one canonical spelling (IPv4-mapped IPv6 as IPv4) or a lower-case host name.
  function hostOf(host) {
    if (host === undefined || host === null || host === '') return { any: true, name: '' };
    let name = String(host).toLowerCase();
    if (name.startsWith('[') && name.endsWith(']')) name = name.slice(1, -1);
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(name);
    if (mapped) name = mapped[1];
    if (net.isIPv6(name)) {
      try {
        name = new URL(`http://[${name}]/`).hostname.slice(1, -1);
      } catch (_) {
        // A zone index (fe80::1%eth0): compared as written.
      }
    }
    if (name === '0.0.0.0' || name === '::') return { any: true, name };
    return { any: false, name };
  }

  function isLoopback(name) {
    return name === '::1' || (net.isIPv4(name) && name.startsWith('127.'));
  }

  // The sockets herdsman passed, fd 3 first: HERDSMAN_LISTEN is their addresses (`*:PORT`, `HOST:PORT`,
  // `[V6]:PORT`, `unix:PATH`) as a JSON array. Without it, fd 3 is PORT on every interface.
  function inheritedSockets() {
    let addresses = null;
    try {
      addresses = JSON.parse(env.HERDSMAN_LISTEN);
    } catch (_) {
      addresses = null;
    }
    if (!Array.isArray(addresses)) {
      return port > 0 ? [{ fd: 3, port, host: hostOf(undefined), text: `*:${port}` }] : [];
    }
    return addresses.slice(0, Number.parseInt(env.LISTEN_FDS, 10)).map((address, i) => {
      const text = String(address);
      const fd = 3 + i;
      if (text.startsWith('unix:')) return { fd, path: path.resolve(text.slice(5)), text };
      const colon = text.lastIndexOf(':');
      const host = text.slice(0, colon);
      return { fd, port: Number(text.slice(colon + 1)), host: hostOf(host === '*' ? '' : host), text };
    });
  }

  const sockets = inheritedSockets();
  if (sockets.length === 0) return;

  // What a listen() call asks for, read as Node reads its arguments: `{ port, host }`, `{ path }`, or null
  // (a descriptor, a handle, or no port: not ours).
  function requested(args) {
    const first = args[0];
    if (first !== null && typeof first === 'object') {
      if (first.fd !== undefined || first.handle !== undefined || first._handle !== undefined) return null;
      if (typeof first.port === 'number' || typeof first.port === 'string') {
        return { port: Number(first.port), host: first.host, signal: first.signal };
      }
      if (typeof first.path === 'string') return { path: first.path, signal: first.signal };
      return null;
    }
    const host = args.length > 1 && typeof args[1] === 'string' ? args[1] : undefined;
    if (typeof first === 'number') return { port: first, host };
    if (typeof first === 'string') return Number(first) >= 0 ? { port: Number(first), host } : { path: first };
    return null;
  }

  // A socket serves the host asked for when it is the same address, or the loopback socket for
  // 'localhost', or when the app asks for every interface (the operator chose a narrower address).
  // A socket on every interface never serves a narrower host: that would widen the app's exposure.
  function serves(socket, want) {
    if (want.any) return true;
    if (socket.host.any) return false;
    return socket.host.name === want.name || (want.name === 'localhost' && isLoopback(socket.host.name));
  }

  // The line the app's error log gets when its listen() names a host herdsman's socket does not serve:
  // what happened and what to change.
  function explain(request, want, socket) {
    const port = request.port;
    const asked = want.name;
    const ip = net.isIP(asked) ? asked : asked === 'localhost' ? '127.0.0.1' : `<the IP of ${asked}>`;
    const address = net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
    const start = `herdsman: the app listens on port ${port} with host '${request.host}'`;
    const fix = `give the app --listen ${address} (listen = "${address}" in the ecosystem file)`;
    if (socket.host.any) {
      return (
        `${start}, but herdsman's socket for port ${port} (fd ${socket.fd}) listens on every interface ` +
        `(--listen ${port}). Not using it, so that the server is not exposed beyond ${asked}: the app binds ` +
        `the port itself, which fails (EADDRINUSE) while herdsman holds it. To serve ${asked} only, ${fix}; ` +
        `to serve every interface, call listen(${port}) without a host.\n`
      );
    }
    return (
      `${start}, but herdsman's socket for port ${port} (fd ${socket.fd}) listens on ${socket.text}. ` +
      `Not using it: the app binds ${asked} port ${port} itself (one socket per worker, so a second ` +
      `worker's bind fails). To share one socket on ${asked}, ${fix}; to use ${socket.text}, call ` +
      `listen(${port}) without a host.\n`
    );
  }

  function warn(message) {
    try {
      process.stderr.write(message);
    } catch (_) {
      // No stderr: nothing else to tell.
    }
  }

  // The inherited socket a listen() call takes, or null (it binds as usual). Each socket is taken once.
  function pick(request) {
    if (request.path !== undefined) {
      const wanted = path.resolve(request.path);
      return sockets.find((s) => !s.taken && s.path === wanted) || null;
    }
    if (!(Number.isInteger(request.port) && request.port > 0)) return null;
    const free = sockets.filter((s) => !s.taken && s.path === undefined && s.port === request.port);
    if (free.length === 0) return null;
    const want = hostOf(request.host);
    const exact = free.find((s) => !want.any && !s.host.any && s.host.name === want.name);
    const socket = exact || free.find((s) => serves(s, want));
    if (socket === undefined) {
      warn(explain(request, want, free[0]));
      return null;
    }
    return socket;
  }

  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function herdsmanListen(...args) {
    const request = requested(args);
    const socket = request === null ? null : pick(request);
    if (socket === null) return listen.apply(this, args);
    socket.taken = true;
    this.once('listening', reportListening);
    const options = request.signal === undefined ? { fd: socket.fd } : { fd: socket.fd, signal: request.signal };
    const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    return callback === undefined ? listen.call(this, options) : listen.call(this, options, callback);
  };
})();

// Runtime metrics (3. above): self-contained, started once the readiness pipe is known to be ours.
// The event-loop delay is measured as perf_hooks.monitorEventLoopDelay measures it (how late a timer of a
// fixed period fires), with one unref'd 100 ms interval and a preallocated array of the last window's
// samples: requiring perf_hooks alone costs a worker about 0.6 MiB of RSS, and its 20 ms timer more CPU.
function reportRuntime(env, tell) {
  if (env.HERDSMAN_NODE_RUNTIME === 'off') return;
  const TICK_MS = 100;
  const REPORT_MS = 5000;
  // One window's delays in microseconds: 50 ticks, or fewer when the loop was blocked.
  const samples = new Float64Array(64);
  let count = 0;
  const nowUs = () => {
    const [s, ns] = process.hrtime();
    return s * 1e6 + ns / 1e3;
  };
  let last = nowUs();
  let reported = last;
  const percentile = (sorted, n, p) => sorted[Math.min(n - 1, Math.ceil((p / 100) * n) - 1)];
  const timer = setInterval(() => {
    const now = nowUs();
    if (count < samples.length) samples[count++] = Math.max(0, now - last - TICK_MS * 1000);
    last = now;
    if (now - reported < REPORT_MS * 1000) return;
    reported = now;
    const sorted = samples.subarray(0, count).sort();
    const p50 = count > 0 ? Math.round(percentile(sorted, count, 50)) : 0;
    const p99 = count > 0 ? Math.round(percentile(sorted, count, 99)) : 0;
    count = 0;
    const memory = process.memoryUsage();
    tell(`M${p50},${p99},${memory.heapUsed},${memory.heapTotal}\n`);
  }, TICK_MS);
  timer.unref();
}
