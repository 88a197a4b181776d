//! Tree → [`Spec`], entry by entry, so that one bad source does not hide the
//! problems of the next: every entry of every section is deserialized on its
//! own and its errors are collected.

use indexmap::IndexMap;
use serde::de::DeserializeOwned;

use super::load::{deserialize_at, join_key, Node, NodeValue, SpecDoc};
use super::*;
use crate::spec::diag::{did_you_mean, Code, Diagnostic};

const SECTIONS: &[&str] = &[
    "version",
    "name",
    "description",
    "identity",
    "store",
    "sources",
    "channels",
    "fuse",
    "compute",
    "detect",
    "alerts",
    "notifiers",
    "serve",
    "backup",
    "forward",
    "export",
];

/// Deserializes the whole document. The spec is returned even with errors
/// (entries that failed are left out) so the compiler can still check the rest.
pub fn parse(doc: &SpecDoc) -> (Spec, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut spec = Spec::default();
    let entries = match &doc.root.value {
        NodeValue::Map(entries) => entries,
        NodeValue::Null => {
            diags.push(Diagnostic::error(
                Code::MissingField,
                "the file is empty; a pipeline needs `version: 1` and `name`",
            ));
            return (spec, diags);
        }
        _ => {
            diags.push(Diagnostic::error(Code::InvalidValue, "a pipeline spec is a map of sections").at(doc.root.span));
            return (spec, diags);
        }
    };
    for (key, span, _) in entries {
        if !SECTIONS.contains(&key.as_str()) {
            diags.push(
                Diagnostic::error(Code::UnknownField, format!("unknown section `{key}`"))
                    .at(*span)
                    .path(key)
                    .hint_opt(did_you_mean(key, SECTIONS.iter().copied())),
            );
        }
    }
    let root = &doc.root;
    match root.get("version") {
        None => diags.push(Diagnostic::error(Code::MissingField, "missing `version: 1`").at(root.span)),
        Some(n) => match n.value {
            NodeValue::Int(1) => spec.version = 1,
            _ => diags.push(
                Diagnostic::error(Code::Version, "unsupported spec version; this edgeguard reads `version: 1`")
                    .at(n.span)
                    .path("version"),
            ),
        },
    }
    match root.get("name") {
        None => diags.push(Diagnostic::error(Code::MissingField, "missing `name`").at(root.span)),
        Some(n) => spec.name = single(doc, n, "name", "the pipeline name", &mut diags).unwrap_or_default(),
    }
    if let Some(n) = root.get("description") {
        spec.description = single(doc, n, "description", "the description", &mut diags);
    }
    if let Some(n) = root.get("identity") {
        spec.identity = single(doc, n, "identity", "the identity", &mut diags);
    }
    if let Some(n) = root.get("store") {
        spec.store = single(doc, n, "store", "the store", &mut diags);
    }
    if let Some(n) = root.get("serve") {
        spec.serve = single(doc, n, "serve", "the serve section", &mut diags);
    }
    if let Some(n) = root.get("backup") {
        spec.backup = single(doc, n, "backup", "the backup section", &mut diags);
    }
    spec.sources = tagged_section(doc, "sources", SourceSpec::KINDS, SourceSpec::from_node, &mut diags);
    spec.channels = section(doc, "channels", "a channel rule", &mut diags);
    spec.fuse = section(doc, "fuse", "a fusion", &mut diags);
    spec.compute = section(doc, "compute", "a computed channel", &mut diags);
    spec.detect = section(doc, "detect", "a detector", &mut diags);
    spec.alerts = section(doc, "alerts", "an alert rule", &mut diags);
    spec.notifiers = tagged_section(doc, "notifiers", NotifierSpec::KINDS, NotifierSpec::from_node, &mut diags);
    spec.forward = tagged_section(doc, "forward", ForwardSpec::KINDS, ForwardSpec::from_node, &mut diags);
    spec.export = tagged_section(doc, "export", ExportSpec::KINDS, ExportSpec::from_node, &mut diags);
    (spec, diags)
}

fn single<T: DeserializeOwned>(
    doc: &SpecDoc,
    node: &Node,
    path: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    deserialize_at(doc, node, path, what, diags)
}

fn section_entries<'a>(doc: &'a SpecDoc, name: &str, diags: &mut Vec<Diagnostic>) -> &'a [(String, Span, Node)] {
    match doc.root.get(name) {
        None => &[],
        Some(Node { value: NodeValue::Map(entries), .. }) => entries,
        Some(Node { value: NodeValue::Null, .. }) => &[],
        Some(n) => {
            diags.push(
                Diagnostic::error(Code::InvalidValue, format!("`{name}` must be a map from id to definition"))
                    .at(n.span)
                    .path(name),
            );
            &[]
        }
    }
}

use crate::spec::diag::Span;

