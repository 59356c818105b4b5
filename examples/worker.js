// A background worker (fork mode: no socket). It does a unit of work every few seconds and stops cleanly.
'use strict';

let jobs = 0;
const timer = setInterval(() => {
  jobs += 1;
  console.log(`worker ${process.pid}: job ${jobs} done (${process.env.QUEUE ?? 'default'} queue)`);
}, 5000);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    clearInterval(timer);
    console.log(`worker ${process.pid}: stopping after ${jobs} jobs`);
    process.exit(0);
  });
}
