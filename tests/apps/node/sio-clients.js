// socket.io clients with the default transports (HTTP long-polling, then the upgrade to WebSocket), each
// bound to one of several loopback source addresses.
// Usage: node sio-clients.js PORT CLIENTS SOURCES
// Prints one JSON line: { ok, failed: [{ client, source, error }], clients: [{ client, source, pids, upgraded }] }.
'use strict';
const http = require('http');
const { io } = require('socket.io-client');

const [port, count, sources] = process.argv.slice(2).map(Number);
const DEADLINE_MS = 15000;

function client(index) {
  const source = `127.0.0.${1 + (index % sources)}`;
  const agent = new http.Agent({ localAddress: source });
  return new Promise((resolve) => {
    const result = { client: index, source, pids: [], upgraded: false };
    const socket = io(`http://127.0.0.1:${port}`, {
      agent,
      localAddress: source,
      reconnection: false,
      timeout: DEADLINE_MS,
      forceNew: true,
    });
    const done = (error) => {
      clearTimeout(timer);
      socket.close();
      agent.destroy();
      resolve(error ? { ...result, error: String(error) } : result);
    };
    const timer = setTimeout(() => done('timed out'), DEADLINE_MS);
    const hello = (n) =>
      new Promise((ok, fail) => {
        socket.timeout(5000).emit('hello', `${index}/${n}`, (err, reply) => {
          if (err) return fail(new Error(`no answer to hello ${n}`));
          if (!reply || reply.echo !== `${index}/${n}`) return fail(new Error('wrong answer'));
          result.pids.push(reply.pid);
          ok();
        });
      });
    socket.on('connect_error', (e) => done(`connect_error: ${e.message}`));
    socket.on('disconnect', (reason) => done(`disconnected: ${reason}`));
    socket.on('connect', async () => {
      try {
        await hello(1);
        // Then over WebSocket, once the transport is upgraded.
        if (socket.io.engine.transport.name !== 'websocket') {
          await new Promise((ok, fail) => {
            const wait = setTimeout(() => fail(new Error('no upgrade to websocket')), 5000);
            socket.io.engine.once('upgrade', () => {
              clearTimeout(wait);
              ok();
            });
          });
        }
        result.upgraded = true;
        await hello(2);
        socket.off('disconnect');
        done();
      } catch (e) {
        done(e.message);
      }
    });
  });
}

Promise.all(Array.from({ length: count }, (_, i) => client(i))).then((results) => {
  const failed = results.filter((r) => r.error);
  console.log(JSON.stringify({ ok: results.length - failed.length, failed, clients: results }));
  process.exit(0);
});
