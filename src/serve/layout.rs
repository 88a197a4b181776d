//! What the dashboard needs to know about channels beyond their readings,
//! taken from the plan: the range a channel's rule allows and, for a fused
//! channel, its inputs. `/api/v1/channels` adds both to each channel; a
//! reload replaces them with the new plan's.

use std::collections::HashMap;

use globset::GlobMatcher;

use crate::compile::Plan;
use crate::model::channel::channel_matcher;

/// Ranges and fusion inputs of a plan's channels.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Exact rule names with their range (exact names win over globs).
    exact: HashMap<String, Option<(f64, f64)>>,
    /// Glob rules in spec order with their range.
    globs: Vec<(GlobMatcher, Option<(f64, f64)>)>,
    /// Fused channel → its inputs.
    inputs: HashMap<String, Vec<String>>,
}

impl Layout {
    pub fn new(plan: &Plan) -> Layout {
        let mut layout = Layout::default();
        for r in &plan.channels {
            if !r.is_glob {
                layout.exact.insert(r.pattern.clone(), r.range);
            } else if let Ok(m) = channel_matcher(&r.pattern) {
                layout.globs.push((m, r.range));
            }
        }
        for f in &plan.fuse {
            layout.inputs.insert(f.channel.clone(), f.inputs.clone());
        }
        layout
    }

    /// The range of the rule that validates `channel` (the same rule the
    /// validation stage picks: the exact name, else the first glob).
    pub fn range(&self, channel: &str) -> Option<(f64, f64)> {
        match self.exact.get(channel) {
            Some(range) => *range,
            None => self.globs.iter().find(|(m, _)| m.is_match(channel)).and_then(|(_, range)| *range),
        }
    }

    /// The inputs of `channel` when it is fused.
    pub fn inputs(&self, channel: &str) -> Option<&[String]> {
        self.inputs.get(channel).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_rule_wins_over_a_glob_and_fused_channels_list_their_inputs() {
        let spec = "version: 1\nname: t\nsources:\n  s: {type: simulate, signals: {t.a: {}, t.b: {}, p: {}}}\n\
                    channels:\n  \"t*\": {range: [0, 10]}\n  t.b: {range: [1, 2]}\n  p: {unit: bar}\n\
                    fuse:\n  t: {inputs: [t.a, t.b], method: mean}\n";
        let doc = crate::spec::load::load_bytes("t.yaml", spec.as_bytes().to_vec()).expect("loads");
        let (parsed, diags) = crate::spec::parse(&doc);
        let plan = crate::compile::compile(&doc, &parsed, diags).plan.expect("compiles");
        let l = Layout::new(&plan);
        assert_eq!(
            (l.range("t.a"), l.range("t.b"), l.range("t"), l.range("p")),
            (Some((0.0, 10.0)), Some((1.0, 2.0)), Some((0.0, 10.0)), None)
        );
        assert_eq!(l.inputs("t"), Some(&["t.a".to_string(), "t.b".to_string()][..]));
        assert_eq!(l.inputs("t.a"), None);
    }
}
