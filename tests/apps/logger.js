// Writes LOGGER_LINES (default 2000) lines to stdout as fast as it can, each
// `logger inst=<HERDSMAN_INSTANCE> seq=<n> pad=<variable-length padding> end`,
// then `logger inst=<i> done`, then stays alive (so it is not restarted).
'use strict';
const inst = process.env.HERDSMAN_INSTANCE ?? 'x';
const lines = Number(process.env.LOGGER_LINES ?? 2000);
for (let seq = 0; seq < lines; seq++) {
  const pad = 'x'.repeat(20 + ((seq * 37) % 180));
  process.stdout.write(`logger inst=${inst} seq=${seq} pad=${pad} end\n`);
}
process.stdout.write(`logger inst=${inst} done\n`);
setInterval(() => {}, 1 << 30);
