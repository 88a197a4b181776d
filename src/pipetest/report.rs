//! The results of `edgeguard test`, as text for people, JSON lines, or
//! JUnit XML for CI dashboards; and the alert timeline of `--explain`.

use std::time::Duration;

use super::check::{show_event, Miss};
use super::Captured;

/// How one test ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The test file.
    pub file: String,
    pub name: String,
    /// Where the test is written.
    pub line: usize,
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
    /// The expectations that did not hold.
    pub failures: Vec<Miss>,
    /// Why it could not run at all.
    pub error: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.error.is_none()
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// One line per test; under a failure, each expectation that did not
/// hold: where it is written, what happened instead, the timeline.
pub fn text(outcomes: &[Outcome], total: Duration) -> String {
    let mut s = String::new();
    for o in outcomes {
        let status = if o.passed() { "ok  " } else { "FAIL" };
        s += &format!("{status} {} {} ({})\n", o.file, o.name, ms(o.elapsed));
        if let Some(e) = &o.error {
            s += &format!("  {}:{}: the test could not run: {e}\n", o.file, o.line);
        }
        for m in &o.failures {
            s += &format!("  {}:{}:{}: expected {}\n", o.file, m.line, m.col, m.expected);
            s += "    instead:\n";
            for f in &m.found {
                s += &format!("      {f}\n");
            }
            if !m.timeline.is_empty() {
                s += "    alert timeline:\n";
                for t in &m.timeline {
                    s += &format!("      {t}\n");
                }
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let n = outcomes.len();
    let tests = if n == 1 { "test" } else { "tests" };
    s += &format!("{n} {tests}: {} passed, {failed} failed ({})\n", n - failed, ms(total));
    s
}

/// One JSON object per test.
pub fn json(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        let mut v = serde_json::to_value(o).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("status".into(), if o.passed() { "pass" } else { "fail" }.into());
        }
        s += &v.to_string();
        s.push('\n');
    }
    s
}

/// JUnit XML: a test suite per test file, a test case per test.
pub fn junit(outcomes: &[Outcome], total: Duration) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s += &format!(
        "<testsuites name=\"edgeguard test\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">\n",
        outcomes.len(),
        total.as_secs_f64()
    );
    let mut files: Vec<&str> = outcomes.iter().map(|o| o.file.as_str()).collect();
    files.dedup();
    for f in files {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.file == f).collect();
        let t: f64 = of.iter().map(|o| o.elapsed.as_secs_f64()).sum();
        s += &format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{t:.3}\">\n",
            xml(f),
            of.len(),
            of.iter().filter(|o| !o.passed()).count()
        );
        for o in of {
            s += &format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
                xml(&o.name),
                xml(f),
                xml(f),
                o.line,
                o.elapsed.as_secs_f64()
            );
            if o.passed() {
                s += "/>\n";
                continue;
            }
            s += ">\n";
            let first = o.error.clone().or_else(|| o.failures.first().map(|m| format!("expected {}", m.expected)));
            let mut body = String::new();
            if let Some(e) = &o.error {
                body += &format!("{}:{}: the test could not run: {e}\n", f, o.line);
            }
            for m in &o.failures {
                body += &format!("{f}:{}:{}: expected {}\ninstead:\n", m.line, m.col, m.expected);
                for x in m.found.iter().chain(&m.timeline) {
                    body += &format!("  {x}\n");
                }
            }
            s += &format!(
                "      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                xml(&first.unwrap_or_default()),
                xml(&body)
            );
        }
        s += "  </testsuite>\n";
    }
    s += "</testsuites>\n";
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `--explain`: every rule's timeline in a run, and what was sent, under
/// the line `heading`.
pub fn explain(heading: &str, c: &Captured) -> String {
    let mut s = format!("{heading}\n");
    if c.events.is_empty() {
        s += "  no rule became pending\n";
    }
    for ev in &c.events {
        s += &format!("  {}\n", show_event(c, ev));
    }
    for n in &c.sent {
        if !n.errors.is_empty() {
            s += &format!("  template errors in {} to {}: {}\n", n.rule, n.notifier, n.errors.join("; "));
        }
    }
    s
}
