//! Alert rules: a `when` expression over every record (reading or anomaly)
//! of a channel, a state per rule and channel, and the notifications that
//! the state changes make.
//!
//! Per rule and channel (its *fingerprint*):
//!
//! ```text
//! inactive ──when──▶ pending ──held for `for`──▶ firing ──not when──▶ (resolved) inactive
//!    ▲                  │                          │ repeat: again every `repeat` while firing
//!    └────not when──────┘
//! ```
//!
//! Time is the records' own: `for` and `repeat` are measured between record
//! timestamps, so state saved in the store at the end of a run and restored
//! at the start of the next (`alert --once` under cron) gives what one
//! long run gives. Silences (rule, optional channel glob, until) suppress
//! notifications, not state: a silenced alert still fires and resolves, and
//! notifies again when the silence ends and `repeat` is due.
//!
//! Templates render with the record, the rule and the alert's state; a
//! render error never drops a notification: the text becomes a plain
//! fallback with the error and the raw record, and is counted.

use std::collections::VecDeque;
use std::sync::Arc;

use globset::GlobMatcher;
use minijinja::{context, Environment, Expression, Value};
use serde::{Deserialize, Serialize};

use crate::compile::AlertPlan;
use crate::model::intern::FxHashMap;
use crate::model::record::{Alert, Notification, Record, Transition};
use crate::model::template::{self as templates, render_capped};
use crate::model::time::{format_rfc3339, Micros};

/// Values kept per channel for templates (`recent`).
pub const RECENT_VALUES: usize = 10;
/// Alert states kept at most (rule × channel).
pub const MAX_STATES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Inactive,
    Pending,
    Firing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
}

/// One rule on one channel.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AlertState {
    pub rule: String,
    pub channel: String,
    pub phase: Phase,
    /// When the condition started to hold (pending and firing).
    pub since: Micros,
    /// When a notification last went out (firing or repeat).
    pub notified: Option<Micros>,
    /// Its firing notification was held back by a silence (counted once).
    #[serde(default)]
    pub held: bool,
}

/// A silence: no notifications of `rule` (on channels matching `channel`) until `until`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Silence {
    pub rule: String,
    #[serde(default)]
    pub channel: Option<String>,
    pub until: Micros,
    #[serde(default)]
    pub comment: Option<String>,
    pub created: Micros,
}

/// A silence with its channel glob compiled once.
struct ActiveSilence {
    silence: Silence,
    /// `None`: every channel of the rule. A glob that does not compile
    /// (edited by hand in the store) matches its exact text only.
    channel: Option<Result<GlobMatcher, String>>,
}

impl ActiveSilence {
    fn covers(&self, rule: &str, channel: &str, at: Micros) -> bool {
        self.silence.rule == rule
            && at < self.silence.until
            && self.channel.as_ref().is_none_or(|m| match m {
                Ok(m) => m.is_match(channel),
                Err(exact) => exact == channel,
            })
    }
}

#[derive(Debug, Default, Clone)]
pub struct AlertStats {
    pub notifications: u64,
    pub silenced: u64,
    /// Renders that failed and were replaced by the fallback text.
    pub fallbacks: u64,
    /// `when` expressions that failed on a record (counted as false).
    pub eval_errors: u64,
}

struct Rule {
    plan: AlertPlan,
    name: Arc<str>,
    when: Expression<'static, 'static>,
    notify: Arc<[String]>,
}

/// The alert stage.
pub struct Alerter {
    rules: Vec<Rule>,
    env: &'static Environment<'static>,
    states: FxHashMap<(usize, Arc<str>), AlertState>,
    silences: Vec<ActiveSilence>,
    recent: FxHashMap<Arc<str>, VecDeque<f64>>,
    pub stats: AlertStats,
}

