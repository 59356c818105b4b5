// A PM2 ecosystem file for `herdsman import` (the test copies it and replaces the __PLACEHOLDERS__):
// a cluster app on a port from env.PORT, a fork-mode worker, and an app with options herdsman does
// not map (`watch_options`: chokidar's).
'use strict';
const path = require('path');

const apps = '__APPS_DIR__';

module.exports = {
  apps: [
    {
      name: 'api',
      script: path.join(apps, 'http.js'),
      exec_mode: 'cluster',
      instances: 2,
      env: { PORT: __API_PORT__ },
      max_memory_restart: '300M',
    },
    {
      name: 'bg',
      script: path.join(apps, 'stamp.sh'),
      exec_mode: 'fork',
      env: { STAMP_FILE: '__STAMP_FILE__' },
    },
    {
      name: 'watched',
      script: path.join(apps, 'ready.js'),
      watch_options: { usePolling: true },
      kill_timeout: 3000,
    },
  ],
};
