//! Spec → Plan. Pure: no I/O (besides nothing), no async, and every problem at once.
//!
//! The compiler walks every section of a parsed [`Spec`], parses the
//! quantities, resolves references, checks templates against a sample record,
//! and either returns a [`Plan`] or the full list of [`Diagnostic`]s. Warnings
//! are returned alongside a plan.

mod compute;
pub mod cron;
mod export;
mod forward;
mod nats;
mod outputs;
pub mod pipetest;
pub mod plan;
pub mod quiet;
mod sources;
mod stages;
pub mod templates;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::spec::diag::{self, Code, Diagnostic};
/// Whether text is an address an SMTP envelope takes as it is.
pub use outputs::is_address as is_email_address;
pub use plan::*;

use crate::model::channel::check_channel_name;
use crate::spec::load::join_key;
use crate::spec::{IdentitySpec, SecretSpec, Spec, SpecDoc, StoreSpec, TlsSpec};

/// The result of compiling one file.
pub struct Compiled {
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity() == diag::Severity::Error).count()
    }
}

/// Compiles a parsed spec. `parse_diags` are the problems found while
/// deserializing; they are kept, and the checks still run on what parsed.
pub fn compile(doc: &SpecDoc, spec: &Spec, parse_diags: Vec<Diagnostic>) -> Compiled {
    let base_dir = Path::new(&doc.path).parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Cx { doc, diags: parse_diags, base_dir: base_dir.clone() };
    cx.check_id("name", &spec.name, "the pipeline name");

    let identity = spec.identity.as_ref().map(|i| cx.identity(i));
    let store = spec.store.as_ref().map(|s| cx.store(s));
    let sources = sources::compile_sources(&mut cx, spec);
    let mut plan = Plan {
        name: spec.name.clone(),
        base_dir,
        identity,
        store,
        sources,
        channels: Vec::new(),
        fuse: Vec::new(),
        compute: Vec::new(),
        detect: Vec::new(),
        alerts: Vec::new(),
        notifiers: Vec::new(),
        serve: None,
        backup: None,
        forward: Vec::new(),
        export: Vec::new(),
    };
    stages::compile_stages(&mut cx, spec, &mut plan);
    compute::compile_compute(&mut cx, spec, &mut plan);
    outputs::compile_outputs(&mut cx, spec, &mut plan);
    forward::compile_forward(&mut cx, spec, &mut plan);
    export::compile_export(&mut cx, spec, &mut plan);

    let diagnostics = cx.diags;
    let has_errors = diagnostics.iter().any(|d| d.severity() == diag::Severity::Error);
    Compiled { plan: (!has_errors).then_some(plan), diagnostics }
}

/// The compiler's working state: the document (for positions) and the
/// diagnostics found so far.
pub(crate) struct Cx<'a> {
    pub doc: &'a SpecDoc,
    pub diags: Vec<Diagnostic>,
    pub base_dir: PathBuf,
}

