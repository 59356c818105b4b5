// Like http.js, but if the file named by $CRASH_FLAG exists at start-up it writes a line to stderr
// and exits 1 at once: once the test creates the flag, every new process of the app crashes while
// the ones already running go on serving.
// Otherwise it is http.js.
'use strict';
const fs = require('fs');

const flag = process.env.CRASH_FLAG;
if (flag && fs.existsSync(flag)) {
  process.stderr.write(`flaky pid=${process.pid}: ${flag} exists, exiting with code 1\n`);
  process.exit(1);
}

require('./http.js');
