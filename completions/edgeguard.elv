
use builtin;
use str;

set edit:completion:arg-completer[edgeguard] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'edgeguard'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'edgeguard'= {
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand acquire 'Read the sources and validate every reading (sources → channel validation)'
            cand validate 'Check pipeline files (offline, every problem at once), or validate readings with --input'
            cand fuse 'Fuse redundant sensors into trusted channels (sources → channel validation → fusion)'
            cand detect 'Detect anomalies (sources → channel validation → fusion → detection)'
            cand alert 'Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences'
            cand serve 'Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard'
            cand backup 'Back up the store (Parquet + manifest); list, verify, restore and prune backups'
            cand collect 'Collect a fleet''s forwarded records from its NATS hub into a Parquet lake (folder or S3)'
            cand test 'Run a pipeline''s tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send'
            cand query 'Run one read-only SELECT on the store (through serve while it holds the store)'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'edgeguard;acquire'= {
            cand --input 'Start from records in FILE (`-` for stdin) instead of the live sources'
            cand --input-format 'Format of --input'
            cand --max-line-bytes 'Longest input line accepted, in bytes; longer lines are rejected'
            cand --duration 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time'
            cand --count 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read'
            cand --timeout 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)'
            cand --format 'Output format [default: table on a terminal, ndjson otherwise]'
            cand --only 'Print only these record kinds: reading,anomaly,alert'
            cand -o 'Write records to FILE instead of stdout'
            cand --output 'Write records to FILE instead of stdout'
            cand --fail-on 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)'
            cand --store 'Store in this DuckDB file instead of the spec''s `store.path`'
            cand --set 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`'
            cand --probe 'Read a device once and print every decoding of a register window: tcp://HOST[:PORT], rtu-over-tcp://HOST:PORT or rtu:///dev/ttyUSB0'
            cand --unit 'Unit id (slave address) to ask'
            cand --table 'Register table'
            cand --address 'First register, as written in the device''s manual (both 0- and 1-based readings are tried)'
            cand --expect 'The value you expect, `20..25` or `21.7`: ranks the decodings'
            cand --baud 'Baud rate of an `rtu://` device'
            cand --parity 'Parity of an `rtu://` device'
            cand --stop-bits 'Stop bits of an `rtu://` device'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --strict 'Exit 65 when an input line is rejected'
            cand --once 'One poll cycle of every source, then drain and exit'
            cand --no-store 'Do not store anything'
            cand --store-input 'Also store the records read with --input (by default a process stores only what it creates)'
            cand --check 'Compile the spec for this command and exit'
            cand --dump-plan 'Print the compiled plan as JSON and exit'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;validate'= {
            cand --format 'How diagnostics are printed'
            cand --input 'Validate the readings in FILE (`-` for stdin) against the spec''s channel rules'
            cand --input-format 'Format of --input'
            cand --output-format 'With --input: format of the annotated readings [default: table on a terminal, ndjson otherwise]'
            cand --set 'Override a spec value: `channels."boiler.*".stale=5s`'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --deny-warnings 'Warnings make the check fail too'
            cand --strict 'With --input: exit 65 when any reading is bad or any line is rejected'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;fuse'= {
            cand --input 'Start from records in FILE (`-` for stdin) instead of the live sources'
            cand --input-format 'Format of --input'
            cand --max-line-bytes 'Longest input line accepted, in bytes; longer lines are rejected'
            cand --duration 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time'
            cand --count 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read'
            cand --timeout 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)'
            cand --format 'Output format [default: table on a terminal, ndjson otherwise]'
            cand --only 'Print only these record kinds: reading,anomaly,alert'
            cand -o 'Write records to FILE instead of stdout'
            cand --output 'Write records to FILE instead of stdout'
            cand --fail-on 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)'
            cand --store 'Store in this DuckDB file instead of the spec''s `store.path`'
            cand --set 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --strict 'Exit 65 when an input line is rejected'
            cand --once 'One poll cycle of every source, then drain and exit'
            cand --no-store 'Do not store anything'
            cand --store-input 'Also store the records read with --input (by default a process stores only what it creates)'
            cand --check 'Compile the spec for this command and exit'
            cand --dump-plan 'Print the compiled plan as JSON and exit'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;detect'= {
            cand --input 'Start from records in FILE (`-` for stdin) instead of the live sources'
            cand --input-format 'Format of --input'
            cand --max-line-bytes 'Longest input line accepted, in bytes; longer lines are rejected'
            cand --duration 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time'
            cand --count 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read'
            cand --timeout 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)'
            cand --format 'Output format [default: table on a terminal, ndjson otherwise]'
            cand --only 'Print only these record kinds: reading,anomaly,alert'
            cand -o 'Write records to FILE instead of stdout'
            cand --output 'Write records to FILE instead of stdout'
            cand --fail-on 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)'
            cand --store 'Store in this DuckDB file instead of the spec''s `store.path`'
            cand --set 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`'
            cand --since 'Replay from this time: `30d` (ago) or an RFC 3339 time. Default: the beginning'
            cand --until 'Replay until this time (exclusive): `1d` (ago) or an RFC 3339 time. Default: the newest stored reading'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --strict 'Exit 65 when an input line is rejected'
            cand --once 'One poll cycle of every source, then drain and exit'
            cand --no-store 'Do not store anything'
            cand --store-input 'Also store the records read with --input (by default a process stores only what it creates)'
            cand --check 'Compile the spec for this command and exit'
            cand --dump-plan 'Print the compiled plan as JSON and exit'
            cand --from-store 'Backtest: replay the store''s readings through the detectors. Prints the anomalies and a summary; stores nothing unless --store is given'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;alert'= {
            cand --input 'Start from records in FILE (`-` for stdin) instead of the live sources'
            cand --input-format 'Format of --input'
            cand --max-line-bytes 'Longest input line accepted, in bytes; longer lines are rejected'
            cand --duration 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time'
            cand --count 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read'
            cand --timeout 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)'
            cand --format 'Output format [default: table on a terminal, ndjson otherwise]'
            cand --only 'Print only these record kinds: reading,anomaly,alert'
            cand -o 'Write records to FILE instead of stdout'
            cand --output 'Write records to FILE instead of stdout'
            cand --fail-on 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)'
            cand --store 'Store in this DuckDB file instead of the spec''s `store.path`'
            cand --set 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`'
            cand --render 'Print, as NDJSON, what every notifier would send for the records of FIXTURE (NDJSON readings and anomalies; `-` for stdin), and send nothing. The records go to the rules as they are, with fresh rule state'
            cand --rule 'With --render: only this rule'
            cand --silence 'Silence RULE (on CHANNEL only, a name or glob) for --for; kept in the store'
            cand --for 'How long the silence lasts: `2h`'
            cand --comment 'Why (shown by --silences)'
            cand --unsilence 'End the silences of RULE (on CHANNEL)'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --strict 'Exit 65 when an input line is rejected'
            cand --once 'One poll cycle of every source, then drain and exit'
            cand --no-store 'Do not store anything'
            cand --store-input 'Also store the records read with --input (by default a process stores only what it creates)'
            cand --check 'Compile the spec for this command and exit'
            cand --dump-plan 'Print the compiled plan as JSON and exit'
            cand --silences 'List the active silences'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;serve'= {
            cand --listen 'Listen here instead of `serve.listen` (default 127.0.0.1:8080; port 0 picks a free one)'
            cand --store 'Store here instead of the spec''s `store.path`'
            cand --duration 'Stop after this long, as on SIGTERM'
            cand --print 'Also print these records on stdout (reading,anomaly,alert). Default: none'
            cand --set 'Override a spec value: `serve.listen=0.0.0.0:8080`'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --no-store 'Do not store (the API''s range queries then answer 503)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;backup'= {
            cand --verify 'Check a backup (every one without ID): names, checksums, row counts'
            cand --restore 'Restore backup ID into a new store at --to'
            cand --to 'Where --restore writes the store; it must not exist'
            cand --store 'Back up this store instead of the spec''s'
            cand --set 'Override a spec value: `backup.keep=3`'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --list 'List the backups, oldest first (a table on a terminal, NDJSON otherwise)'
            cand --prune 'Delete all but the `backup.keep` newest backups, and partial ones'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;collect'= {
            cand --export 'The export to write, when the spec has several'
            cand --timeout 'With --once, the longest the run takes (default 60s)'
            cand --set 'Override a spec value: `export.lake.roll.max_rows=100000`'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand --once 'Collect what is pending on the hub, write it, and exit (for cron)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;test'= {
            cand --format 'How results are printed'
            cand --filter 'Only the tests whose name contains NAME'
            cand --explain 'Print the alert timeline of test NAME instead: when each rule became pending, fired, repeated and resolved, what was sent to whom, and why a notification was held'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;query'= {
            cand --format 'Output format [default: table on a terminal, ndjson otherwise]'
            cand --limit 'Most rows printed; past it the answer is cut and a warning says so (through serve: at most 100000)'
            cand --timeout 'Interrupt the query after this long (through serve: at most 25s)'
            cand --store 'Query this store file instead of the spec''s `store.path`'
            cand --set 'Override a spec value: `serve.listen=127.0.0.1:9000`'
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;completions'= {
            cand --log-format 'Log format on stderr'
            cand --color 'Colors on stderr and in tables (NO_COLOR is honoured)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -q 'Only errors on stderr: no summary, no warnings'
            cand --quiet 'Only errors on stderr: no summary, no warnings'
            cand --no-progress 'Never show progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'edgeguard;help'= {
            cand acquire 'Read the sources and validate every reading (sources → channel validation)'
            cand validate 'Check pipeline files (offline, every problem at once), or validate readings with --input'
            cand fuse 'Fuse redundant sensors into trusted channels (sources → channel validation → fusion)'
            cand detect 'Detect anomalies (sources → channel validation → fusion → detection)'
            cand alert 'Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences'
            cand serve 'Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard'
            cand backup 'Back up the store (Parquet + manifest); list, verify, restore and prune backups'
            cand collect 'Collect a fleet''s forwarded records from its NATS hub into a Parquet lake (folder or S3)'
            cand test 'Run a pipeline''s tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send'
            cand query 'Run one read-only SELECT on the store (through serve while it holds the store)'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'edgeguard;help;acquire'= {
        }
        &'edgeguard;help;validate'= {
        }
        &'edgeguard;help;fuse'= {
        }
        &'edgeguard;help;detect'= {
        }
        &'edgeguard;help;alert'= {
        }
        &'edgeguard;help;serve'= {
        }
        &'edgeguard;help;backup'= {
        }
        &'edgeguard;help;collect'= {
        }
        &'edgeguard;help;test'= {
        }
        &'edgeguard;help;query'= {
        }
        &'edgeguard;help;completions'= {
        }
        &'edgeguard;help;help'= {
        }
    ]
    $completions[$command]
}
