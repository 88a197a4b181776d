# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_edgeguard_global_optspecs
    string join \n v/verbose q/quiet log-format= color= no-progress h/help V/version
end

function __fish_edgeguard_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_edgeguard_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_edgeguard_using_subcommand
    set -l cmd (__fish_edgeguard_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c edgeguard -n "__fish_edgeguard_needs_command" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_needs_command" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_needs_command" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "acquire" -d 'Read the sources and validate every reading (sources → channel validation)'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "validate" -d 'Check pipeline files (offline, every problem at once), or validate readings with --input'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "fuse" -d 'Fuse redundant sensors into trusted channels (sources → channel validation → fusion)'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "detect" -d 'Detect anomalies (sources → channel validation → fusion → detection)'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "alert" -d 'Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "serve" -d 'Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "backup" -d 'Back up the store (Parquet + manifest); list, verify, restore and prune backups'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "collect" -d 'Collect a fleet\'s forwarded records from its NATS hub into a Parquet lake (folder or S3)'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "test" -d 'Run a pipeline\'s tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "query" -d 'Run one read-only SELECT on the store (through serve while it holds the store)'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c edgeguard -n "__fish_edgeguard_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l input -d 'Start from records in FILE (`-` for stdin) instead of the live sources' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l input-format -d 'Format of --input' -r -f -a "ndjson\t''
csv\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l max-line-bytes -d 'Longest input line accepted, in bytes; longer lines are rejected' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l duration -d 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l count -d 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l timeout -d 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l format -d 'Output format [default: table on a terminal, ndjson otherwise]' -r -f -a "ndjson\t''
csv\t''
table\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l only -d 'Print only these record kinds: reading,anomaly,alert' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -s o -l output -d 'Write records to FILE instead of stdout' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l fail-on -d 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)' -r -f -a "anomaly\t''
alert\t''
bad\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l store -d 'Store in this DuckDB file instead of the spec\'s `store.path`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l set -d 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l probe -d 'Read a device once and print every decoding of a register window: tcp://HOST[:PORT], rtu-over-tcp://HOST:PORT or rtu:///dev/ttyUSB0' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l unit -d 'Unit id (slave address) to ask' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l table -d 'Register table' -r -f -a "coil\t''
discrete\t''
input\t''
holding\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l address -d 'First register, as written in the device\'s manual (both 0- and 1-based readings are tried)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l expect -d 'The value you expect, `20..25` or `21.7`: ranks the decodings' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l baud -d 'Baud rate of an `rtu://` device' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l parity -d 'Parity of an `rtu://` device' -r -f -a "none\t''
even\t''
odd\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l stop-bits -d 'Stop bits of an `rtu://` device' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l strict -d 'Exit 65 when an input line is rejected'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l once -d 'One poll cycle of every source, then drain and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l no-store -d 'Do not store anything'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l store-input -d 'Also store the records read with --input (by default a process stores only what it creates)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l check -d 'Compile the spec for this command and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l dump-plan -d 'Print the compiled plan as JSON and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand acquire" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l format -d 'How diagnostics are printed' -r -f -a "text\t'Human-readable, with the source line and a caret'
json\t'One JSON object per line'
github\t'GitHub Actions workflow commands (annotations on the pull request)'"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l input -d 'Validate the readings in FILE (`-` for stdin) against the spec\'s channel rules' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l input-format -d 'Format of --input' -r -f -a "ndjson\t''
csv\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l output-format -d 'With --input: format of the annotated readings [default: table on a terminal, ndjson otherwise]' -r -f -a "ndjson\t''
csv\t''
table\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l set -d 'Override a spec value: `channels."boiler.*".stale=5s`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l deny-warnings -d 'Warnings make the check fail too'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l strict -d 'With --input: exit 65 when any reading is bad or any line is rejected'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand validate" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l input -d 'Start from records in FILE (`-` for stdin) instead of the live sources' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l input-format -d 'Format of --input' -r -f -a "ndjson\t''
csv\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l max-line-bytes -d 'Longest input line accepted, in bytes; longer lines are rejected' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l duration -d 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l count -d 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l timeout -d 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l format -d 'Output format [default: table on a terminal, ndjson otherwise]' -r -f -a "ndjson\t''
csv\t''
table\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l only -d 'Print only these record kinds: reading,anomaly,alert' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -s o -l output -d 'Write records to FILE instead of stdout' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l fail-on -d 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)' -r -f -a "anomaly\t''
alert\t''
bad\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l store -d 'Store in this DuckDB file instead of the spec\'s `store.path`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l set -d 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l strict -d 'Exit 65 when an input line is rejected'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l once -d 'One poll cycle of every source, then drain and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l no-store -d 'Do not store anything'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l store-input -d 'Also store the records read with --input (by default a process stores only what it creates)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l check -d 'Compile the spec for this command and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l dump-plan -d 'Print the compiled plan as JSON and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand fuse" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l input -d 'Start from records in FILE (`-` for stdin) instead of the live sources' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l input-format -d 'Format of --input' -r -f -a "ndjson\t''
csv\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l max-line-bytes -d 'Longest input line accepted, in bytes; longer lines are rejected' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l duration -d 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l count -d 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l timeout -d 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l format -d 'Output format [default: table on a terminal, ndjson otherwise]' -r -f -a "ndjson\t''
csv\t''
table\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l only -d 'Print only these record kinds: reading,anomaly,alert' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -s o -l output -d 'Write records to FILE instead of stdout' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l fail-on -d 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)' -r -f -a "anomaly\t''
alert\t''
bad\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l store -d 'Store in this DuckDB file instead of the spec\'s `store.path`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l set -d 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l since -d 'Replay from this time: `30d` (ago) or an RFC 3339 time. Default: the beginning' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l until -d 'Replay until this time (exclusive): `1d` (ago) or an RFC 3339 time. Default: the newest stored reading' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l strict -d 'Exit 65 when an input line is rejected'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l once -d 'One poll cycle of every source, then drain and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l no-store -d 'Do not store anything'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l store-input -d 'Also store the records read with --input (by default a process stores only what it creates)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l check -d 'Compile the spec for this command and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l dump-plan -d 'Print the compiled plan as JSON and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l from-store -d 'Backtest: replay the store\'s readings through the detectors. Prints the anomalies and a summary; stores nothing unless --store is given'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand detect" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l input -d 'Start from records in FILE (`-` for stdin) instead of the live sources' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l input-format -d 'Format of --input' -r -f -a "ndjson\t''
csv\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l max-line-bytes -d 'Longest input line accepted, in bytes; longer lines are rejected' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l duration -d 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l count -d 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l timeout -d 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l format -d 'Output format [default: table on a terminal, ndjson otherwise]' -r -f -a "ndjson\t''
csv\t''
table\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l only -d 'Print only these record kinds: reading,anomaly,alert' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -s o -l output -d 'Write records to FILE instead of stdout' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l fail-on -d 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)' -r -f -a "anomaly\t''
alert\t''
bad\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l store -d 'Store in this DuckDB file instead of the spec\'s `store.path`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l set -d 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l render -d 'Print, as NDJSON, what every notifier would send for the records of FIXTURE (NDJSON readings and anomalies; `-` for stdin), and send nothing. The records go to the rules as they are, with fresh rule state' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l explain -d 'Print the alert timeline the records of FIXTURE (NDJSON; `-` for stdin) make through the spec\'s chain, as `edgeguard test --explain` does: when each rule became pending, fired, repeated and resolved, what was sent to whom, and why a notification was held. Sends nothing' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l rule -d 'With --render or --explain: only this rule' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l silence -d 'Silence RULE (on CHANNEL only, a name or glob) for --for; kept in the store' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l for -d 'How long the silence lasts: `2h`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l comment -d 'Why (shown by --silences)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l unsilence -d 'End the silences of RULE (on CHANNEL)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l strict -d 'Exit 65 when an input line is rejected'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l once -d 'One poll cycle of every source, then drain and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l no-store -d 'Do not store anything'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l store-input -d 'Also store the records read with --input (by default a process stores only what it creates)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l check -d 'Compile the spec for this command and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l dump-plan -d 'Print the compiled plan as JSON and exit'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l silences -d 'List the active silences'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand alert" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l listen -d 'Listen here instead of `serve.listen` (default 127.0.0.1:8080; port 0 picks a free one)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l store -d 'Store here instead of the spec\'s `store.path`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l duration -d 'Stop after this long, as on SIGTERM' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l print -d 'Also print these records on stdout (reading,anomaly,alert). Default: none' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l set -d 'Override a spec value: `serve.listen=0.0.0.0:8080`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l no-store -d 'Do not store (the API\'s range queries then answer 503)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand serve" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l verify -d 'Check a backup (every one without ID): names, checksums, row counts' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l restore -d 'Restore backup ID into a new store at --to' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l to -d 'Where --restore writes the store; it must not exist' -r -F
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l store -d 'Back up this store instead of the spec\'s' -r -F
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l set -d 'Override a spec value: `backup.keep=3`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l list -d 'List the backups, oldest first (a table on a terminal, NDJSON otherwise)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l prune -d 'Delete all but the `backup.keep` newest backups, and partial ones'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand backup" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l export -d 'The export to write, when the spec has several' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l timeout -d 'With --once, the longest the run takes (default 60s)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l set -d 'Override a spec value: `export.lake.roll.max_rows=100000`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l once -d 'Collect what is pending on the hub, write it, and exit (for cron)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand collect" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -l format -d 'How results are printed' -r -f -a "text\t'A line per test; under a failure, what was expected, what happened, where'
json\t'One JSON object per test'
junit\t'JUnit XML, for CI dashboards'"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -l filter -d 'Only the tests whose name contains NAME' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -l explain -d 'Print the alert timeline of test NAME instead: when each rule became pending, fired, repeated and resolved, what was sent to whom, and why a notification was held' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -s j -l jobs -d 'Tests run at once, each on its own thread [default: the number of CPUs]. Results are printed in file order whatever finishes first' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand test" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l format -d 'Output format [default: table on a terminal, ndjson otherwise]' -r -f -a "ndjson\t''
csv\t''
table\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l limit -d 'Most rows printed; past it the answer is cut and a warning says so (through serve: at most 100000)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l timeout -d 'Interrupt the query after this long (through serve: at most 25s)' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l store -d 'Query this store file instead of the spec\'s `store.path`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l set -d 'Override a spec value: `serve.listen=127.0.0.1:9000`' -r
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand query" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -l color -d 'Colors on stderr and in tables (NO_COLOR is honoured)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr: no summary, no warnings'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -l no-progress -d 'Never show progress bars'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -s h -l help -d 'Print help'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand completions" -s V -l version -d 'Print version'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "acquire" -d 'Read the sources and validate every reading (sources → channel validation)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "validate" -d 'Check pipeline files (offline, every problem at once), or validate readings with --input'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "fuse" -d 'Fuse redundant sensors into trusted channels (sources → channel validation → fusion)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "detect" -d 'Detect anomalies (sources → channel validation → fusion → detection)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "alert" -d 'Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "serve" -d 'Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "backup" -d 'Back up the store (Parquet + manifest); list, verify, restore and prune backups'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "collect" -d 'Collect a fleet\'s forwarded records from its NATS hub into a Parquet lake (folder or S3)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "test" -d 'Run a pipeline\'s tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "query" -d 'Run one read-only SELECT on the store (through serve while it holds the store)'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c edgeguard -n "__fish_edgeguard_using_subcommand help; and not __fish_seen_subcommand_from acquire validate fuse detect alert serve backup collect test query completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
