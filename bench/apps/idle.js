// An idle Node app for the 100-apps scenarios: no server, a timer that never fires, default signal handling.
'use strict';
setInterval(() => {}, 1 << 30);
