
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'edgeguard' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'edgeguard'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'edgeguard' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('acquire', 'acquire', [CompletionResultType]::ParameterValue, 'Read the sources and validate every reading (sources → channel validation)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check pipeline files (offline, every problem at once), or validate readings with --input')
            [CompletionResult]::new('fuse', 'fuse', [CompletionResultType]::ParameterValue, 'Fuse redundant sensors into trusted channels (sources → channel validation → fusion)')
            [CompletionResult]::new('detect', 'detect', [CompletionResultType]::ParameterValue, 'Detect anomalies (sources → channel validation → fusion → detection)')
            [CompletionResult]::new('alert', 'alert', [CompletionResultType]::ParameterValue, 'Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Back up the store (Parquet + manifest); list, verify, restore and prune backups')
            [CompletionResult]::new('collect', 'collect', [CompletionResultType]::ParameterValue, 'Collect a fleet''s forwarded records from its NATS hub into a Parquet lake (folder or S3)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Run a pipeline''s tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send')
            [CompletionResult]::new('query', 'query', [CompletionResultType]::ParameterValue, 'Run one read-only SELECT on the store (through serve while it holds the store)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'edgeguard;acquire' {
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Start from records in FILE (`-` for stdin) instead of the live sources')
            [CompletionResult]::new('--input-format', '--input-format', [CompletionResultType]::ParameterName, 'Format of --input')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Longest input line accepted, in bytes; longer lines are rejected')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: table on a terminal, ndjson otherwise]')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Print only these record kinds: reading,anomaly,alert')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--fail-on', '--fail-on', [CompletionResultType]::ParameterName, 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Store in this DuckDB file instead of the spec''s `store.path`')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`')
            [CompletionResult]::new('--probe', '--probe', [CompletionResultType]::ParameterName, 'Read a device once and print every decoding of a register window: tcp://HOST[:PORT], rtu-over-tcp://HOST:PORT or rtu:///dev/ttyUSB0')
            [CompletionResult]::new('--unit', '--unit', [CompletionResultType]::ParameterName, 'Unit id (slave address) to ask')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Register table')
            [CompletionResult]::new('--address', '--address', [CompletionResultType]::ParameterName, 'First register, as written in the device''s manual (both 0- and 1-based readings are tried)')
            [CompletionResult]::new('--expect', '--expect', [CompletionResultType]::ParameterName, 'The value you expect, `20..25` or `21.7`: ranks the decodings')
            [CompletionResult]::new('--baud', '--baud', [CompletionResultType]::ParameterName, 'Baud rate of an `rtu://` device')
            [CompletionResult]::new('--parity', '--parity', [CompletionResultType]::ParameterName, 'Parity of an `rtu://` device')
            [CompletionResult]::new('--stop-bits', '--stop-bits', [CompletionResultType]::ParameterName, 'Stop bits of an `rtu://` device')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Exit 65 when an input line is rejected')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'One poll cycle of every source, then drain and exit')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store anything')
            [CompletionResult]::new('--store-input', '--store-input', [CompletionResultType]::ParameterName, 'Also store the records read with --input (by default a process stores only what it creates)')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Compile the spec for this command and exit')
            [CompletionResult]::new('--dump-plan', '--dump-plan', [CompletionResultType]::ParameterName, 'Print the compiled plan as JSON and exit')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;validate' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'How diagnostics are printed')
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Validate the readings in FILE (`-` for stdin) against the spec''s channel rules')
            [CompletionResult]::new('--input-format', '--input-format', [CompletionResultType]::ParameterName, 'Format of --input')
            [CompletionResult]::new('--output-format', '--output-format', [CompletionResultType]::ParameterName, 'With --input: format of the annotated readings [default: table on a terminal, ndjson otherwise]')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `channels."boiler.*".stale=5s`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--deny-warnings', '--deny-warnings', [CompletionResultType]::ParameterName, 'Warnings make the check fail too')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'With --input: exit 65 when any reading is bad or any line is rejected')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;fuse' {
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Start from records in FILE (`-` for stdin) instead of the live sources')
            [CompletionResult]::new('--input-format', '--input-format', [CompletionResultType]::ParameterName, 'Format of --input')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Longest input line accepted, in bytes; longer lines are rejected')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: table on a terminal, ndjson otherwise]')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Print only these record kinds: reading,anomaly,alert')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--fail-on', '--fail-on', [CompletionResultType]::ParameterName, 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Store in this DuckDB file instead of the spec''s `store.path`')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Exit 65 when an input line is rejected')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'One poll cycle of every source, then drain and exit')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store anything')
            [CompletionResult]::new('--store-input', '--store-input', [CompletionResultType]::ParameterName, 'Also store the records read with --input (by default a process stores only what it creates)')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Compile the spec for this command and exit')
            [CompletionResult]::new('--dump-plan', '--dump-plan', [CompletionResultType]::ParameterName, 'Print the compiled plan as JSON and exit')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;detect' {
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Start from records in FILE (`-` for stdin) instead of the live sources')
            [CompletionResult]::new('--input-format', '--input-format', [CompletionResultType]::ParameterName, 'Format of --input')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Longest input line accepted, in bytes; longer lines are rejected')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: table on a terminal, ndjson otherwise]')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Print only these record kinds: reading,anomaly,alert')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--fail-on', '--fail-on', [CompletionResultType]::ParameterName, 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Store in this DuckDB file instead of the spec''s `store.path`')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Replay from this time: `30d` (ago) or an RFC 3339 time. Default: the beginning')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Replay until this time (exclusive): `1d` (ago) or an RFC 3339 time. Default: the newest stored reading')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Exit 65 when an input line is rejected')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'One poll cycle of every source, then drain and exit')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store anything')
            [CompletionResult]::new('--store-input', '--store-input', [CompletionResultType]::ParameterName, 'Also store the records read with --input (by default a process stores only what it creates)')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Compile the spec for this command and exit')
            [CompletionResult]::new('--dump-plan', '--dump-plan', [CompletionResultType]::ParameterName, 'Print the compiled plan as JSON and exit')
            [CompletionResult]::new('--from-store', '--from-store', [CompletionResultType]::ParameterName, 'Backtest: replay the store''s readings through the detectors. Prints the anomalies and a summary; stores nothing unless --store is given')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;alert' {
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Start from records in FILE (`-` for stdin) instead of the live sources')
            [CompletionResult]::new('--input-format', '--input-format', [CompletionResultType]::ParameterName, 'Format of --input')
            [CompletionResult]::new('--max-line-bytes', '--max-line-bytes', [CompletionResultType]::ParameterName, 'Longest input line accepted, in bytes; longer lines are rejected')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Run this long (`10m`). A pipeline of simulated sources alone runs on a virtual clock, as fast as it can; one with devices runs in real time')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after N readings from the sources (or N records from --input); with --probe, the number of registers to read')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait: with --once, for MQTT and serial sources and for forward targets to send their backlog (default 10s); otherwise for forward targets after the last commit (5s); with --probe, for the device (1s)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: table on a terminal, ndjson otherwise]')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Print only these record kinds: reading,anomaly,alert')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write records to FILE instead of stdout')
            [CompletionResult]::new('--fail-on', '--fail-on', [CompletionResultType]::ParameterName, 'Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Store in this DuckDB file instead of the spec''s `store.path`')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`')
            [CompletionResult]::new('--render', '--render', [CompletionResultType]::ParameterName, 'Print, as NDJSON, what every notifier would send for the records of FIXTURE (NDJSON readings and anomalies; `-` for stdin), and send nothing. The records go to the rules as they are, with fresh rule state')
            [CompletionResult]::new('--explain', '--explain', [CompletionResultType]::ParameterName, 'Print the alert timeline the records of FIXTURE (NDJSON; `-` for stdin) make through the spec''s chain, as `edgeguard test --explain` does: when each rule became pending, fired, repeated and resolved, what was sent to whom, and why a notification was held. Sends nothing')
            [CompletionResult]::new('--rule', '--rule', [CompletionResultType]::ParameterName, 'With --render or --explain: only this rule')
            [CompletionResult]::new('--silence', '--silence', [CompletionResultType]::ParameterName, 'Silence RULE (on CHANNEL only, a name or glob) for --for; kept in the store')
            [CompletionResult]::new('--for', '--for', [CompletionResultType]::ParameterName, 'How long the silence lasts: `2h`')
            [CompletionResult]::new('--comment', '--comment', [CompletionResultType]::ParameterName, 'Why (shown by --silences)')
            [CompletionResult]::new('--unsilence', '--unsilence', [CompletionResultType]::ParameterName, 'End the silences of RULE (on CHANNEL)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Exit 65 when an input line is rejected')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'One poll cycle of every source, then drain and exit')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store anything')
            [CompletionResult]::new('--store-input', '--store-input', [CompletionResultType]::ParameterName, 'Also store the records read with --input (by default a process stores only what it creates)')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Compile the spec for this command and exit')
            [CompletionResult]::new('--dump-plan', '--dump-plan', [CompletionResultType]::ParameterName, 'Print the compiled plan as JSON and exit')
            [CompletionResult]::new('--silences', '--silences', [CompletionResultType]::ParameterName, 'List the active silences')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Listen here instead of `serve.listen` (default 127.0.0.1:8080; port 0 picks a free one)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Store here instead of the spec''s `store.path`')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Stop after this long, as on SIGTERM')
            [CompletionResult]::new('--print', '--print', [CompletionResultType]::ParameterName, 'Also print these records on stdout (reading,anomaly,alert). Default: none')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `serve.listen=0.0.0.0:8080`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store (the API''s range queries then answer 503)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;backup' {
            [CompletionResult]::new('--verify', '--verify', [CompletionResultType]::ParameterName, 'Check a backup (every one without ID): names, checksums, row counts')
            [CompletionResult]::new('--restore', '--restore', [CompletionResultType]::ParameterName, 'Restore backup ID into a new store at --to')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Where --restore writes the store; it must not exist')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Back up this store instead of the spec''s')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `backup.keep=3`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--list', '--list', [CompletionResultType]::ParameterName, 'List the backups, oldest first (a table on a terminal, NDJSON otherwise)')
            [CompletionResult]::new('--prune', '--prune', [CompletionResultType]::ParameterName, 'Delete all but the `backup.keep` newest backups, and partial ones')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;collect' {
            [CompletionResult]::new('--export', '--export', [CompletionResultType]::ParameterName, 'The export to write, when the spec has several')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'With --once, the longest the run takes (default 60s)')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `export.lake.roll.max_rows=100000`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'Collect what is pending on the hub, write it, and exit (for cron)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;test' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'How results are printed')
            [CompletionResult]::new('--filter', '--filter', [CompletionResultType]::ParameterName, 'Only the tests whose name contains NAME')
            [CompletionResult]::new('--explain', '--explain', [CompletionResultType]::ParameterName, 'Print the alert timeline of test NAME instead: when each rule became pending, fired, repeated and resolved, what was sent to whom, and why a notification was held')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Tests run at once, each on its own thread [default: the number of CPUs]. Results are printed in file order whatever finishes first')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Tests run at once, each on its own thread [default: the number of CPUs]. Results are printed in file order whatever finishes first')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;query' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: table on a terminal, ndjson otherwise]')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Most rows printed; past it the answer is cut and a warning says so (through serve: at most 100000)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Interrupt the query after this long (through serve: at most 25s)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Query this store file instead of the spec''s `store.path`')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a spec value: `serve.listen=127.0.0.1:9000`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;completions' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colors on stderr and in tables (NO_COLOR is honoured)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no summary, no warnings')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never show progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'edgeguard;help' {
            [CompletionResult]::new('acquire', 'acquire', [CompletionResultType]::ParameterValue, 'Read the sources and validate every reading (sources → channel validation)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check pipeline files (offline, every problem at once), or validate readings with --input')
            [CompletionResult]::new('fuse', 'fuse', [CompletionResultType]::ParameterValue, 'Fuse redundant sensors into trusted channels (sources → channel validation → fusion)')
            [CompletionResult]::new('detect', 'detect', [CompletionResultType]::ParameterValue, 'Detect anomalies (sources → channel validation → fusion → detection)')
            [CompletionResult]::new('alert', 'alert', [CompletionResultType]::ParameterValue, 'Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Back up the store (Parquet + manifest); list, verify, restore and prune backups')
            [CompletionResult]::new('collect', 'collect', [CompletionResultType]::ParameterValue, 'Collect a fleet''s forwarded records from its NATS hub into a Parquet lake (folder or S3)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Run a pipeline''s tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send')
            [CompletionResult]::new('query', 'query', [CompletionResultType]::ParameterValue, 'Run one read-only SELECT on the store (through serve while it holds the store)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'edgeguard;help;acquire' {
            break
        }
        'edgeguard;help;validate' {
            break
        }
        'edgeguard;help;fuse' {
            break
        }
        'edgeguard;help;detect' {
            break
        }
        'edgeguard;help;alert' {
            break
        }
        'edgeguard;help;serve' {
            break
        }
        'edgeguard;help;backup' {
            break
        }
        'edgeguard;help;collect' {
            break
        }
        'edgeguard;help;test' {
            break
        }
        'edgeguard;help;query' {
            break
        }
        'edgeguard;help;completions' {
            break
        }
        'edgeguard;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
