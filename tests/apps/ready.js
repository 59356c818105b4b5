// A Node worker that starts no server and says it is ready with `process.send('ready')` (as under
// PM2's --wait-ready) after READY_DELAY_MS ms (default 0), or never when READY_DELAY_MS=never.
// Writes its pid to $READY_OUT_DIR/<pid>.pid at start (atomically: temp file + rename) and
// `$READY_OUT_DIR/<pid>.sent` once it has sent 'ready'. Exits 0 on SIGINT/SIGTERM.
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.env.READY_OUT_DIR;
function write(name, text) {
  if (!dir) return;
  const tmp = path.join(dir, `.${name}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, name));
}

write(`${process.pid}.pid`, `${process.pid}\n`);
const delay = process.env.READY_DELAY_MS ?? '0';
if (delay !== 'never') {
  setTimeout(() => {
    process.send('ready');
    write(`${process.pid}.sent`, `${process.pid}\n`);
  }, Number(delay));
}
const keepAlive = setInterval(() => {}, 1 << 30);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    clearInterval(keepAlive);
    process.exit(0);
  });
}