impl Alerter {
    pub fn new(plans: &[AlertPlan]) -> Result<Alerter, String> {
        // Compiled expressions borrow their environment: one per process.
        let env: &'static Environment<'static> = templates::shared_environment();
        let mut rules = Vec::with_capacity(plans.len());
        for p in plans {
            let when = env.compile_expression_owned(p.when.clone()).map_err(|e| format!("alert `{}`: {e}", p.rule))?;
            rules.push(Rule {
                plan: p.clone(),
                name: Arc::from(p.rule.as_str()),
                when,
                notify: p.notify.clone().into(),
            });
        }
        Ok(Alerter {
            rules,
            env,
            states: FxHashMap::default(),
            silences: Vec::new(),
            recent: FxHashMap::default(),
            stats: AlertStats::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules' current states (pending and firing), in no order: what
    /// `edgeguard test` compares after each step to see transitions.
    pub fn states(&self) -> impl Iterator<Item = &AlertState> {
        self.states.values()
    }

    /// Holds back the notifications `s` covers.
    pub fn silence(&mut self, s: Silence) {
        let channel = s.channel.as_ref().map(|c| crate::model::channel::channel_matcher(c).map_err(|_| c.clone()));
        self.silences.push(ActiveSilence { silence: s, channel });
    }

    /// Rule states and silences, as JSON, for the store's `state` table.
    pub fn save_state(&self) -> String {
        let mut states: Vec<&AlertState> = self.states.values().filter(|s| s.phase != Phase::Inactive).collect();
        states.sort_by(|a, b| (&a.rule, &a.channel).cmp(&(&b.rule, &b.channel)));
        serde_json::json!({ "rules": states }).to_string()
    }

    /// Continues from [`Alerter::save_state`]; states of rules no longer in
    /// the spec are dropped.
    pub fn restore_state(&mut self, json: &str) {
        #[derive(Deserialize)]
        struct Saved {
            #[serde(default)]
            rules: Vec<AlertState>,
        }
        let Ok(saved) = serde_json::from_str::<Saved>(json) else {
            tracing::warn!("saved alert state does not parse; starting afresh");
            return;
        };
        for st in saved.rules {
            if let Some(i) = self.rules.iter().position(|r| *r.name == *st.rule) {
                self.states.insert((i, Arc::from(st.channel.as_str())), st);
            }
        }
    }

    /// Looks at every record of `batch`; returns the notifications due.
    /// Records stamped beyond the validator's clock-skew horizon are not
    /// looked at: one wrong device clock must not pin an alert in the future.
    pub fn process(&mut self, batch: &[Record], out: &mut Vec<Notification>) {
        let horizon = crate::model::time::now_micros() + crate::stages::validate::MAX_CLOCK_SKEW_US;
        for rec in batch {
            let (ctx, ts, channel, value) = match rec {
                Record::Reading(r) if r.ts > horizon => continue,
                Record::Reading(r) => {
                    if let Some(v) = r.value {
                        let q = self.recent.entry(r.channel.clone()).or_default();
                        if q.len() == RECENT_VALUES {
                            q.pop_front();
                        }
                        q.push_back(v);
                    }
                    (crate::model::template::reading_context(r), r.ts, r.channel.clone(), r.value)
                }
                Record::Anomaly(a) if a.ts > horizon => continue,
                Record::Anomaly(a) => (a.context(), a.ts, Arc::from(a.channel.as_str()), a.value),
                Record::Alert(a) => {
                    self.relay(a, out);
                    continue;
                }
                Record::Delivery(_) | Record::Other { .. } => continue,
            };
            for i in 0..self.rules.len() {
                if !self.rules[i].plan.relay {
                    self.observe(i, &ctx, ts, &channel, value, out);
                }
            }
        }
    }

    /// Routes an alert record that came in through every relay rule whose
    /// `when` holds for it.
    fn relay(&mut self, a: &Alert, out: &mut Vec<Notification>) {
        if !self.rules.iter().any(|r| r.plan.relay) {
            return;
        }
        // The fingerprint over the channel as named here: two gateways'
        // alerts of one rule on one channel name are two alerts.
        let incoming = Alert { fingerprint: fingerprint(&a.rule, &a.channel), from_input: false, ..a.clone() };
        let ctx = Value::from_serialize(&incoming);
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            if !rule.plan.relay {
                continue;
            }
            match rule.when.eval(ctx.clone()) {
                Ok(v) if v.is_true() => {}
                Ok(_) => continue,
                Err(e) => {
                    if self.stats.eval_errors == 0 {
                        tracing::warn!(rule = &*rule.name, channel = %a.channel, "`when` fails: {e}");
                    }
                    self.stats.eval_errors += 1;
                    continue;
                }
            }
            if self.silences.iter().any(|s| s.covers(&rule.name, &a.channel, a.ts)) {
                self.stats.silenced += 1;
                continue;
            }
            let plan = &rule.plan;
            let mut errors = Vec::new();
            // Each rule sends the alert as it came, with its own title and body.
            let mut alert = incoming.clone();
            if !plan.title.is_empty() {
                alert.title = render(self.env, &plan.rule, "title", &plan.title, &ctx, &mut errors);
            }
            if let Some(b) = &plan.body {
                let with_title = context! { title => &alert.title, ..ctx.clone() };
                alert.body = render(self.env, &plan.rule, "body", b, &with_title, &mut errors);
            }
            self.stats.fallbacks += errors.len() as u64;
            self.stats.notifications += 1;
            out.push(Notification {
                context: Value::from_serialize(&alert),
                alert,
                notify: rule.notify.clone(),
                errors,
                relayed: true,
            });
        }
    }

    fn observe(
        &mut self,
        i: usize,
        ctx: &Value,
        ts: Micros,
        channel: &Arc<str>,
        value: Option<f64>,
        out: &mut Vec<Notification>,
    ) {
        let key = (i, channel.clone());
        let phase = self.states.get(&key).map_or(Phase::Inactive, |s| s.phase);
        let rule = &self.rules[i];
        let alert = context! { state => phase.as_str(), rule => &*rule.name };
        let holds = match rule.when.eval(context! { alert => alert, ..ctx.clone() }) {
            Ok(v) => v.is_true(),
            Err(e) => {
                if self.stats.eval_errors == 0 {
                    tracing::warn!(rule = &*rule.name, channel = &**channel, "`when` fails: {e}");
                }
                self.stats.eval_errors += 1;
                // Says nothing either way: the state stays as it is.
                return;
            }
        };
        if !holds && phase == Phase::Inactive {
            return;
        }
        // A reading without a value (a failed poll, a stale gap) may start
        // an alert (`'stale' in flags`) but never clears one: the condition
        // was not seen to stop.
        if !holds && value.is_none() {
            return;
        }
        if !self.states.contains_key(&key) && self.states.len() >= MAX_STATES {
            return;
        }
        let rule_name = rule.name.clone();
        let st = self.states.entry(key.clone()).or_insert_with(|| AlertState {
            rule: rule_name.to_string(),
            channel: channel.to_string(),
            ..AlertState::default()
        });
        let plan = &self.rules[i].plan;
        let hold = plan.duration.as_micros() as i64;
        let mut send: Option<Transition> = None;
        match (st.phase, holds) {
            (Phase::Inactive, true) => {
                st.phase = Phase::Pending;
                st.since = ts;
            }
            (Phase::Pending, false) => st.phase = Phase::Inactive,
            (Phase::Firing, false) => {
                st.phase = Phase::Inactive;
                if plan.resolve {
                    send = Some(Transition::Resolved);
                }
            }
            (Phase::Firing, true) => {
                if let (Some(every), Some(last)) = (plan.repeat, st.notified) {
                    if ts - last >= every.as_micros() as i64 {
                        send = Some(Transition::Firing);
                    }
                } else if st.notified.is_none() {
                    // Fired while silenced: notify once the silence is over.
                    send = Some(Transition::Firing);
                }
            }
            (Phase::Pending, true) | (Phase::Inactive, false) => {}
        }
        if st.phase == Phase::Pending && holds && ts - st.since >= hold {
            st.phase = Phase::Firing;
            st.notified = None;
            send = Some(Transition::Firing);
        }
        let since = st.since;
        if st.phase == Phase::Inactive {
            self.states.remove(&key);
        }
        let Some(state) = send else { return };
        let st = self.states.get_mut(&key);
        if self.silences.iter().any(|s| s.covers(&rule_name, channel, ts)) {
            match st {
                Some(st) if st.held => {}
                Some(st) => {
                    st.held = true;
                    self.stats.silenced += 1;
                }
                None => self.stats.silenced += 1,
            }
            return;
        }
        if let (Some(st), Transition::Firing) = (st, state) {
            st.notified = Some(ts);
            st.held = false;
        }
        let n = self.notification(i, ctx, ts, since, channel, value, state);
        self.stats.notifications += 1;
        out.push(n);
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &mut self,
        i: usize,
        ctx: &Value,
        ts: Micros,
        since: Micros,
        channel: &Arc<str>,
        value: Option<f64>,
        state: Transition,
    ) -> Notification {
        let rule = &self.rules[i];
        let plan = &rule.plan;
        let fp = fingerprint(&plan.rule, channel);
        let severity = match plan.severity {
            crate::spec::AlertSeverity::Info => "info",
            crate::spec::AlertSeverity::Warning => "warning",
            crate::spec::AlertSeverity::Critical => "critical",
        };
        let labels: indexmap::IndexMap<String, String> = plan.labels.iter().cloned().collect();
        let recent: Vec<f64> = self.recent.get(channel).map(|q| q.iter().copied().collect()).unwrap_or_default();
        let base = context! {
            rule => &*rule.name,
            state => state.as_str(),
            severity => severity,
            fingerprint => &fp,
            labels => &labels,
            recent => recent,
            since => format_rfc3339(since),
            firing_for => (ts - since) as f64 / 1e6,
            ..ctx.clone()
        };
        let mut errors = Vec::new();
        let title = render(self.env, &plan.rule, "title", &plan.title, &base, &mut errors);
        let with_title = context! { title => &title, ..base.clone() };
        let body = match &plan.body {
            Some(b) => render(self.env, &plan.rule, "body", b, &with_title, &mut errors),
            None => title.clone(),
        };
        self.stats.fallbacks += errors.len() as u64;
        let context = context! { body => &body, ..with_title };
        Notification {
            alert: Alert {
                ts,
                rule: rule.name.to_string(),
                state,
                severity: severity.to_string(),
                channel: channel.to_string(),
                value,
                title,
                body,
                fingerprint: fp,
                labels,
                from_input: false,
            },
            notify: rule.notify.clone(),
            context,
            errors,
            relayed: false,
        }
    }
}

/// Renders a rule's `title` or `body`; a failure is noted in `errors` and
/// replaced by the fallback text, so a notification always goes out.
fn render(
    env: &Environment<'static>,
    rule: &str,
    what: &str,
    src: &str,
    ctx: &Value,
    errors: &mut Vec<String>,
) -> String {
    match render_capped(env, src, ctx) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("{what}: {}", templates::describe(&e));
            errors.push(why.clone());
            templates::fallback(rule, &why, ctx)
        }
    }
}

