# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_herdsman_global_optspecs
    string join \n h/help V/version
end

function __fish_herdsman_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_herdsman_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_herdsman_using_subcommand
    set -l cmd (__fish_herdsman_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c herdsman -n "__fish_herdsman_needs_command" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_needs_command" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "start" -d 'Start an app (a script, a program or a "command string"), or start again an app by name, id or `all`'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "list" -d 'List every worker'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "ls" -d 'List every worker'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "l" -d 'List every worker'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "ps" -d 'List every worker'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "status" -d 'List every worker'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "jlist" -d 'The same as `list --json` (PM2\'s name)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "describe" -d 'Everything about an app: its definition, restart policy, logs, environment (secrets masked) and each worker\'s process group'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "show" -d 'Everything about an app: its definition, restart policy, logs, environment (secrets masked) and each worker\'s process group'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "info" -d 'Everything about an app: its definition, restart policy, logs, environment (secrets masked) and each worker\'s process group'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "desc" -d 'Everything about an app: its definition, restart policy, logs, environment (secrets masked) and each worker\'s process group'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "stop" -d 'Stop workers gracefully (kill signal, then SIGKILL after the kill timeout) and free the app\'s port'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "restart" -d 'Stop then start workers; the listening socket stays open, so no connection is refused'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "reload" -d 'Replace workers one at a time with no downtime: each new worker is ready before the old one stops. With an ecosystem file: start its new apps and reload only the apps whose definition changed'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "startOrReload" -d '`reload FILE` under PM2\'s names: start the file\'s new apps, reload the changed ones'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "startOrRestart" -d '`reload FILE` under PM2\'s names: start the file\'s new apps, reload the changed ones'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "startOrGracefulReload" -d '`reload FILE` under PM2\'s names: start the file\'s new apps, reload the changed ones'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "scale" -d 'Set an app\'s number of workers: N, +N or -N. New workers share the app\'s sockets; removed ones (the highest instances) stop gracefully'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "signal" -d 'Send a signal to every worker of an app (each worker\'s own pid)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "delete" -d 'Stop workers and forget them'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "del" -d 'Stop workers and forget them'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "logs" -d 'Print the last lines of apps\' logs merged by time, then follow them; each line is prefixed `app|instance`'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "monit" -d 'A live dashboard: every worker\'s CPU, memory and status, the selected one\'s history and log; restart, reload or stop it from the keyboard (? shows the keys)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "events" -d 'Follow the daemon\'s events (started, ready, exited, crashed, restarted, errored, hung, memory-limit, reload steps, stopped, deleted, job runs), a line each'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "flush" -d 'Empty apps\' logs: truncate the current files and remove the rotated ones'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "reloadLogs" -d 'Reopen every app\'s log by its path, for an external rotator (logrotate\'s `postrotate`) that renamed the files; herdsman rotates by itself otherwise (`logs --reopen` does the same)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "reload-logs" -d 'Reopen every app\'s log by its path, for an external rotator (logrotate\'s `postrotate`) that renamed the files; herdsman rotates by itself otherwise (`logs --reopen` does the same)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "kill" -d 'Stop every app and the daemon'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "jobs" -d 'Scheduled jobs: each with its schedule in words, next run (local and UTC), last outcome and counts'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "fleet" -d 'The fleet stores of the `scope = "fleet"` jobs: `herdsman fleet status`'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "trigger" -d 'Run a scheduled job now (obeying its `overlap`); prints the run id'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "update" -d 'Move the running daemon onto this herdsman executable (after installing a new one) without restarting any app: same workers, same sockets'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "version" -d 'Print this CLI\'s version and the running daemon\'s (keeper and controller)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "init" -d 'Write a commented ecosystem.toml to start from'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "schema" -d 'Print the JSON Schema of ecosystem.toml (for editor completion and checks)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "import" -d 'Convert a PM2 ecosystem file (ecosystem.config.js, evaluated with node, or JSON) to ecosystem.toml'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "daemon" -d 'Run the daemon (commands start it when needed)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "save" -d 'Remember the apps that run now (their specs and environments) in HERDSMAN_HOME/dump.json'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "resurrect" -d 'Start the saved apps that do not run'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "startup" -d 'Print a systemd unit that runs the daemon for this home at boot (Type=notify)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "unstartup" -d 'Disable and remove the unit `startup --install` wrote'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "run" -d 'Run an ecosystem file in the foreground: the container entry point (logs to stdout, PID 1 duties, SIGTERM stops every app)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "upgrade-check" -d 'Check that this executable can take over a keeper\'s state (read on stdin): run by `update`'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "controller" -d 'The daemon\'s controller (started by the daemon\'s keeper)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "log-keeper" -d 'The daemon\'s log keeper (started by the daemon)'
complete -c herdsman -n "__fish_herdsman_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s n -l name -d 'The app\'s name [default: the script\'s file name without extension; a command string\'s first word]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s i -l instances -d 'Workers: a number, 0 or `max` for one per logical core, -1 for one less than that [default: 1]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l listen -d 'Bind this address and share it with every worker (cluster mode): PORT, HOST:PORT, [V6]:PORT or unix:PATH; repeat for several (fds 3, 4, ...). Without it the app runs in fork mode' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l balance -d 'How new connections reach the workers: `shared` (one socket, the first worker to accept takes it), `hash` (a socket per worker, the kernel hashes each connection) or `sticky` (a socket per worker; one client address always reaches the same worker, as socket.io needs) [default: shared]' -r -f -a "shared\t''
hash\t''
sticky\t''"
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l interpreter -d 'The interpreter, overriding the extension\'s (`none`: execute the script itself)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l interpreter-args -l node-args -d 'Arguments for the interpreter, before the script (e.g. `--interpreter-args=--max-old-space-size=512`; PM2\'s `--node-args` is the same)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l cwd -d 'The workers\' working directory [default: the current directory]' -r -F
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l kill-signal -d 'The signal that asks a worker to stop [default: SIGINT]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l kill-timeout -d 'How long a worker may take to stop before its process group is killed (ms, or with a unit) [default: 1600ms]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l min-uptime -d 'A worker that runs at least this long counts as started well, which resets its backoff [default: 1s]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l max-restarts -d 'Give up after this many quick crashes in a row (the worker shows `errored`) [default: never]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l restart-backoff -d 'The delay before the second quick restart in a row; it doubles with each further one [default: 100ms]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l restart-backoff-max -d 'The longest delay between quick restarts [default: 15s]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l listen-timeout -d 'With --wait-ready: how long a worker may take to get ready before it counts as failed [default: 3000ms]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l stop-exit-codes -d 'Exit codes that mean a worker finished (it is left stopped), comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s o -l output -d 'Where stdout goes [default: HERDSMAN_HOME/logs/<name>-out.log]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s e -l error -d 'Where stderr goes [default: HERDSMAN_HOME/logs/<name>-err.log]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l increment-var -d 'A variable that counts up per instance (its value plus the instance number)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l depends-on -d 'Apps that must be ready before this one starts, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l user -d 'Run the workers as this user (the daemon must run as root)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l group -d 'Run the workers with this group (the daemon must run as root)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l max-memory-restart -d 'Replace a worker (new one ready first) whose memory, its whole process group, stays above this (`300M`, `1G`)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l watchdog -d 'A worker that sends no WATCHDOG=1 on NOTIFY_SOCKET for this long (`10s`) is hung and replaced (Node workers send it from their event loop with no code) [default: off]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l watchdog-signal -d 'With --watchdog: the first signal a hung worker gets, before the kill signal [default: SIGABRT]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l on-event -d 'Run a command for an event: `EVENT=COMMAND` (crash, errored, hung, memory-limit, reload-failed, job-failed); repeat for more' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-max-size -d 'Rotate a log file when it grows past this (`10M`); 0 never rotates [default: 10M]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-keep -d 'Rotated files kept per log [default: 5]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l env-file -d 'Add the variables of this .env file (dotenv syntax; relative to the current directory); repeat for several, later files win. They override this command\'s environment' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l watch -d 'Reload the app (new workers ready first) when its files change. Alone: its source files under its directory (by language); `--watch=src,config.toml`: every file under these paths' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l ignore-watch -d 'With --watch: names or globs that never count as a change (`*.db`, `tmp`), separated by commas or spaces; node_modules, .git, __pycache__ and the app\'s logs never do' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l watch-delay -d 'With --watch: reload once the files have been quiet this long [default: 500ms]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-format -d '`text` (`<time> [<instance>] <line>`) or `json` (one object a line: time, app, instance, stream, message) [default: text]' -r -f -a "text\t''
json\t''"
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-date-format -d 'The time of each log line, strftime-style (`%Y-%m-%d %H:%M:%S %z`) [default: RFC 3339]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-timezone -d 'The zone of the times in the log files: `utc` or `local` [default: utc]' -r -f -a "utc\t''
local\t''"
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-rotate -d 'Also rotate the logs when a new day (or hour) starts: `daily` or `hourly` [default: by size only]' -r -f -a "daily\t''
hourly\t''"
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l schedule -d 'Make the app a scheduled job, run once (one process) at each fire time of this cron expression: 5 fields (minute hour day-of-month month day-of-week), 6 (leading seconds) or 7 (and a year), with L, W and #, or @yearly, @monthly, @weekly, @daily, @hourly' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l timezone -d 'The IANA zone --schedule and --cron-restart are read in (`Europe/Berlin`) [default: the host\'s]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l overlap -d 'With --schedule: a fire time while a run is still going `skip`s, `allow`s a second run, or `replace`s the running one [default: skip]' -r -f -a "skip\t''
allow\t''
replace\t''"
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l catch-up -d 'With --schedule: after the daemon was down at a fire time, `last` runs the latest one missed once, `none` records it as missed [default: last]' -r -f -a "last\t''
none\t''"
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l starting-deadline -d 'With --schedule: a run that would start later than this after its fire time is recorded as missed [default: no deadline]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l jitter -d 'With --schedule: a stable delay below this, derived from the app\'s name, added to every fire time' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l timeout -d 'With --schedule: stop a run still going after this long (it fails) [default: no timeout]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l retries -d 'With --schedule: run a failed run again up to this many times (at most 100) [default: 0]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l retry-backoff -d 'With --schedule: the wait before the first retry, doubling for each further one [default: 10s]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l history -d 'With --schedule: the runs kept in the job\'s history (1 to 1000) [default: 20]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l on-failure -d 'With --schedule: a command line run by /bin/sh -c in the app\'s cwd when a run failed for good' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l cron-restart -l cron -d 'Reload the app (each new worker ready first) at each fire time of this cron expression (PM2\'s --cron-restart)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l only -d 'With an ecosystem file: only these apps, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l env -d 'With an ecosystem file: add the `env_<PROFILE>` variables of each app' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l wait-ready -d 'A worker is ready only when the app says so (sd_notify READY=1, Node\'s process.send(\'ready\'), or a Node server listening), within --listen-timeout; otherwise once it has run for --min-uptime'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l no-overlap -d 'Only one copy of each worker may run at a time: reload stops the old one before starting the new'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l no-autorestart -d 'Do not restart workers that exit unexpectedly'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l no-log-prefix -d 'Write each line to the log files exactly as the app wrote it, without time and instance'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l log-compress -d 'gzip rotated log files from `.2` on'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l dry-run -d 'With an ecosystem file: check it and print the TOML it stands for (a PM2 file converted), starting nothing'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l no-daemon -d 'Run in the foreground as `herdsman run` does (logs to stdout, Ctrl-C or SIGTERM stops the apps): PM2\'s `--no-daemon`'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -l time -d 'Accepted for PM2\'s sake, with no effect: every log line already carries its time (`logs --timestamp` shows it)'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s f -l force -d 'PM2 starts a second copy of a running script with it. App names are unique in herdsman, so a start whose name is taken is refused, saying what to run instead (`--name`, `scale`, `restart`)'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand start" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand list" -l json -d 'One JSON array of worker records (a stable contract)'
complete -c herdsman -n "__fish_herdsman_using_subcommand list" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand list" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand ls" -l json -d 'One JSON array of worker records (a stable contract)'
complete -c herdsman -n "__fish_herdsman_using_subcommand ls" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand ls" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand l" -l json -d 'One JSON array of worker records (a stable contract)'
complete -c herdsman -n "__fish_herdsman_using_subcommand l" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand l" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand ps" -l json -d 'One JSON array of worker records (a stable contract)'
complete -c herdsman -n "__fish_herdsman_using_subcommand ps" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand ps" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand status" -l json -d 'One JSON array of worker records (a stable contract)'
complete -c herdsman -n "__fish_herdsman_using_subcommand status" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand status" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jlist" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand jlist" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand describe" -l json -d 'The details as JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand describe" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand describe" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand show" -l json -d 'The details as JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand show" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand show" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand info" -l json -d 'The details as JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand info" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand info" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand desc" -l json -d 'The details as JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand desc" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand desc" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand stop" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand stop" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand restart" -l update-env -d 'Give the workers this command\'s environment (variables it lacks are removed)'
complete -c herdsman -n "__fish_herdsman_using_subcommand restart" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand restart" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -l only -d 'With an ecosystem file: only these apps, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -l env -d 'With an ecosystem file: add the `env_<PROFILE>` variables of each app' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -l prune -d 'With an ecosystem file: also delete the running apps that it no longer defines'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -l update-env -d 'Give the workers this command\'s environment (variables it lacks are removed)'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -l json -d 'Print the replacements as one JSON object instead of a line each'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrReload" -l only -d 'Only these apps, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrReload" -l env -d 'Add the `env_<PROFILE>` variables of each app' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrReload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrReload" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrRestart" -l only -d 'Only these apps, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrRestart" -l env -d 'Add the `env_<PROFILE>` variables of each app' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrRestart" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrRestart" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrGracefulReload" -l only -d 'Only these apps, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrGracefulReload" -l env -d 'Add the `env_<PROFILE>` variables of each app' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrGracefulReload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c herdsman -n "__fish_herdsman_using_subcommand startOrGracefulReload" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand scale" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand scale" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand signal" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand signal" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand delete" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand delete" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand del" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand del" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l lines -d 'How many of the last lines to print first [default: 15; with --since or --until, all]' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l since -d 'Only lines written since this: a duration back from now (`90s`, `10m`, `1h`, `2d`) or a time (`2026-11-24T01:02:03Z`; `2026-11-24 01:02` and `2026-11-24` in local time)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l until -d 'Only lines written until this (as --since); prints and exits instead of following' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l grep -d 'Only lines whose text matches this regular expression' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l run -d 'The output of one run of a scheduled job (its run id, from `jobs history`), every attempt' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l nostream -d 'Print the last lines and exit instead of following'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l raw -d 'Lines without the `app|instance` prefix'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l json -d 'One JSON object per line: app, instance, stream ("out" or "err"), time, line'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l timestamp -d 'Show each line\'s time (UTC, as the log keeper read it)'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l out -d 'Only standard output'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l err -d 'Only standard error'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -l reopen -d 'Reopen every app\'s log by its path (as `reloadLogs`) and exit'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand logs" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand monit" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand monit" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand events" -l since -d 'First print the events the daemon kept from this long ago (`10m`, `1h`)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand events" -l json -d 'One JSON object a line: the versioned contract in docs/events.md'
complete -c herdsman -n "__fish_herdsman_using_subcommand events" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand events" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand flush" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand flush" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand reloadLogs" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand reloadLogs" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload-logs" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand reload-logs" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand kill" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand kill" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -l json -d 'As JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -f -a "history" -d 'A job\'s runs: run id, scheduled at, started, duration, outcome, exit, attempt'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -f -a "next" -d 'A job\'s next fire times, with daylight saving shifts called out'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -f -a "pause" -d 'Skip a job\'s fire times until `jobs resume`'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -f -a "resume" -d 'Run a paused job\'s fire times again, from now on'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and not __fish_seen_subcommand_from history next pause resume help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from history" -l json
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from history" -l fleet -d 'Every host\'s runs of a `scope = "fleet"` job, read from the fleet store'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from history" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from history" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from next" -l count -r
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from next" -l json
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from next" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from next" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from help" -f -a "history" -d 'A job\'s runs: run id, scheduled at, started, duration, outcome, exit, attempt'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from help" -f -a "next" -d 'A job\'s next fire times, with daylight saving shifts called out'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Skip a job\'s fire times until `jobs resume`'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Run a paused job\'s fire times again, from now on'
complete -c herdsman -n "__fish_herdsman_using_subcommand jobs; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and not __fish_seen_subcommand_from status help" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and not __fish_seen_subcommand_from status help" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and not __fish_seen_subcommand_from status help" -f -a "status" -d 'Each store: its URL (password masked), latency, this host\'s clock against the store\'s, and the hosts seen recently (name, version, last seen)'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and not __fish_seen_subcommand_from status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and __fish_seen_subcommand_from status" -l json -d 'As JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "status" -d 'Each store: its URL (password masked), latency, this host\'s clock against the store\'s, and the hosts seen recently (name, version, last seen)'
complete -c herdsman -n "__fish_herdsman_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c herdsman -n "__fish_herdsman_using_subcommand trigger" -l wait -d 'Follow the run until it ends, and exit with its exit code'
complete -c herdsman -n "__fish_herdsman_using_subcommand trigger" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand trigger" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand update" -l binary -d 'The new executable (default: this one)' -r -F
complete -c herdsman -n "__fish_herdsman_using_subcommand update" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand update" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand version" -l json -d 'As JSON'
complete -c herdsman -n "__fish_herdsman_using_subcommand version" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand version" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand init" -l force -d 'Overwrite an existing file'
complete -c herdsman -n "__fish_herdsman_using_subcommand init" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand init" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand schema" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand schema" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand import" -s o -l output -d 'Write the TOML here instead of to stdout' -r -F
complete -c herdsman -n "__fish_herdsman_using_subcommand import" -l force -d 'Overwrite the output file'
complete -c herdsman -n "__fish_herdsman_using_subcommand import" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand import" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand daemon" -l handover-fd -d 'Take over the state a keeper left when it re-executed itself in place (`update`)' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand daemon" -l foreground -d 'Stay in the foreground and log to stderr (what a systemd unit or a container runs)'
complete -c herdsman -n "__fish_herdsman_using_subcommand daemon" -l resurrect -d 'Start the saved apps once up (see `save`)'
complete -c herdsman -n "__fish_herdsman_using_subcommand daemon" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand daemon" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand save" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand save" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand resurrect" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand resurrect" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand startup" -l user -d 'A user unit (`systemctl --user`) instead of a system unit'
complete -c herdsman -n "__fish_herdsman_using_subcommand startup" -l install -d 'Write the unit and enable it'
complete -c herdsman -n "__fish_herdsman_using_subcommand startup" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand startup" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand unstartup" -l user -d 'The user unit'
complete -c herdsman -n "__fish_herdsman_using_subcommand unstartup" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand unstartup" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand run" -l only -d 'Only these apps, comma-separated' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand run" -l env -d 'Add the `env_<PROFILE>` variables of each app' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand run" -l raw -d 'Lines without the app prefix'
complete -c herdsman -n "__fish_herdsman_using_subcommand run" -l json -d 'One JSON object per line: app, instance, stream, time, line'
complete -c herdsman -n "__fish_herdsman_using_subcommand run" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand run" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand completions" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand completions" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand man" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand man" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand upgrade-check" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand upgrade-check" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand controller" -l listen-fd -d 'The inherited control socket' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand controller" -l keeper-pid -d 'The keeper that started it' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand controller" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand controller" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand log-keeper" -l control-fd -d 'The inherited control channel' -r
complete -c herdsman -n "__fish_herdsman_using_subcommand log-keeper" -s h -l help -d 'Print help'
complete -c herdsman -n "__fish_herdsman_using_subcommand log-keeper" -s V -l version -d 'Print version'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "start" -d 'Start an app (a script, a program or a "command string"), or start again an app by name, id or `all`'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "list" -d 'List every worker'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "jlist" -d 'The same as `list --json` (PM2\'s name)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "describe" -d 'Everything about an app: its definition, restart policy, logs, environment (secrets masked) and each worker\'s process group'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "stop" -d 'Stop workers gracefully (kill signal, then SIGKILL after the kill timeout) and free the app\'s port'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "restart" -d 'Stop then start workers; the listening socket stays open, so no connection is refused'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "reload" -d 'Replace workers one at a time with no downtime: each new worker is ready before the old one stops. With an ecosystem file: start its new apps and reload only the apps whose definition changed'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "startOrReload" -d '`reload FILE` under PM2\'s names: start the file\'s new apps, reload the changed ones'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "scale" -d 'Set an app\'s number of workers: N, +N or -N. New workers share the app\'s sockets; removed ones (the highest instances) stop gracefully'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "signal" -d 'Send a signal to every worker of an app (each worker\'s own pid)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "delete" -d 'Stop workers and forget them'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "logs" -d 'Print the last lines of apps\' logs merged by time, then follow them; each line is prefixed `app|instance`'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "monit" -d 'A live dashboard: every worker\'s CPU, memory and status, the selected one\'s history and log; restart, reload or stop it from the keyboard (? shows the keys)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "events" -d 'Follow the daemon\'s events (started, ready, exited, crashed, restarted, errored, hung, memory-limit, reload steps, stopped, deleted, job runs), a line each'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "flush" -d 'Empty apps\' logs: truncate the current files and remove the rotated ones'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "reloadLogs" -d 'Reopen every app\'s log by its path, for an external rotator (logrotate\'s `postrotate`) that renamed the files; herdsman rotates by itself otherwise (`logs --reopen` does the same)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "kill" -d 'Stop every app and the daemon'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "jobs" -d 'Scheduled jobs: each with its schedule in words, next run (local and UTC), last outcome and counts'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "fleet" -d 'The fleet stores of the `scope = "fleet"` jobs: `herdsman fleet status`'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "trigger" -d 'Run a scheduled job now (obeying its `overlap`); prints the run id'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "update" -d 'Move the running daemon onto this herdsman executable (after installing a new one) without restarting any app: same workers, same sockets'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "version" -d 'Print this CLI\'s version and the running daemon\'s (keeper and controller)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "init" -d 'Write a commented ecosystem.toml to start from'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "schema" -d 'Print the JSON Schema of ecosystem.toml (for editor completion and checks)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "import" -d 'Convert a PM2 ecosystem file (ecosystem.config.js, evaluated with node, or JSON) to ecosystem.toml'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "daemon" -d 'Run the daemon (commands start it when needed)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "save" -d 'Remember the apps that run now (their specs and environments) in HERDSMAN_HOME/dump.json'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "resurrect" -d 'Start the saved apps that do not run'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "startup" -d 'Print a systemd unit that runs the daemon for this home at boot (Type=notify)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "unstartup" -d 'Disable and remove the unit `startup --install` wrote'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "run" -d 'Run an ecosystem file in the foreground: the container entry point (logs to stdout, PID 1 duties, SIGTERM stops every app)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "completions" -d 'Print a shell completion script'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "man" -d 'Print the man page (roff)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "upgrade-check" -d 'Check that this executable can take over a keeper\'s state (read on stdin): run by `update`'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "controller" -d 'The daemon\'s controller (started by the daemon\'s keeper)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "log-keeper" -d 'The daemon\'s log keeper (started by the daemon)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and not __fish_seen_subcommand_from start list jlist describe stop restart reload startOrReload scale signal delete logs monit events flush reloadLogs kill jobs fleet trigger update version init schema import daemon save resurrect startup unstartup run completions man upgrade-check controller log-keeper help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and __fish_seen_subcommand_from jobs" -f -a "history" -d 'A job\'s runs: run id, scheduled at, started, duration, outcome, exit, attempt'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and __fish_seen_subcommand_from jobs" -f -a "next" -d 'A job\'s next fire times, with daylight saving shifts called out'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and __fish_seen_subcommand_from jobs" -f -a "pause" -d 'Skip a job\'s fire times until `jobs resume`'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and __fish_seen_subcommand_from jobs" -f -a "resume" -d 'Run a paused job\'s fire times again, from now on'
complete -c herdsman -n "__fish_herdsman_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "status" -d 'Each store: its URL (password masked), latency, this host\'s clock against the store\'s, and the hosts seen recently (name, version, last seen)'
