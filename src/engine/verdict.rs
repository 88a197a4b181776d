//! What a pipeline run's report means for its exit status: the policy of
//! `--strict`, `--once` and `--fail-on`, as a pure function over the
//! [`RunReport`](super::RunReport). The command line maps each verdict to
//! its exit code (docs/contract.md §5).

use super::RunReport;

/// What the caller asked to fail on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// `--strict`: a rejected input line fails the run.
    pub strict: bool,
    /// `--once`: every device, broker topic and serial channel must answer.
    pub once: bool,
    /// `--fail-on bad|anomaly|alert`.
    pub fail_on_bad: bool,
    pub fail_on_anomaly: bool,
    pub fail_on_alert: bool,
}

/// The outcome of a run, most severe first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything as asked.
    Ok,
    /// The stdout reader went away (`| head`): not an error.
    OutputClosed,
    /// `--strict` and input lines were rejected (exit 65).
    Rejected(u64),
    /// A broker refused our credentials (exit 77).
    Refused { source: String, why: String },
    /// A forward target's peer refused our credentials or subjects (exit 77).
    ForwardRefused { target: String, why: String },
    /// `--once` and a forward target could not send its whole backlog (exit 69).
    ForwardBehind { target: String, records: u64, why: String },
    /// `--once` and nothing answered (exit 69).
    NoneAnswered(Vec<String>),
    /// `--once` and some device did not answer (exit 1).
    SomeSilent(Vec<String>),
    /// Notifications that were not delivered after their retries (exit 1).
    Undelivered(u64),
    /// `--fail-on` matched (exit 3).
    FailOn,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Ok | Verdict::OutputClosed => Ok(()),
            Verdict::FailOn => f.write_str("--fail-on matched"),
            Verdict::Rejected(n) => write!(f, "{n} input lines rejected (--strict)"),
            Verdict::Refused { source, why } => write!(f, "{source}: the broker refused the connection: {why}"),
            Verdict::ForwardRefused { target, why } => write!(f, "forward target {target}: the hub refused: {why}"),
            Verdict::ForwardBehind { target, records, why } => write!(
                f,
                "forward target {target}: {records} records not forwarded ({why}); they stay in the store for the next run"
            ),
            Verdict::NoneAnswered(silent) => write!(f, "no device answered ({})", silent.join(", ")),
            Verdict::SomeSilent(silent) => write!(f, "{} did not answer", silent.join(", ")),
            Verdict::Undelivered(1) => {
                f.write_str("1 notification not delivered (see the log above and the store's `alerts` table)")
            }
            Verdict::Undelivered(n) => {
                write!(f, "{n} notifications not delivered (see the log above and the store's `alerts` table)")
            }
        }
    }
}