/// The fingerprint of a rule on a channel: 16 hex digits of SHA-256.
pub fn fingerprint(rule: &str, channel: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::new().chain_update(rule).chain_update([0u8]).chain_update(channel).finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Reading;
    use std::time::Duration;

    fn rule(when: &str, hold: u64, repeat: Option<u64>) -> AlertPlan {
        AlertPlan {
            rule: "hot".into(),
            when: when.into(),
            relay: false,
            duration: Duration::from_secs(hold),
            severity: crate::spec::AlertSeverity::Critical,
            repeat: repeat.map(Duration::from_secs),
            resolve: true,
            notify: vec!["log".into()],
            title: "{{ channel }} at {{ value | round(1) }}".into(),
            body: None,
            labels: vec![],
        }
    }

    fn at(t: i64, v: f64) -> Record {
        Reading::sample("boiler.temp", t, Some(v))
    }

    fn states(a: &mut Alerter, recs: Vec<Record>) -> Vec<(i64, &'static str)> {
        let mut out = Vec::new();
        a.process(&recs, &mut out);
        out.iter().map(|n| (n.alert.ts / 1_000_000, n.alert.state.as_str())).collect()
    }

    fn incoming(channel: &str, severity: &str) -> Record {
        Record::Alert(Box::new(Alert {
            ts: 1_000_000,
            rule: "hot".into(),
            state: Transition::Firing,
            severity: severity.into(),
            channel: channel.into(),
            value: Some(97.0),
            title: "hot at the gateway".into(),
            body: "as the gateway said".into(),
            fingerprint: fingerprint("hot", "boiler.temp"),
            labels: Default::default(),
            from_input: true,
        }))
    }

    #[test]
    fn relay_rules_route_incoming_alerts_and_nothing_else() {
        let relay = AlertPlan {
            rule: "page".into(),
            relay: true,
            title: String::new(),
            ..rule("severity == 'critical'", 0, None)
        };
        let watch = rule("value > 95", 0, None);
        let mut a = Alerter::new(&[relay, watch]).unwrap();
        let mut out = Vec::new();
        a.process(
            &[
                incoming("berlin.gw1.boiler.temp", "critical"),
                incoming("berlin.gw2.boiler.temp", "critical"),
                incoming("berlin.gw1.x", "info"),
            ],
            &mut out,
        );
        // Two critical alerts relayed as they came, each with its own fingerprint.
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|n| n.relayed && n.alert.title == "hot at the gateway" && *n.notify == ["log".to_string()]));
        assert_ne!(out[0].alert.fingerprint, out[1].alert.fingerprint);
        assert_eq!(out[0].alert.fingerprint, fingerprint("hot", "berlin.gw1.boiler.temp"));
        // A reading is for the watching rule only; the relay rule ignores it.
        out.clear();
        a.process(&[at(5, 97.0)], &mut out);
        assert_eq!(out.iter().map(|n| (n.alert.rule.as_str(), n.relayed)).collect::<Vec<_>>(), vec![("hot", false)]);
        // A relay rule with its own title renders it over the alert.
        let titled = AlertPlan { relay: true, title: "[{{ severity }}] {{ channel }}".into(), ..rule("true", 0, None) };
        let mut a = Alerter::new(&[titled]).unwrap();
        let mut out = Vec::new();
        a.process(&[incoming("berlin.gw1.boiler.temp", "critical")], &mut out);
        assert_eq!(out[0].alert.title, "[critical] berlin.gw1.boiler.temp");
        assert_eq!(out[0].alert.body, "as the gateway said");
    }

    #[test]
    fn for_repeat_and_resolve() {
        let mut a = Alerter::new(&[rule("value > 95", 30, Some(60))]).unwrap();
        // Pending at 0, firing at 30, again at 90, resolved at 100.
        let recs = (0..=100).step_by(10).map(|t| at(t, if t < 100 { 97.0 } else { 90.0 })).collect();
        assert_eq!(states(&mut a, recs), vec![(30, "firing"), (90, "firing"), (100, "resolved")]);
        // A dip shorter than `for` resets the clock.
        let recs = vec![at(200, 97.0), at(220, 90.0), at(230, 97.0), at(250, 97.0), at(260, 97.0)];
        assert_eq!(states(&mut a, recs), vec![(260, "firing")]);
    }

    #[test]
    fn state_survives_a_save_and_restore() {
        let plans = [rule("value > 95", 300, Some(3600))];
        let series: Vec<Record> = (0..20).map(|m| at(m * 60, 97.0)).collect();
        let mut whole = Alerter::new(&plans).unwrap();
        let expected = states(&mut whole, series.clone());
        assert_eq!(expected, vec![(300, "firing")]);
        let mut got = Vec::new();
        let mut saved = String::new();
        for r in series {
            let mut a = Alerter::new(&plans).unwrap();
            a.restore_state(&saved);
            got.extend(states(&mut a, vec![r]));
            saved = a.save_state();
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn silences_hold_notifications_not_state() {
        let mut a = Alerter::new(&[rule("value > 95", 0, None)]).unwrap();
        a.silence(Silence {
            rule: "hot".into(),
            channel: Some("boiler.*".into()),
            until: 50_000_000,
            comment: None,
            created: 0,
        });
        assert_eq!(states(&mut a, vec![at(0, 97.0), at(10, 97.0)]), vec![]);
        assert_eq!(a.stats.silenced, 1);
        // Still firing when the silence ends: it notifies then.
        assert_eq!(states(&mut a, vec![at(60, 97.0)]), vec![(60, "firing")]);
    }

    #[test]
    fn a_failing_template_sends_the_fallback() {
        let mut p = rule("value > 95", 0, None);
        p.title = "{{ value | timestamp('Mars/Olympus') }}".into();
        let mut a = Alerter::new(&[p]).unwrap();
        let mut out = Vec::new();
        a.process(&[at(0, 97.0)], &mut out);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].alert.title.starts_with("[edgeguard] alert `hot` (template error: title:"),
            "{}",
            out[0].alert.title
        );
        assert!(out[0].alert.title.contains("\"value\":97.0"), "{}", out[0].alert.title);
        assert_eq!(a.stats.fallbacks, 1);
    }

    #[test]
    fn a_reading_without_a_value_or_from_the_future_changes_nothing() {
        let mut a = Alerter::new(&[rule("value > 95", 0, None)]).unwrap();
        let gap = Reading::sample("boiler.temp", 20, None);
        // Firing at 10; the stale gap at 20 is no evidence that it cleared.
        assert_eq!(states(&mut a, vec![at(10, 97.0), gap, at(30, 97.0)]), vec![(10, "firing")]);
        let far = crate::model::time::now_micros() / 1_000_000 + 365 * 86_400;
        assert_eq!(states(&mut a, vec![at(far, 90.0)]), vec![], "a year ahead: ignored");
        assert_eq!(states(&mut a, vec![at(40, 90.0)]), vec![(40, "resolved")]);
    }

    #[test]
    fn each_channel_fires_on_its_own() {
        let mut a = Alerter::new(&[rule("value > 95", 0, None)]).unwrap();
        let other = |t, v| {
            let Record::Reading(mut r) = at(t, v) else { unreachable!() };
            r.channel = Arc::from("boiler.temp2");
            Record::Reading(r)
        };
        let mut out = Vec::new();
        a.process(&[at(0, 97.0), other(0, 97.0), at(1, 97.0)], &mut out);
        assert_eq!(out.len(), 2);
        assert_ne!(out[0].alert.fingerprint, out[1].alert.fingerprint);
        assert_eq!(out[0].alert.fingerprint, fingerprint("hot", "boiler.temp"));
    }
}
