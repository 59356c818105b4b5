// Writes numbered lines to stdout and stderr as fast as it can, then stays alive (so it is not restarted):
//   `numbers inst=<HERDSMAN_INSTANCE> out seq=<n> pad=<padding> end` on stdout,
//   `numbers inst=<i> err seq=<n> pad=<padding> end` on stderr,
// then `numbers inst=<i> out done` and `numbers inst=<i> err done`.
// NUMBERS_LINES (default 2000) lines per stream; NUMBERS_PAD (default 60) bytes of padding at most.
// With NUMBERS_GO=<path> it first prints `numbers inst=<i> waiting` on stdout and waits for that file.
'use strict';
const fs = require('fs');
const inst = process.env.HERDSMAN_INSTANCE ?? 'x';
const lines = Number(process.env.NUMBERS_LINES ?? 2000);
const pad = Number(process.env.NUMBERS_PAD ?? 60);
const go = process.env.NUMBERS_GO;

function write() {
  for (let seq = 0; seq < lines; seq++) {
    const p = 'x'.repeat(seq % (pad + 1));
    process.stdout.write(`numbers inst=${inst} out seq=${seq} pad=${p} end\n`);
    process.stderr.write(`numbers inst=${inst} err seq=${seq} pad=${p} end\n`);
  }
  process.stdout.write(`numbers inst=${inst} out done\n`);
  process.stderr.write(`numbers inst=${inst} err done\n`);
}

if (go) {
  process.stdout.write(`numbers inst=${inst} waiting\n`);
  const timer = setInterval(() => {
    if (fs.existsSync(go)) {
      clearInterval(timer);
      write();
    }
  }, 20);
} else {
  write();
}
setInterval(() => {}, 1 << 30);
