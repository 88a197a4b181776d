//! Alert rules: a `when` expression over every record (reading or anomaly)
//! of a channel — or over the state of every source (`over: sources`) — a
//! state per rule and channel, and the notifications that the state
//! changes make.
//!
//! Per rule and channel (its *fingerprint*):
//!
//! ```text
//! inactive ──when──▶ pending ──held for `for`──▶ firing ──resolve_when (default: not when)──▶ (resolved) inactive
//!    ▲                  │                          │ repeat: again every `repeat` while firing
//!    └────not when──────┘
//! ```
//!
//! Time is the records' own: `for`, `repeat`, mute windows, holds and groups
//! are measured on record timestamps (the stage's clock is the latest one
//! seen; idle ticks move it only in wall-clock runs), so state saved in the
//! store at the end of a run and restored at the start of the next
//! (`alert --once` under cron) gives what one long run gives.
//!
//! What is sent is decided apart from the state: an alert's receivers are
//! told `firing` once it fires (and at each `repeat`), `resolved` once it
//! no longer does. A notification that is due may be *held*: by a silence
//! (`alert --silence`), a mute window of the rule, an inhibition (another
//! rule whose `inhibit` names this one fires with equal labels) or
//! flapping. A held alert is looked at again as time passes: still firing
//! when the hold ends, it notifies then; fired and resolved within it, it
//! never notifies. An alert that fires and resolves `flapping.changes`
//! times within `flapping.within` notifies once, `flapping`, and then
//! nothing until it has kept one state for `within`.
//!
//! Notifications for a grouped notifier (the rule's `group`, else the
//! notifier's) go into a group ([`crate::stages::quiet::Group`]) and leave
//! as one notification listing them; the alert records themselves are in
//! the stream one by one as they happen.
//!
//! Templates render with the record, the rule and the alert's state; a
//! render error never drops a notification: the text becomes a plain
//! fallback with the error and the raw record, and is counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use globset::GlobMatcher;
use minijinja::{context, Environment, Expression, Value};
use serde::{Deserialize, Serialize};

use crate::compile::plan::{GroupPlan, NotifierPlan};
use crate::compile::AlertPlan;
use crate::model::intern::FxHashMap;
use crate::model::record::{Alert, Notification, Reading, Record, Transition};
use crate::model::template::{self as templates, render_capped};
use crate::model::time::{format_rfc3339, Micros};
use crate::spec::AlertOver;
use crate::stages::quiet::{alert_context, Group, Grouped, Mute};

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

fn is_false(b: &bool) -> bool {
    !b
}

/// One rule on one channel (or source).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AlertState {
    pub rule: String,
    pub channel: String,
    pub phase: Phase,
    /// When the condition started to hold (pending and firing).
    pub since: Micros,
    /// When a firing notification last went out (firing or repeat).
    pub notified: Option<Micros>,
    /// A notification is due but held (silence, mute window, inhibition):
    /// counted once, looked at again as time passes.
    #[serde(default)]
    pub held: bool,
    /// The source of the channel's readings (a label for `inhibit` and `group`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// What the receivers were told last: `firing` or `flapping` until a
    /// `resolved` went out; none before anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<Transition>,
    /// Times it fired or resolved, within `flapping.within`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Micros>,
    /// Reported `flapping`; quiet until it keeps one state for `within`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub flapping: bool,
    /// The latest value seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The record a held notification renders with when it goes out later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
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
    /// Notifications held by a mute window, an inhibition or flapping (each hold counted once).
    pub held: u64,
    /// Notifications of groups (each listing one or more alerts).
    pub groups: u64,
    /// Renders that failed and were replaced by the fallback text.
    pub fallbacks: u64,
    /// `when` expressions that failed on a record (counted as false).
    pub eval_errors: u64,
}

struct Rule {
    plan: AlertPlan,
    name: Arc<str>,
    when: Expression<'static, 'static>,
    resolve_when: Option<Expression<'static, 'static>>,
    /// The only channels `when` can hold for, when its text says so
    /// ([`crate::model::guard`]): other channels' records skip the rule.
    guard: Option<Vec<Box<str>>>,
    notify: Arc<[String]>,
    /// The notifiers told at once (no `group`).
    direct: Arc<[String]>,
    /// The grouped ones: notifier, grouping, whether it is the rule's own.
    grouped: Vec<(String, GroupPlan, bool)>,
    /// Rules whose firing alerts hold this rule's notifications.
    inhibited_by: Vec<usize>,
    mutes: Vec<Mute>,
}

/// What the alert stage knows of a source from its readings.
#[derive(Debug, Default)]
struct SourceHealth {
    down: bool,
    /// Failed polls in a row (one per timestamp).
    failures: u32,
    error: Option<String>,
    /// The last reading's time it was judged at (once per poll).
    judged: Option<Micros>,
}

/// Why a due notification waits.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// A silence (`alert --silence`) covers it, until then.
    Silence { until: Micros },
    /// One of the rule's mute windows is open.
    Mute,
    /// Rule `by` fires with equal labels and names this rule in its `inhibit`.
    Inhibited { by: String },
}

/// The alert stage.
pub struct Alerter {
    rules: Vec<Rule>,
    /// Indices of the `over: sources` rules.
    source_rules: Vec<usize>,
    env: &'static Environment<'static>,
    states: FxHashMap<(usize, Arc<str>), AlertState>,
    silences: Vec<ActiveSilence>,
    recent: FxHashMap<Arc<str>, VecDeque<f64>>,
    sources: FxHashMap<Arc<str>, SourceHealth>,
    /// Alerts with a notification held or flapping: looked at as time passes.
    waiting: BTreeSet<(usize, Arc<str>)>,
    groups: BTreeMap<String, Group>,
    /// The stage's clock: the latest record time seen.
    clock: Micros,
    /// When held notifications were last looked at.
    released: Micros,
    /// Idle ticks carry the wall clock (a live run) and move the clock on.
    pub wall_clock: bool,
    pub stats: AlertStats,
}