impl Cx<'_> {
    /// Records an error pointing at the value at `path`.
    pub fn err(&mut self, code: Code, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::error(code, message).at(self.doc.value_span(path)).path(path);
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    /// Records an error pointing at the key at `path`.
    pub fn err_key(&mut self, code: Code, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::error(code, message).at(self.doc.key_span(path)).path(path);
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    pub fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        self.opt_duration(path, text).unwrap_or(default)
    }

    pub fn opt_duration(&mut self, path: &str, text: Option<&str>) -> Option<Duration> {
        let text = text?;
        match crate::model::quantity::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(Code::InvalidQuantity, path, e);
                None
            }
        }
    }

    pub fn positive_duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        let d = self.duration(path, text, default);
        if d.is_zero() {
            self.err(Code::InvalidQuantity, path, "must be longer than zero");
            return default;
        }
        d
    }

    pub fn rate(&mut self, path: &str, text: Option<&str>) -> Option<f64> {
        match crate::model::quantity::parse_rate(text?) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(Code::InvalidQuantity, path, e);
                None
            }
        }
    }

    /// Ids of sources, detectors, rules and notifiers: letters, digits, `_`, `-`.
    pub fn check_id(&mut self, path: &str, id: &str, what: &str) {
        if !is_id(id) {
            self.err_key(Code::InvalidId, path, format!("{what} `{id}` is not a valid id")).note =
                Some("ids are 1–64 letters, digits, `_` or `-`, starting with a letter or digit".into());
        }
    }

    /// Channel names: no spaces, no glob characters, at most 200 bytes.
    pub fn check_channel(&mut self, path: &str, name: &str) -> bool {
        if let Err(why) = check_channel_name(name) {
            self.err(Code::InvalidId, path, format!("`{name}` is not a valid channel name: {why}"));
            return false;
        }
        true
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        let p = Path::new(rel);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn secret(&mut self, path: &str, s: &SecretSpec) -> Option<SecretRef> {
        match s {
            SecretSpec::Env { env } => {
                let ok = !env.is_empty() && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    self.err(Code::InvalidValue, path, format!("`{env}` is not an environment variable name"));
                    return None;
                }
                Some(SecretRef::Env(env.clone()))
            }
            SecretSpec::File { file } => Some(SecretRef::File(self.path(file))),
            SecretSpec::Inline(_) => {
                // Never echo the value.
                self.err(Code::InlineSecret, path, "secrets are not written in the spec").hint =
                    Some("use `{env: NAME}` or `{file: PATH}`".into());
                None
            }
        }
    }

    pub fn tls(&mut self, _path: &str, t: &TlsSpec) -> TlsPlan {
        TlsPlan {
            ca: t.ca.as_deref().map(|p| self.path(p)),
            cert: t.cert.as_deref().map(|p| self.path(p)),
            key: t.key.as_deref().map(|p| self.path(p)),
        }
    }

    /// Site and gateway: each one subject token, as ids are (no dots, so
    /// `eg.<site>.<gateway>.<kind>` has exactly four tokens).
    fn identity(&mut self, i: &IdentitySpec) -> IdentityPlan {
        for (key, value) in [("identity.site", &i.site), ("identity.gateway", &i.gateway)] {
            if !is_id(value) {
                self.err(Code::InvalidId, key, format!("`{value}` is not a valid {}", &key[9..])).note = Some(
                    "one subject token: 1–64 letters, digits, `_` or `-`, starting with a letter or digit (no dots)"
                        .into(),
                );
            }
        }
        IdentityPlan { site: i.site.clone(), gateway: i.gateway.clone() }
    }

    fn store(&mut self, s: &StoreSpec) -> StorePlan {
        if s.path.trim().is_empty() {
            self.err(Code::InvalidAddress, "store.path", "the store path is empty");
        }
        let batch = s.batch.unwrap_or(StorePlan::DEFAULT_BATCH);
        if !(1..=10_000_000).contains(&batch) {
            self.err(Code::InvalidQuantity, "store.batch", "batch must be between 1 and 10000000 records");
        }
        let rollups = self.rollups(s.rollups.as_deref().unwrap_or_default());
        StorePlan {
            rollups,
            path: self.path(&s.path),
            retention: self.opt_duration("store.retention", s.retention.as_deref()),
            batch: batch.clamp(1, 10_000_000),
            flush: self.positive_duration("store.flush", s.flush.as_deref(), StorePlan::DEFAULT_FLUSH),
            checkpoint: match s.checkpoint.as_deref().map(str::trim) {
                Some("off") => None,
                text => Some(self.positive_duration("store.checkpoint", text, StorePlan::DEFAULT_CHECKPOINT)),
            },
            records: match &s.records {
                None => crate::spec::RecordKind::ALL.to_vec(),
                Some(r) => {
                    if r.is_empty() {
                        self.err(
                            Code::InvalidValue,
                            "store.records",
                            "the store keeps nothing; leave `records` out for all kinds",
                        );
                    }
                    r.clone()
                }
            },
        }
    }
}

impl Cx<'_> {
    /// `store.rollups`: whole-second buckets, one tier per bucket length, each
    /// kept at least one bucket long; finest first.
    fn rollups(&mut self, specs: &[crate::spec::RollupSpec]) -> Vec<RollupPlan> {
        let mut out: Vec<RollupPlan> = Vec::new();
        for (i, r) in specs.iter().enumerate() {
            let at = format!("store.rollups[{i}]");
            let Some(every) = self.opt_duration(&format!("{at}.every"), Some(&r.every)) else { continue };
            if every < Duration::from_secs(1) || every.subsec_nanos() != 0 {
                self.err(
                    Code::InvalidQuantity,
                    &format!("{at}.every"),
                    "a rollup bucket is whole seconds, at least 1s",
                );
                continue;
            }
            let keep = match r.keep.as_deref().map(str::trim) {
                None | Some("forever") => None,
                Some(text) => match self.opt_duration(&format!("{at}.keep"), Some(text)) {
                    Some(k) if k < every => {
                        self.err(
                            Code::Conflict,
                            &format!("{at}.keep"),
                            format!("`keep` ({text}) is shorter than one bucket (`every: {}`)", r.every.trim()),
                        );
                        continue;
                    }
                    Some(k) => Some(k),
                    None => continue,
                },
            };
            if out.iter().any(|o| o.every == every) {
                self.err(
                    Code::Conflict,
                    &format!("{at}.every"),
                    format!("two rollup tiers of `every: {}`", r.every.trim()),
                );
                continue;
            }
            out.push(RollupPlan { every, keep });
        }
        out.sort_by_key(|r| r.every);
        out
    }
}

/// 1–64 letters, digits, `_` or `-`, starting with a letter or digit.
pub(crate) fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// The keys set among `keys` (name, whether it is given), in order: what a
/// "one of these keys" check names when more than one is.
pub(crate) fn given<'k>(keys: &[(&'k str, bool)]) -> Vec<&'k str> {
    keys.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect()
}

pub(crate) fn key(parent: &str, k: &str) -> String {
    join_key(parent, k)
}

pub(crate) fn diag_index(parent: &str, i: usize) -> String {
    crate::spec::load::join_index(parent, i)
}