/// The verdict on a run under `policy`.
pub fn verdict(r: &RunReport, policy: &Policy) -> Verdict {
    if r.output_closed && !r.interrupted {
        return Verdict::OutputClosed;
    }
    let rejected = r.input.map_or(0, |i| i.rejected);
    if policy.strict && rejected > 0 {
        return Verdict::Rejected(rejected);
    }
    if let Some((id, why)) = r.sources.iter().find_map(|s| s.stats.refused.as_ref().map(|w| (&s.id, w))) {
        return Verdict::Refused { source: id.clone(), why: why.clone() };
    }
    if let Some(t) = r.forward.iter().find(|t| t.refused.is_some()) {
        let why = t.refused.clone().unwrap_or_default();
        return Verdict::ForwardRefused { target: t.id.clone(), why };
    }
    if policy.once {
        let (mut total, mut silent) = (0, Vec::new());
        for s in &r.sources {
            for (what, answered) in &s.stats.devices {
                total += 1;
                if !answered {
                    silent.push(format!("{} {what}", s.id));
                }
            }
        }
        if total > 0 && silent.len() == total {
            return Verdict::NoneAnswered(silent);
        }
        if !silent.is_empty() {
            return Verdict::SomeSilent(silent);
        }
        if let Some(t) = r.forward.iter().find(|t| t.backlog > 0) {
            let why = t.last_error.clone().unwrap_or_else(|| "--timeout passed".into());
            return Verdict::ForwardBehind { target: t.id.clone(), records: t.backlog, why };
        }
    }
    if r.alert.failed > 0 {
        return Verdict::Undelivered(r.alert.failed);
    }
    if (policy.fail_on_bad && r.validate.bad > 0)
        || (policy.fail_on_anomaly && r.detect.anomalies > 0)
        || (policy.fail_on_alert && r.alert.stats.notifications > 0)
    {
        return Verdict::FailOn;
    }
    Verdict::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SourceReport;
    use crate::sources::input::InputStats;
    use crate::sources::SourceStats;

    fn source(id: &str, devices: &[(&str, bool)]) -> SourceReport {
        SourceReport {
            id: id.into(),
            stats: SourceStats {
                devices: devices.iter().map(|(d, ok)| (d.to_string(), *ok)).collect(),
                ..SourceStats::default()
            },
        }
    }

    #[test]
    fn a_clean_run_is_ok_and_a_closed_pipe_is_not_an_error() {
        let mut r = RunReport::default();
        assert_eq!(verdict(&r, &Policy::default()), Verdict::Ok);
        r.output_closed = true;
        assert_eq!(verdict(&r, &Policy { strict: true, ..Policy::default() }), Verdict::OutputClosed);
        // Closed by a signal's drain: judged as usual.
        r.interrupted = true;
        assert_eq!(verdict(&r, &Policy::default()), Verdict::Ok);
    }

    #[test]
    fn strict_fails_on_rejected_lines_only_when_asked() {
        let r = RunReport {
            input: Some(InputStats { lines: 10, records: 9, rejected: 1, bytes: 0 }),
            ..RunReport::default()
        };
        assert_eq!(verdict(&r, &Policy::default()), Verdict::Ok);
        assert_eq!(verdict(&r, &Policy { strict: true, ..Policy::default() }), Verdict::Rejected(1));
    }

    #[test]
    fn once_needs_every_device_and_names_the_silent_ones() {
        let once = Policy { once: true, ..Policy::default() };
        let mut r = RunReport {
            sources: vec![source("plc1", &[("unit 1", false), ("unit 2", false)])],
            ..RunReport::default()
        };
        assert_eq!(verdict(&r, &once), Verdict::NoneAnswered(vec!["plc1 unit 1".into(), "plc1 unit 2".into()]));
        r.sources = vec![source("plc1", &[("unit 1", true), ("unit 2", false)])];
        let v = verdict(&r, &once);
        assert_eq!(v, Verdict::SomeSilent(vec!["plc1 unit 2".into()]));
        assert_eq!(v.to_string(), "plc1 unit 2 did not answer");
        // Without --once a silent device is the summary's business, not the exit code's.
        assert_eq!(verdict(&r, &Policy::default()), Verdict::Ok);
    }

    #[test]
    fn a_forward_backlog_fails_once_only_and_a_refusal_always() {
        let target = |backlog: u64, refused: Option<&str>| crate::forward::ForwardReport {
            id: "fleet".into(),
            backlog,
            last_error: Some("connection refused".into()),
            refused: refused.map(str::to_string),
            ..Default::default()
        };
        let once = Policy { once: true, ..Policy::default() };
        let mut r = RunReport { forward: vec![target(0, None)], ..RunReport::default() };
        assert_eq!(verdict(&r, &once), Verdict::Ok);
        r.forward = vec![target(120, None)];
        let v = verdict(&r, &once);
        assert!(matches!(v, Verdict::ForwardBehind { records: 120, .. }), "{v:?}");
        assert!(v.to_string().contains("120 records not forwarded (connection refused)"), "{v}");
        // A daemon or a --duration run keeps its backlog for later: not an error.
        assert_eq!(verdict(&r, &Policy::default()), Verdict::Ok);
        r.forward = vec![target(120, Some("Permissions Violation for Publish"))];
        assert!(matches!(verdict(&r, &Policy::default()), Verdict::ForwardRefused { .. }));
    }

    #[test]
    fn a_refusal_wins_over_silence_and_undelivered_over_fail_on() {
        let mut r = RunReport { sources: vec![source("broker", &[("broker", false)])], ..RunReport::default() };
        r.sources[0].stats.refused = Some("not authorised".into());
        let once = Policy { once: true, fail_on_alert: true, ..Policy::default() };
        assert!(matches!(verdict(&r, &once), Verdict::Refused { .. }));
        r.sources.clear();
        r.alert.failed = 2;
        r.alert.stats.notifications = 2;
        assert_eq!(verdict(&r, &once), Verdict::Undelivered(2));
        r.alert.failed = 0;
        assert_eq!(verdict(&r, &once), Verdict::FailOn);
    }

    #[test]
    fn fail_on_matches_each_kind() {
        let mut r = RunReport::default();
        r.validate.bad = 1;
        assert_eq!(verdict(&r, &Policy { fail_on_bad: true, ..Policy::default() }), Verdict::FailOn);
        assert_eq!(verdict(&r, &Policy { fail_on_anomaly: true, ..Policy::default() }), Verdict::Ok);
        r.detect.anomalies = 3;
        assert_eq!(verdict(&r, &Policy { fail_on_anomaly: true, ..Policy::default() }), Verdict::FailOn);
    }
}
