// A crash loop: notes its start (a timestamp in ms, one line per start, in $BENCH_STARTS) and exits 1 at once.
'use strict';
if (process.env.BENCH_STARTS) require('fs').appendFileSync(process.env.BENCH_STARTS, `${Date.now()}\n`);
process.exit(1);