impl Alerter {
    /// The rules of `plans`; `notifiers` for their `group`s.
    pub fn new(plans: &[AlertPlan], notifiers: &[NotifierPlan]) -> Result<Alerter, String> {
        // Compiled expressions borrow their environment: one per process.
        let env: &'static Environment<'static> = templates::shared_environment();
        let mut rules = Vec::with_capacity(plans.len());
        for p in plans {
            let named = |e: minijinja::Error| format!("alert `{}`: {e}", p.rule);
            let when = env.compile_expression_owned(p.when.clone()).map_err(named)?;
            let resolve_when =
                p.resolve_when.as_ref().map(|r| env.compile_expression_owned(r.clone())).transpose().map_err(named)?;
            let mut direct = Vec::new();
            let mut grouped = Vec::new();
            for id in &p.notify {
                let of_notifier = notifiers.iter().find(|n| n.id == *id).and_then(|n| n.group.clone());
                match (&p.group, of_notifier) {
                    (Some(g), _) => grouped.push((id.clone(), g.clone(), true)),
                    (None, Some(g)) => grouped.push((id.clone(), g, false)),
                    (None, None) => direct.push(id.clone()),
                }
            }
            let mutes = p
                .mute
                .iter()
                .map(Mute::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("alert `{}`: {e}", p.rule))?;
            rules.push(Rule {
                plan: p.clone(),
                name: Arc::from(p.rule.as_str()),
                when,
                resolve_when,
                guard: crate::model::guard::channel_guard(&p.when)
                    .map(|names| names.into_iter().map(String::into_boxed_str).collect()),
                notify: p.notify.clone().into(),
                direct: direct.into(),
                grouped,
                inhibited_by: Vec::new(),
                mutes,
            });
        }
        for j in 0..rules.len() {
            let Some(inh) = rules[j].plan.inhibit.clone() else { continue };
            let matchers: Vec<Result<GlobMatcher, String>> =
                inh.rules.iter().map(|r| crate::model::channel::channel_matcher(r).map_err(|_| r.clone())).collect();
            for (i, rule) in rules.iter_mut().enumerate() {
                let hit = matchers.iter().any(|m| match m {
                    Ok(m) => m.is_match(&*rule.name),
                    Err(exact) => **exact == *rule.name,
                });
                if i != j && hit {
                    rule.inhibited_by.push(j);
                }
            }
        }
        let source_rules =
            (0..rules.len()).filter(|&i| rules[i].plan.over == AlertOver::Sources && !rules[i].plan.relay).collect();
        Ok(Alerter {
            rules,
            source_rules,
            env,
            states: FxHashMap::default(),
            silences: Vec::new(),
            recent: FxHashMap::default(),
            sources: FxHashMap::default(),
            waiting: BTreeSet::new(),
            groups: BTreeMap::new(),
            clock: Micros::MIN,
            released: Micros::MIN,
            wall_clock: false,
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

    /// Rule states, groups and the clock, as JSON, for the store's `state` table.
    pub fn save_state(&self) -> String {
        let mut states: Vec<&AlertState> = self
            .states
            .values()
            .filter(|s| s.phase != Phase::Inactive || s.told.is_some() || s.flapping || s.held || !s.changes.is_empty())
            .collect();
        states.sort_by(|a, b| (&a.rule, &a.channel).cmp(&(&b.rule, &b.channel)));
        let groups: Vec<&Group> = self.groups.values().collect();
        let mut v = serde_json::json!({ "rules": states });
        if self.clock != Micros::MIN {
            v["clock"] = self.clock.into();
        }
        if !groups.is_empty() {
            v["groups"] = serde_json::to_value(groups).unwrap_or_default();
        }
        v.to_string()
    }

    /// Continues from [`Alerter::save_state`]; states of rules no longer in
    /// the spec are dropped, and groups of notifiers no longer grouped.
    pub fn restore_state(&mut self, json: &str) {
        #[derive(Deserialize)]
        struct Saved {
            #[serde(default)]
            rules: Vec<AlertState>,
            #[serde(default)]
            groups: Vec<Group>,
            #[serde(default)]
            clock: Option<Micros>,
        }
        let Ok(saved) = serde_json::from_str::<Saved>(json) else {
            tracing::warn!("saved alert state does not parse; starting afresh");
            return;
        };
        for mut st in saved.rules {
            if let Some(i) = self.rules.iter().position(|r| *r.name == *st.rule) {
                // Saved before `told` was kept: a firing alert that notified was told so.
                if st.told.is_none() && st.phase == Phase::Firing && st.notified.is_some() {
                    st.told = Some(Transition::Firing);
                }
                let key = (i, Arc::from(st.channel.as_str()));
                if st.held || st.flapping || !st.changes.is_empty() {
                    self.waiting.insert(key.clone());
                }
                self.states.insert(key, st);
            }
        }
        if let Some(c) = saved.clock {
            self.clock = self.clock.max(c);
        }
        for g in saved.groups {
            let still = self
                .rules
                .iter()
                .any(|r| r.grouped.iter().any(|(id, _, own)| *id == g.notifier && (*own == g.rule.is_some())));
            if still {
                self.groups.insert(group_key(&g.notifier, g.rule.as_deref(), &g.labels), g);
            }
        }
    }

    /// Looks at every record of `batch`; returns the notifications due.
    /// Records stamped beyond the validator's clock-skew horizon are not
    /// looked at: one wrong device clock must not pin an alert in the future.
    pub fn process(&mut self, batch: &[Record], out: &mut Vec<Notification>) {
        let horizon = crate::model::time::now_micros() + crate::stages::validate::MAX_CLOCK_SKEW_US;
        for rec in batch {
            let (ts, channel, source, value) = match rec {
                Record::Reading(r) if r.ts > horizon => continue,
                Record::Reading(r) => {
                    if let Some(v) = r.value {
                        let q = self.recent.entry(r.channel.clone()).or_default();
                        if q.len() == RECENT_VALUES {
                            q.pop_front();
                        }
                        q.push_back(v);
                    }
                    self.clock = self.clock.max(r.ts);
                    if !self.source_rules.is_empty() {
                        self.observe_source(r, out);
                    }
                    (r.ts, r.channel.clone(), r.source.clone(), r.value)
                }
                Record::Anomaly(a) if a.ts > horizon => continue,
                Record::Anomaly(a) => {
                    self.clock = self.clock.max(a.ts);
                    (a.ts, Arc::from(a.channel.as_str()), Arc::from(""), a.value)
                }
                Record::Alert(a) => {
                    self.relay(a, out);
                    continue;
                }
                Record::Delivery(_) | Record::Other { .. } => continue,
            };
            // A group falls due in the middle of a batch: sent at the first
            // record past its time, not at the batch's end (a virtual-clock
            // run hands over thousands of records at once).
            // So does a held notification whose hold ends: looked at again
            // at each new time, not only at the batch's end.
            let waited = !self.waiting.is_empty() && self.clock > self.released;
            if waited || self.groups.values().any(|g| g.due <= self.clock) {
                self.release(self.clock, out);
            }
            // The record's context is built for the first rule that looks
            // at it: most records are of channels no rule is about.
            let mut ctx: Option<Value> = None;
            for i in 0..self.rules.len() {
                let rule = &self.rules[i];
                if rule.plan.relay || rule.plan.over != AlertOver::Channels {
                    continue;
                }
                let guarded_out = rule.guard.as_ref().is_some_and(|g| !g.iter().any(|n| **n == *channel));
                // A state of a channel outside the guard (restored from a
                // run whose rule read otherwise) is still looked at, to end.
                if guarded_out && (self.states.is_empty() || !self.states.contains_key(&(i, channel.clone()))) {
                    continue;
                }
                let ctx = ctx.get_or_insert_with(|| match rec {
                    Record::Reading(r) => crate::model::template::reading_context(r),
                    Record::Anomaly(a) => a.context(),
                    Record::Alert(_) | Record::Delivery(_) | Record::Other { .. } => Value::UNDEFINED,
                });
                self.observe(i, ctx, ts, &channel, &source, value.is_some(), value, out);
            }
        }
        self.release(self.clock, out);
    }

    /// Time passes without records (a live run's idle tick).
    pub fn tick(&mut self, now: Micros, out: &mut Vec<Notification>) {
        if self.wall_clock && now > self.clock {
            self.clock = now;
            self.release(now, out);
        }
    }

    /// The end of the run: every group sends what it holds now. (Held
    /// notifications stay held, in the saved state.)
    pub fn finish(&mut self, out: &mut Vec<Notification>) {
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        for k in keys {
            if let Some(g) = self.groups.get_mut(&k) {
                if !g.alerts.is_empty() {
                    let at = self.clock.max(g.sent.unwrap_or(Micros::MIN));
                    out.push(g.take(at));
                    self.stats.groups += 1;
                }
            }
        }
    }

    /// Judges the source of `r` (up, or down since a failed poll) and runs
    /// the `over: sources` rules on it once per poll.
    fn observe_source(&mut self, r: &Reading, out: &mut Vec<Notification>) {
        if r.source.is_empty() {
            return;
        }
        let h = self.sources.entry(r.source.clone()).or_default();
        let was_down = h.down;
        if r.value.is_some() || r.text.is_some() {
            h.down = false;
            h.failures = 0;
            h.error = None;
        } else if r.flags.failed_poll() {
            if h.judged != Some(r.ts) || !h.down {
                h.failures += 1;
            }
            h.down = true;
            h.error = Some(r.flags.names().collect::<Vec<_>>().join(","));
        } else {
            // A stale gap or a value-less reading says nothing of the source.
            return;
        }
        if h.judged == Some(r.ts) && was_down == h.down {
            return;
        }
        h.judged = Some(r.ts);
        let mut ts = Vec::with_capacity(27);
        crate::model::time::write_rfc3339(r.ts, &mut ts);
        let ctx = context! {
            kind => "source",
            ts => String::from_utf8_lossy(&ts),
            source => &*r.source,
            channel => &*r.source,
            value => Value::from(()),
            down => h.down,
            error => h.error.as_deref(),
            failures => h.failures,
        };
        let source = r.source.clone();
        for n in 0..self.source_rules.len() {
            let i = self.source_rules[n];
            self.observe(i, &ctx, r.ts, &source, &source, true, None, out);
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
            let listed = alert_context(&Grouped { alert: alert.clone(), source: String::new() });
            let n = Notification {
                context: context! { alerts => vec![listed], count => 1, group => context! {}, ..Value::from_serialize(&alert) },
                alert,
                notify: rule.notify.clone(),
                errors,
                relayed: true,
                grouped: false,
            };
            let now = self.clock.max(a.ts);
            self.route(i, n, "", now, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        i: usize,
        ctx: &Value,
        ts: Micros,
        channel: &Arc<str>,
        source: &Arc<str>,
        clears: bool,
        value: Option<f64>,
        out: &mut Vec<Notification>,
    ) {
        let key = (i, channel.clone());
        let phase = self.states.get(&key).map_or(Phase::Inactive, |s| s.phase);
        let rule = &self.rules[i];
        let alert = context! { state => phase.as_str(), rule => &*rule.name };
        let full = context! { alert => alert, ..ctx.clone() };
        // Firing with a `resolve_when`: the condition holds until that does.
        let result = match (&rule.resolve_when, phase) {
            (Some(r), Phase::Firing) => r.eval(full).map(|v| !v.is_true()),
            _ => rule.when.eval(full).map(|v| v.is_true()),
        };
        let holds = match result {
            Ok(h) => h,
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
        if !holds && !clears {
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
        if st.source.is_empty() && !source.is_empty() {
            st.source = source.to_string();
        }
        if value.is_some() {
            st.value = value;
        }
        let plan = &self.rules[i].plan;
        let hold = plan.duration.as_micros() as i64;
        let mut changed = false;
        match (st.phase, holds) {
            (Phase::Inactive, true) => {
                st.phase = Phase::Pending;
                st.since = ts;
            }
            (Phase::Pending, false) => st.phase = Phase::Inactive,
            (Phase::Firing, false) => {
                st.phase = Phase::Inactive;
                changed = true;
            }
            (Phase::Pending, true) | (Phase::Inactive, false) | (Phase::Firing, true) => {}
        }
        if st.phase == Phase::Pending && holds && ts - st.since >= hold {
            st.phase = Phase::Firing;
            st.notified = None;
            changed = true;
        }
        let mut flap_start = false;
        if let (true, Some(f)) = (changed, &plan.flapping) {
            let within = f.within.as_micros() as i64;
            st.changes.retain(|&c| ts - c < within);
            st.changes.push(ts);
            if !st.flapping && st.changes.len() >= f.changes as usize {
                st.flapping = true;
                flap_start = true;
            }
        }
        self.settle(&key, ts, Some(ctx), flap_start, out);
    }

    /// Looks at the held and flapping alerts again at `now`, and sends the
    /// groups that are due.
    fn release(&mut self, now: Micros, out: &mut Vec<Notification>) {
        self.released = self.released.max(now);
        if !self.waiting.is_empty() {
            let keys: Vec<(usize, Arc<str>)> = self.waiting.iter().cloned().collect();
            for k in keys {
                self.settle(&k, now, None, false, out);
            }
        }
        if self.groups.values().any(|g| g.due <= now) {
            let due: Vec<String> = self.groups.iter().filter(|(_, g)| g.due <= now).map(|(k, _)| k.clone()).collect();
            for k in due {
                let Some(g) = self.groups.get_mut(&k) else { continue };
                if g.alerts.is_empty() {
                    // Nothing came within its interval: the group is done.
                    self.groups.remove(&k);
                    continue;
                }
                out.push(g.take(now));
                self.stats.groups += 1;
            }
        }
    }

    /// Sends what the receivers of alert `key` are due to hear at `now`,
    /// unless a hold says wait; drops the state once nothing is left to say.
    fn settle(
        &mut self,
        key: &(usize, Arc<str>),
        now: Micros,
        ctx: Option<&Value>,
        flap_start: bool,
        out: &mut Vec<Notification>,
    ) {
        let i = key.0;
        let Some(st) = self.states.get_mut(key) else {
            self.waiting.remove(key);
            return;
        };
        let plan = &self.rules[i].plan;
        if let Some(f) = &plan.flapping {
            let (within, flapping) = (f.within.as_micros() as i64, st.flapping);
            st.changes.retain(|&c| now - c < within || flapping);
        }
        if st.flapping && !flap_start {
            let within = plan.flapping.as_ref().map_or(0, |f| f.within.as_micros() as i64);
            if st.changes.last().is_none_or(|&c| now - c >= within) {
                st.flapping = false;
                st.changes.clear();
            }
        }
        let firing = st.phase == Phase::Firing;
        let want = if flap_start {
            Some(Transition::Flapping)
        } else if st.flapping {
            None
        } else if firing {
            match (st.told, plan.repeat, st.notified) {
                (Some(Transition::Firing), Some(every), Some(last)) => {
                    (now - last >= every.as_micros() as i64).then_some(Transition::Firing)
                }
                (Some(Transition::Firing), _, _) => None,
                _ => Some(Transition::Firing),
            }
        } else {
            match st.told {
                Some(Transition::Firing | Transition::Flapping) if plan.resolve => Some(Transition::Resolved),
                Some(_) | None => {
                    st.told = None;
                    None
                }
            }
        };
        let Some(state) = want else {
            st.held = false;
            self.tidy(key);
            return;
        };
        let source = st.source.clone();
        if let Some(why) = self.hold(i, &key.1, &source, now) {
            let st = self.states.get_mut(key).expect("looked up above");
            if !st.held {
                st.held = true;
                match why {
                    Hold::Silence { .. } => self.stats.silenced += 1,
                    Hold::Mute | Hold::Inhibited { .. } => self.stats.held += 1,
                }
            }
            if let Some(c) = ctx {
                st.record = serde_json::to_value(c).ok();
            }
            self.waiting.insert(key.clone());
            return;
        }
        let st = self.states.get_mut(key).expect("looked up above");
        st.held = false;
        match state {
            Transition::Firing => {
                st.told = Some(Transition::Firing);
                st.notified = Some(now);
            }
            Transition::Flapping => st.told = Some(Transition::Flapping),
            Transition::Resolved => st.told = None,
        }
        let (since, value) = (st.since, st.value);
        let record = st.record.take();
        self.tidy(key);
        let ctx = match (ctx, record) {
            (Some(c), _) => c.clone(),
            (None, Some(r)) => Value::from_serialize(&r),
            (None, None) => context! { kind => "reading", ts => format_rfc3339(now), channel => &*key.1,
            value => value, source => &source },
        };
        let n = self.notification(i, &ctx, now, since, &key.1, &source, value, state);
        self.stats.notifications += 1;
        self.route(i, n, &source, now, out);
    }

    /// After [`settle`](Self::settle) found nothing held: an alert that is
    /// flapping, or has changes that still count towards flapping, is looked
    /// at as time passes; one with nothing left to say is dropped.
    fn tidy(&mut self, key: &(usize, Arc<str>)) {
        let Some(st) = self.states.get(key) else { return };
        if st.flapping || !st.changes.is_empty() {
            self.waiting.insert(key.clone());
            return;
        }
        self.waiting.remove(key);
        if st.phase == Phase::Inactive && st.told.is_none() {
            self.states.remove(key);
        }
    }

    /// Whether a notification of rule `i` on `channel` waits at `now`, and why.
    fn hold(&self, i: usize, channel: &str, source: &str, now: Micros) -> Option<Hold> {
        let rule = &self.rules[i];
        let until = self.silences.iter().filter(|s| s.covers(&rule.name, channel, now)).map(|s| s.silence.until).max();
        if let Some(until) = until {
            return Some(Hold::Silence { until });
        }
        if rule.mutes.iter().any(|m| m.covers(now)) {
            return Some(Hold::Mute);
        }
        for &j in &rule.inhibited_by {
            let equal = &self.rules[j].plan.inhibit.as_ref().map_or(&[][..], |p| &p.equal[..]);
            let inhibits = self.states.iter().any(|((r, ch), st)| {
                *r == j
                    && st.phase == Phase::Firing
                    && equal.iter().all(|l| self.label(j, ch, &st.source, l) == self.label(i, channel, source, l))
            });
            if inhibits {
                return Some(Hold::Inhibited { by: self.rules[j].plan.rule.clone() });
            }
        }
        None
    }

    /// Why the notification of `rule` on `channel` is held now, if it is
    /// (what `test --explain` shows).
    pub fn held_by(&self, rule: &str, channel: &str) -> Option<Hold> {
        let i = self.rules.iter().position(|r| *r.name == *rule)?;
        let st = self.states.get(&(i, Arc::from(channel)))?;
        if !st.held {
            return None;
        }
        self.hold(i, channel, &st.source, self.clock)
    }

    /// The value of label `name` on rule `i`'s alert on `channel`.
    fn label<'a>(&'a self, i: usize, channel: &'a str, source: &'a str, name: &str) -> Option<&'a str> {
        let plan = &self.rules[i].plan;
        match name {
            "rule" => Some(&plan.rule),
            "channel" => Some(channel),
            "source" => Some(source),
            "severity" => Some(severity_str(plan.severity)),
            _ => plan.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()),
        }
    }

    /// `n` to its rule's direct notifiers now (the alert record goes in the
    /// stream even when none is left), and into a group per grouped notifier.
    fn route(&mut self, i: usize, n: Notification, source: &str, now: Micros, out: &mut Vec<Notification>) {
        let rule = &self.rules[i];
        if rule.grouped.is_empty() {
            out.push(n);
            return;
        }
        for (notifier, g, own) in &rule.grouped {
            let labels: indexmap::IndexMap<String, String> =
                g.by.iter()
                    .map(|l| (l.clone(), self.label(i, &n.alert.channel, source, l).unwrap_or_default().to_string()))
                    .collect();
            let owner = own.then(|| rule.plan.rule.clone());
            let k = group_key(notifier, owner.as_deref(), &labels);
            let group = self.groups.entry(k).or_insert_with(|| Group {
                notifier: notifier.clone(),
                rule: owner,
                labels,
                alerts: Vec::new(),
                due: now + g.wait.as_micros() as i64,
                interval: g.interval.as_micros() as i64,
                sent: None,
            });
            group.add(Grouped { alert: n.alert.clone(), source: source.to_string() });
        }
        out.push(Notification { notify: rule.direct.clone(), ..n });
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &mut self,
        i: usize,
        ctx: &Value,
        ts: Micros,
        since: Micros,
        channel: &Arc<str>,
        source: &str,
        value: Option<f64>,
        state: Transition,
    ) -> Notification {
        let rule = &self.rules[i];
        let plan = &rule.plan;
        let fp = fingerprint(&plan.rule, channel);
        let severity = severity_str(plan.severity);
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
        let alert = Alert {
            ts,
            rule: rule.name.to_string(),
            state,
            severity: severity.to_string(),
            channel: channel.to_string(),
            value,
            title,
            body: body.clone(),
            fingerprint: fp,
            labels,
            from_input: false,
        };
        let listed = alert_context(&Grouped { alert: alert.clone(), source: source.to_string() });
        let context =
            context! { body => &body, alerts => vec![listed], count => 1, group => context! {}, ..with_title };
        Notification { alert, notify: rule.notify.clone(), context, errors, relayed: false, grouped: false }
    }
}

fn severity_str(s: crate::spec::AlertSeverity) -> &'static str {
    match s {
        crate::spec::AlertSeverity::Info => "info",
        crate::spec::AlertSeverity::Warning => "warning",
        crate::spec::AlertSeverity::Critical => "critical",
    }
}

/// Where a group is kept: its notifier, the rule that made it, its label values.
fn group_key(notifier: &str, rule: Option<&str>, labels: &indexmap::IndexMap<String, String>) -> String {
    let mut k = format!("{notifier}\u{1f}{}", rule.unwrap_or(""));
    for (l, v) in labels {
        k += &format!("\u{1f}{l}={v}");
    }
    k
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

    /// A rule `name` with `when` and every other key at its default
    /// (`for: 0s`, notifies `log` once, resolves): what each test changes.
    pub(super) fn plan(name: &str, when: &str) -> AlertPlan {
        AlertPlan {
            rule: name.into(),
            when: when.into(),
            relay: false,
            duration: Duration::ZERO,
            severity: crate::spec::AlertSeverity::Critical,
            repeat: None,
            resolve: true,
            notify: vec!["log".into()],
            title: "{{ channel }} at {{ value | round(1) }}".into(),
            body: None,
            labels: vec![],
            over: AlertOver::Channels,
            resolve_when: None,
            flapping: None,
            inhibit: None,
            group: None,
            mute: vec![],
        }
    }

    fn rule(when: &str, hold: u64, repeat: Option<u64>) -> AlertPlan {
        AlertPlan { duration: Duration::from_secs(hold), repeat: repeat.map(Duration::from_secs), ..plan("hot", when) }
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
        let mut a = Alerter::new(&[relay, watch], &[]).unwrap();
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
        let mut a = Alerter::new(&[titled], &[]).unwrap();
        let mut out = Vec::new();
        a.process(&[incoming("berlin.gw1.boiler.temp", "critical")], &mut out);
        assert_eq!(out[0].alert.title, "[critical] berlin.gw1.boiler.temp");
        assert_eq!(out[0].alert.body, "as the gateway said");
    }

    #[test]
    fn for_repeat_and_resolve() {
        let mut a = Alerter::new(&[rule("value > 95", 30, Some(60))], &[]).unwrap();
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
        let mut whole = Alerter::new(&plans, &[]).unwrap();
        let expected = states(&mut whole, series.clone());
        assert_eq!(expected, vec![(300, "firing")]);
        let mut got = Vec::new();
        let mut saved = String::new();
        for r in series {
            let mut a = Alerter::new(&plans, &[]).unwrap();
            a.restore_state(&saved);
            got.extend(states(&mut a, vec![r]));
            saved = a.save_state();
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn silences_hold_notifications_not_state() {
        let mut a = Alerter::new(&[rule("value > 95", 0, None)], &[]).unwrap();
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
        let mut a = Alerter::new(&[p], &[]).unwrap();
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
        let mut a = Alerter::new(&[rule("value > 95", 0, None)], &[]).unwrap();
        let gap = Reading::sample("boiler.temp", 20, None);
        // Firing at 10; the stale gap at 20 is no evidence that it cleared.
        assert_eq!(states(&mut a, vec![at(10, 97.0), gap, at(30, 97.0)]), vec![(10, "firing")]);
        let far = crate::model::time::now_micros() / 1_000_000 + 365 * 86_400;
        assert_eq!(states(&mut a, vec![at(far, 90.0)]), vec![], "a year ahead: ignored");
        assert_eq!(states(&mut a, vec![at(40, 90.0)]), vec![(40, "resolved")]);
    }

    #[test]
    fn each_channel_fires_on_its_own() {
        let mut a = Alerter::new(&[rule("value > 95", 0, None)], &[]).unwrap();
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

#[cfg(test)]
mod quiet_tests {
    use super::*;
    use crate::compile::plan::{FlappingPlan, InhibitPlan, MuteWindow};
    use crate::model::record::{Flags, Reading};
    use std::time::Duration;

    fn rule(name: &str, when: &str) -> AlertPlan {
        AlertPlan {
            severity: crate::spec::AlertSeverity::Warning,
            notify: vec!["mail".into()],
            title: "{{ rule }} {{ channel }}".into(),
            ..super::tests::plan(name, when)
        }
    }

    fn reading(ch: &str, source: &str, t: i64, v: Option<f64>, flags: Flags) -> Record {
        let Record::Reading(mut r) = Reading::sample(ch, t, v) else { unreachable!() };
        r.source = Arc::from(source);
        r.flags = flags;
        Record::Reading(r)
    }

    fn at(ch: &str, t: i64, v: f64) -> Record {
        reading(ch, "plc1", t, Some(v), Flags::empty())
    }

    /// (seconds, rule, channel, state, notifiers) of what went out.
    fn run(a: &mut Alerter, recs: Vec<Record>) -> Vec<(i64, String, String, &'static str, Vec<String>)> {
        let mut out = Vec::new();
        a.process(&recs, &mut out);
        out.iter()
            .map(|n| {
                (
                    n.alert.ts / 1_000_000,
                    n.alert.rule.clone(),
                    n.alert.channel.clone(),
                    n.alert.state.as_str(),
                    n.notify.to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn resolve_when_keeps_a_hovering_value_firing() {
        let mut p = rule("hot", "value > 95");
        p.resolve_when = Some("value < 90".into());
        let mut a = Alerter::new(&[p], &[]).unwrap();
        let seq = [96.0, 94.0, 96.0, 93.0, 95.5, 91.0, 89.0, 96.0];
        let recs = seq.iter().enumerate().map(|(t, v)| at("boiler.temp", t as i64, *v)).collect();
        let got: Vec<(i64, &str)> = run(&mut a, recs).iter().map(|n| (n.0, n.3)).collect();
        assert_eq!(got, vec![(0, "firing"), (6, "resolved"), (7, "firing")]);
    }

    #[test]
    fn flapping_is_reported_once_then_quiet_until_it_settles() {
        let mut p = rule("hot", "value > 95");
        p.flapping = Some(FlappingPlan { changes: 4, within: Duration::from_secs(60) });
        let mut a = Alerter::new(&[p], &[]).unwrap();
        // Fires and resolves every 5 s: two notifications, then flapping once.
        let recs = (0..12).map(|t| at("boiler.temp", t * 5, if t % 2 == 0 { 97.0 } else { 90.0 })).collect();
        let got: Vec<(i64, &str)> = run(&mut a, recs).iter().map(|n| (n.0, n.3)).collect();
        assert_eq!(got, vec![(0, "firing"), (5, "resolved"), (10, "firing"), (15, "flapping")]);
        // Quiet for a minute while resolved: it says so once, at the end of the window.
        let later = vec![at("boiler.temp", 60, 90.0), at("boiler.temp", 114, 90.0), at("boiler.temp", 116, 90.0)];
        let got: Vec<(i64, &str)> = run(&mut a, later).iter().map(|n| (n.0, n.3)).collect();
        assert_eq!(got, vec![(116, "resolved")]);
        assert!(a.states.is_empty(), "nothing left to say");
    }

    #[test]
    fn a_mute_window_holds_and_then_sends_what_still_fires() {
        // Sundays 02:00–04:00 in Berlin; 2026-03-01 is a Sunday (UTC+1).
        let mut p = rule("hot", "value > 95");
        p.mute = vec![MuteWindow { days: vec![6], start: 120, end: 240, tz: "Europe/Berlin".into() }];
        let mut a = Alerter::new(&[p], &[]).unwrap();
        let t0 = 1_772_326_800; // 2026-03-01T01:00:00Z = 02:00 Berlin
        let mut recs = vec![at("boiler.temp", t0 + 60, 97.0), at("other.temp", t0 + 60, 97.0)];
        recs.push(at("other.temp", t0 + 600, 90.0)); // fired and resolved within: never sent
        assert!(run(&mut a, recs).is_empty());
        assert_eq!(a.stats.held, 2);
        let got = run(&mut a, vec![at("boiler.temp", t0 + 7200, 97.0)]);
        assert_eq!(
            got.iter().map(|n| (n.0 - t0, n.2.as_str(), n.3)).collect::<Vec<_>>(),
            vec![(7200, "boiler.temp", "firing")]
        );
    }

    #[test]
    fn a_held_notification_goes_out_when_the_hold_ends_within_one_batch() {
        // The mute window ends at 04:00 Berlin; the records of the whole
        // morning come in one batch (a virtual-clock run): the firing goes
        // out at the first record at or past 04:00, not at the last one.
        let mut p = rule("hot", "channel == 'boiler.temp' and value > 95");
        p.mute = vec![MuteWindow { days: vec![6], start: 120, end: 240, tz: "Europe/Berlin".into() }];
        let mut a = Alerter::new(&[p], &[]).unwrap();
        let t0 = 1_772_326_800; // 2026-03-01T01:00:00Z = 02:00 Berlin
        let recs: Vec<Record> = (0..=300).map(|m| at("other.temp", t0 + 60 * m, 20.0)).collect();
        let mut batch = vec![at("boiler.temp", t0 + 60, 97.0)];
        batch.extend(recs);
        let got = run(&mut a, batch);
        assert_eq!(got.iter().map(|n| (n.0 - t0, n.3)).collect::<Vec<_>>(), vec![(7200, "firing")]);
    }

    #[test]
    fn a_guarded_rule_skips_other_channels_but_ends_their_restored_states() {
        let p = rule("hot", "channel == 'boiler.temp' and value > 95");
        let mut a = Alerter::new(std::slice::from_ref(&p), &[]).unwrap();
        assert_eq!(run(&mut a, vec![at("other.temp", 1, 99.0), at("boiler.temp", 2, 99.0)]).len(), 1);
        // A state on a channel the rule no longer names (the spec changed
        // between runs) is still looked at, and resolves.
        let mut b = Alerter::new(&[rule("hot", "value > 95")], &[]).unwrap();
        run(&mut b, vec![at("other.temp", 1, 99.0)]);
        let mut a = Alerter::new(&[p], &[]).unwrap();
        a.restore_state(&b.save_state());
        let got = run(&mut a, vec![at("other.temp", 5, 20.0)]);
        assert_eq!(got.iter().map(|n| (n.2.as_str(), n.3)).collect::<Vec<_>>(), vec![("other.temp", "resolved")]);
    }

    #[test]
    fn a_source_down_inhibits_its_channels_until_it_is_back() {
        let mut down = rule("plc_down", "down");
        down.over = AlertOver::Sources;
        down.duration = Duration::from_secs(10);
        down.inhibit = Some(InhibitPlan { rules: vec!["stale*".into()], equal: vec!["source".into()] });
        let mut stale = rule("stale_value", "value is none");
        stale.duration = Duration::from_secs(20);
        let mut a = Alerter::new(&[down, stale], &[]).unwrap();
        let failed = |ch: &str, src: &str, t| reading(ch, src, t, None, Flags::TIMEOUT);
        let mut recs = Vec::new();
        for t in (0..=40).step_by(5) {
            recs.push(failed("plc1.a", "plc1", t));
            recs.push(failed("plc1.b", "plc1", t));
            recs.push(failed("plc2.a", "plc2", t + 100));
            // A stale gap says nothing of its source: plc3 is never down.
            recs.push(reading("plc3.a", "plc3", t + 200, None, Flags::STALE));
        }
        let got = run(&mut a, recs);
        let seen: Vec<(i64, &str, &str)> = got.iter().map(|n| (n.0, n.1.as_str(), n.2.as_str())).collect();
        // plc1 and plc2 are down (one alert each); their channels' alerts
        // are held; plc3's is not: no source of the same name is down.
        assert_eq!(
            seen,
            vec![(10, "plc_down", "plc1"), (110, "plc_down", "plc2"), (220, "stale_value", "plc3.a")],
            "{got:?}"
        );
        let ctx_ok = got[0].4 == vec!["mail".to_string()];
        assert!(ctx_ok);
        // plc1 answers again: it resolves; its channels no longer fire (they
        // have values), so nothing of them was ever sent.
        let back = vec![at("plc1.a", 150, 1.0), at("plc1.b", 150, 1.0)];
        let got: Vec<(i64, String, &str)> = run(&mut a, back).into_iter().map(|n| (n.0, n.2, n.3)).collect();
        assert_eq!(got, vec![(150, "plc1".to_string(), "resolved")]);
    }

    #[test]
    fn an_inhibited_alert_still_firing_is_sent_when_the_inhibition_ends() {
        let mut down = rule("plc_down", "down");
        down.over = AlertOver::Sources;
        down.inhibit = Some(InhibitPlan { rules: vec!["hot".into()], equal: vec![] });
        let hot = rule("hot", "value is not none and value > 95");
        let mut a = Alerter::new(&[down, hot], &[]).unwrap();
        let recs = vec![
            reading("plc1.x", "plc1", 0, None, Flags::DISCONNECTED),
            reading("boiler.temp", "plc2", 1, Some(97.0), Flags::empty()),
        ];
        let got: Vec<(i64, String)> = run(&mut a, recs).into_iter().map(|n| (n.0, n.1)).collect();
        assert_eq!(got, vec![(0, "plc_down".to_string())]);
        // plc1 is back; hot still fires: sent now.
        let got: Vec<(i64, String, &str)> = run(&mut a, vec![reading("plc1.x", "plc1", 5, Some(1.0), Flags::empty())])
            .into_iter()
            .map(|n| (n.0, n.1, n.3))
            .collect();
        assert_eq!(got, vec![(5, "plc_down".to_string(), "resolved"), (5, "hot".to_string(), "firing")]);
    }

    #[test]
    fn twenty_channels_going_bad_at_once_make_one_notification() {
        let mut p = rule("bad", "quality == 'bad'");
        p.notify = vec!["mail".into(), "log".into()];
        // The mail notifier groups by source; the log notifier does not.
        let group =
            GroupPlan { by: vec!["source".into()], wait: Duration::from_secs(30), interval: Duration::from_secs(300) };
        let mail =
            NotifierPlan { id: "mail".into(), kind: crate::compile::plan::NotifierKind::Stdout, group: Some(group) };
        let log = NotifierPlan { id: "log".into(), kind: crate::compile::plan::NotifierKind::Stdout, group: None };
        let notifiers = [mail, log];
        let mut a = Alerter::new(&[p.clone()], &notifiers).unwrap();
        let bad = |ch: String, t| {
            let Record::Reading(mut r) = Reading::sample(&ch, t, Some(1.0)) else { unreachable!() };
            r.quality = crate::model::record::Quality::Bad;
            r.source = Arc::from("plc1");
            Record::Reading(r)
        };
        let recs: Vec<Record> = (0..20).map(|i| bad(format!("line.ch{i:02}"), 0)).collect();
        let mut out = Vec::new();
        a.process(&recs, &mut out);
        // Each alert is a record at once (for the rule's ungrouped notifier too)…
        assert_eq!(out.len(), 20);
        assert!(out.iter().all(|n| !n.grouped && *n.notify == ["log".to_string()]));
        // … and the group waits 30 s, then says it once.
        out.clear();
        a.process(&[bad("line.ch00".into(), 29)], &mut out);
        assert!(out.is_empty());
        // Kept across a restart.
        let saved = a.save_state();
        let mut a = Alerter::new(&[p], &notifiers).unwrap();
        a.restore_state(&saved);
        a.process(&[bad("line.ch00".into(), 30)], &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let n = &out[0];
        assert!(n.grouped && *n.notify == ["mail".to_string()]);
        assert_eq!(n.alert.title, "20 alerts: 20 firing");
        assert_eq!(n.context.get_attr("count").unwrap().as_usize(), Some(20));
        let listed = n.context.get_attr("alerts").unwrap();
        assert_eq!(listed.len(), Some(20));
        assert_eq!(listed.get_item_by_index(19).unwrap().get_attr("channel").unwrap().as_str(), Some("line.ch19"));
        assert_eq!(n.context.get_attr("group").unwrap().get_attr("source").unwrap().as_str(), Some("plc1"));
    }

    #[test]
    fn a_group_is_sent_when_due_within_one_batch() {
        // A virtual-clock run hands the stage minutes of records at once:
        // the group goes out at the first record past its `wait`, stamped
        // then, not at the batch's end.
        let mut p = rule("bad", "quality == 'bad'");
        p.notify = vec!["mail".into()];
        let group = GroupPlan { by: vec![], wait: Duration::from_secs(30), interval: Duration::from_secs(300) };
        let mail =
            NotifierPlan { id: "mail".into(), kind: crate::compile::plan::NotifierKind::Stdout, group: Some(group) };
        let mut a = Alerter::new(&[p], &[mail]).unwrap();
        let recs: Vec<Record> = (0..=60)
            .map(|t| {
                let Record::Reading(mut r) = Reading::sample("line.a", t * 10, Some(1.0)) else { unreachable!() };
                r.quality = crate::model::record::Quality::Bad;
                Record::Reading(r)
            })
            .collect();
        let mut out = Vec::new();
        a.process(&recs, &mut out);
        let sent: Vec<i64> = out.iter().filter(|n| n.grouped).map(|n| n.alert.ts / 1_000_000).collect();
        assert_eq!(sent, [30], "{out:?}");
    }

    #[test]
    fn held_state_survives_a_restart() {
        let mut p = rule("hot", "value > 95");
        p.mute = vec![MuteWindow { days: vec![], start: 0, end: 60, tz: "UTC".into() }];
        let mut a = Alerter::new(&[p.clone()], &[]).unwrap();
        // 00:10 UTC: muted.
        assert!(run(&mut a, vec![at("boiler.temp", 600, 97.0)]).is_empty());
        let saved = a.save_state();
        assert!(saved.contains("\"held\":true"), "{saved}");
        let mut b = Alerter::new(&[p], &[]).unwrap();
        b.restore_state(&saved);
        // 01:00: the window is over; it still fires and goes out, once.
        let got = run(&mut b, vec![at("other", 3600, 1.0)]);
        assert_eq!(
            got.iter().map(|n| (n.0, n.2.as_str(), n.3)).collect::<Vec<_>>(),
            vec![(3600, "boiler.temp", "firing")]
        );
        assert!(run(&mut b, vec![at("boiler.temp", 3700, 97.0)]).is_empty());
    }
}