fn section<T: DeserializeOwned>(
    doc: &SpecDoc,
    name: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> IndexMap<String, T> {
    let mut out = IndexMap::new();
    for (id, _, node) in section_entries(doc, name, diags) {
        let path = join_key(name, id);
        if let Some(v) = deserialize_at(doc, node, &path, &format!("{what} `{id}`"), diags) {
            out.insert(id.clone(), v);
        }
    }
    out
}

type FromKind<T> = fn(&str, &SpecDoc, &Node, &str, &str, &mut Vec<Diagnostic>) -> Option<Option<T>>;

/// A section whose entries are chosen by `type`. The tag is read here, and the
/// rest of the entry is deserialized straight into the variant's struct, so
/// that errors inside an entry keep their exact key path.
fn tagged_section<T>(
    doc: &SpecDoc,
    name: &str,
    kinds: &[&str],
    from_kind: FromKind<T>,
    diags: &mut Vec<Diagnostic>,
) -> IndexMap<String, T> {
    let mut out = IndexMap::new();
    let singular = match name {
        "forward" => "forward target",
        "export" => "export",
        _ => name.trim_end_matches('s'),
    };
    for (id, key_span, node) in section_entries(doc, name, diags) {
        let path = join_key(name, id);
        let NodeValue::Map(fields) = &node.value else {
            diags.push(
                Diagnostic::error(Code::InvalidValue, format!("{singular} `{id}` must be a map with a `type`"))
                    .at(node.span)
                    .path(&path),
            );
            continue;
        };
        let Some(kind_node) = node.get("type") else {
            diags.push(
                Diagnostic::error(Code::MissingField, format!("{singular} `{id}` has no `type`"))
                    .at(*key_span)
                    .path(&path)
                    .note(format!("one of: {}", kinds.join(", "))),
            );
            continue;
        };
        let kind = kind_node.as_str().unwrap_or("");
        let rest = Node {
            span: node.span,
            value: NodeValue::Map(fields.iter().filter(|(k, _, _)| k != "type").cloned().collect()),
        };
        let what = format!("{kind} {singular} `{id}`");
        match from_kind(kind, doc, &rest, &path, &what, diags) {
            Some(Some(v)) => {
                out.insert(id.clone(), v);
            }
            Some(None) => {}
            None => diags.push(
                Diagnostic::error(Code::UnknownKind, format!("unknown {singular} type `{kind}`"))
                    .at(kind_node.span)
                    .path(&join_key(&path, "type"))
                    .hint_opt(did_you_mean(kind, kinds.iter().copied()))
                    .note(format!("one of: {}", kinds.join(", "))),
            ),
        }
    }
    out
}

/// The `type` names of a tagged section, written once: each becomes an
/// entry of `KINDS` (for diagnostics), an arm of the parser, and an arm of
/// `type_name` — whose match is exhaustive, so a variant left out here does
/// not compile. A test checks the names against serde's own (the schema).
macro_rules! kinds {
    ($enum:ident { $($name:literal => $variant:ident),+ $(,)? }) => {
        impl $enum {
            pub const KINDS: &'static [&'static str] = &[$($name),+];

            /// The spec's `type:` of this entry. Its match is what makes a
            /// variant missing from the `kinds!` list a compile error.
            #[allow(dead_code)]
            pub fn type_name(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => $name),+
                }
            }

            /// The entry of `type: kind`; `None` when no kind has that name.
            fn from_node(
                kind: &str,
                doc: &SpecDoc,
                n: &Node,
                path: &str,
                what: &str,
                d: &mut Vec<Diagnostic>,
            ) -> Option<Option<$enum>> {
                Some(match kind {
                    $($name => deserialize_at(doc, n, path, what, d).map($enum::$variant),)+
                    _ => return None,
                })
            }
        }
    };
}

kinds!(SourceSpec { "modbus" => Modbus, "mqtt" => Mqtt, "nats" => Nats, "serial" => Serial, "simulate" => Simulate });
kinds!(NotifierSpec { "stdout" => Stdout, "file" => File, "exec" => Exec, "webhook" => Webhook, "mqtt" => Mqtt, "email" => Email });
kinds!(ForwardSpec { "nats" => Nats, "mqtt" => Mqtt });
kinds!(ExportSpec { "parquet" => Parquet });

#[cfg(test)]
mod tests {
    use super::*;

    /// The `type` names serde accepts, read off the JSON Schema.
    fn serde_names<T: schemars::JsonSchema>() -> Vec<String> {
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap();
        // An enum of one variant is that variant's schema, without `oneOf`.
        let variants = schema["oneOf"].as_array().cloned().unwrap_or_else(|| vec![schema.clone()]);
        let mut names: Vec<String> =
            variants.iter().map(|v| v["properties"]["type"]["const"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn kind_names_are_serdes_own() {
        let sorted = |k: &[&str]| {
            let mut v: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(serde_names::<SourceSpec>(), sorted(SourceSpec::KINDS));
        assert_eq!(serde_names::<NotifierSpec>(), sorted(NotifierSpec::KINDS));
        assert_eq!(serde_names::<ForwardSpec>(), sorted(ForwardSpec::KINDS));
        assert_eq!(serde_names::<ExportSpec>(), sorted(ExportSpec::KINDS));
    }
}
