// A TypeScript HTTP server, unaware of herdsman: it listens on $PORT itself and answers 200 with
// `X-Pid: <pid>` and `<pid> <GREETING>` as body. Only erasable syntax, so any runner can strip its types.
import * as http from 'node:http';

interface Reply {
  pid: number;
  greeting: string;
}

const reply = (): Reply => ({ pid: process.pid, greeting: process.env.GREETING ?? '-' });

const server: http.Server = http.createServer((_req, res) => {
  const { pid, greeting }: Reply = reply();
  const body = `${pid} ${greeting}`;
  res.writeHead(200, {
    'X-Pid': String(pid),
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.listen(process.env.PORT, () => {
  console.log(`listening pid=${process.pid}`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close(() => process.exit(0));
  });
}
