//! Text → marked YAML tree → typed [`Spec`](super::Spec).
//!
//! This is the only module that touches the YAML parser. It pulls events from
//! `yaml-rust2` one at a time and builds a [`Node`] tree in which every node
//! keeps the line and column it came from, so that every later diagnostic — a
//! serde type error or a semantic error found by the compiler — can point into
//! the file.
//!
//! Hostile input is refused before it costs anything: files larger than
//! [`MAX_SPEC_BYTES`], invalid UTF-8, nesting deeper than [`MAX_DEPTH`], more
//! than [`MAX_NODES`] nodes after alias expansion (the "billion laughs"), and
//! duplicate keys. The builder is iterative, so depth never touches the stack.
//!
//! Why not `serde_yaml`: it reports a position only for the first syntax error
//! and keeps no positions for values, so "source `plc2` does not exist" could
//! not point at the line that names it; it is also unmaintained since 2024.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use crate::spec::diag::{Code, Diagnostic, Span};

/// Largest spec file accepted (bytes). Real specs are a few kB.
pub const MAX_SPEC_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes accepted, counting every alias expansion.
pub const MAX_NODES: usize = 250_000;
/// Most bytes of keys and scalars accepted, counting every alias expansion.
pub const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;

/// A YAML value with the position it was read from.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Span,
    pub value: NodeValue,
}

#[derive(Debug, Clone)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order, each with the span of the key itself.
    Map(Vec<(String, Span, Node)>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to a JSON value so serde can deserialize it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => {
                Value::Object(entries.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// A loaded spec file: its text, its tree and the index from key paths to
/// positions that diagnostics use.
#[derive(Debug)]
pub struct SpecDoc {
    pub path: String,
    pub text: String,
    pub root: Node,
    index: HashMap<String, (Span, Span)>,
}

impl SpecDoc {
    /// The span of the key at `path` (`sources.plc1.points[0].address`), or
    /// of the closest ancestor that exists.
    pub fn key_span(&self, path: &str) -> Span {
        self.lookup(path).0
    }

    /// The span of the value at `path`, or of the closest ancestor.
    pub fn value_span(&self, path: &str) -> Span {
        self.lookup(path).1
    }

    fn lookup(&self, path: &str) -> (Span, Span) {
        let mut p = path;
        loop {
            if let Some(s) = self.index.get(p) {
                return *s;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (self.root.span, self.root.span),
            }
        }
    }

    fn reindex(&mut self) {
        self.index.clear();
        index_node(&self.root, String::new(), self.root.span, &mut self.index);
    }

    /// The node at a key path, if there is one.
    #[cfg(test)]
    pub fn node(&self, path: &str) -> Option<&Node> {
        let mut node = &self.root;
        for seg in split_path(path) {
            node = match (seg, &node.value) {
                (Seg::Key(k), NodeValue::Map(_)) => node.get(k)?,
                (Seg::Index(i), NodeValue::Seq(items)) => items.get(i)?,
                _ => return None,
            };
        }
        Some(node)
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

#[cfg(test)]
fn split_path(path: &str) -> impl Iterator<Item = Seg<'_>> {
    // Keys may contain dots (channel names): the index stores paths exactly as
    // `join_key` builds them, and lookups of nested nodes walk by the same rule,
    // quoting keys that contain `.` or `[`.
    let mut rest = path;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                return Some(Seg::Key(q));
            }
            return inner.parse().ok().map(Seg::Index);
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let key = &rest[..end];
        rest = &rest[end..];
        Some(Seg::Key(key))
    })
}

/// Appends a map key to a path, quoting it when it contains `.` or `[`.
pub fn join_key(parent: &str, key: &str) -> String {
    if key.contains(['.', '[', ']', '"']) {
        format!("{parent}[\"{key}\"]")
    } else if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn join_index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Reads and parses a spec file. Problems come back as diagnostics (code E0xx).
pub fn load_file(path: &str) -> Result<SpecDoc, LoadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| LoadError::Io(path.to_string(), e))?;
    let mut bytes = Vec::new();
    // Read one byte past the limit so an oversized file is refused without
    // reading it all.
    file.take(MAX_SPEC_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| LoadError::Io(path.to_string(), e))?;
    if bytes.len() > MAX_SPEC_BYTES {
        let d = Diagnostic::error(
            Code::TooLarge,
            format!("the file is larger than {} MiB; a pipeline spec is a few kB", MAX_SPEC_BYTES >> 20),
        );
        return Err(LoadError::Invalid(SpecDoc::empty(path, String::new()), vec![d]));
    }
    load_bytes(path, bytes)
}

/// Parses spec text that is already in memory.
pub fn load_bytes(path: &str, bytes: Vec<u8>) -> Result<SpecDoc, LoadError> {
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let prefix = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let line = prefix.matches('\n').count() + 1;
            let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let d = Diagnostic::error(Code::Encoding, format!("the file is not valid UTF-8 (byte offset {valid})"))
                .at(Span { line, col });
            return Err(LoadError::Invalid(SpecDoc::empty(path, text), vec![d]));
        }
    };
    let text = text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text);
    match build_tree(&text) {
        Ok(root) => {
            let mut doc = SpecDoc { path: path.to_string(), text, root, index: HashMap::new() };
            doc.reindex();
            Ok(doc)
        }
        Err(d) => Err(LoadError::Invalid(SpecDoc::empty(path, text), vec![d])),
    }
}

/// Deserializes the node at `path` into `T`, recording a diagnostic on error.
///
/// Unknown fields are collected all at once: each is reported, removed, and
/// deserialization retried, so two typos in one source give two diagnostics.
pub fn deserialize_at<T: DeserializeOwned>(
    doc: &SpecDoc,
    node: &Node,
    path: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let mut value = node.to_json();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(v) => return Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let message = e.inner().to_string();
                let mut full = path.to_string();
                for seg in e.path().iter() {
                    use serde_path_to_error::Segment;
                    full = match seg {
                        Segment::Seq { index } => join_index(&full, *index),
                        Segment::Map { key } => join_key(&full, key),
                        Segment::Enum { .. } | Segment::Unknown => full,
                    };
                }
                if let Some((field, expected)) = parse_unknown_field(&message) {
                    // The tracked path ends at the unknown key itself.
                    let d = Diagnostic::error(Code::UnknownField, format!("unknown field `{field}` in {what}"))
                        .at(doc.key_span(&full))
                        .path(&full)
                        .hint_opt(crate::spec::diag::did_you_mean(&field, expected.iter().map(String::as_str)))
                        .note_opt((!expected.is_empty()).then(|| format!("expected one of: {}", expected.join(", "))));
                    diags.push(d);
                    let parent_path: Vec<_> = e.path().iter().cloned().collect();
                    if remove_at(&mut value, &parent_path, &field) {
                        continue;
                    }
                    return None;
                }
                let code = if message.starts_with("missing field") { Code::MissingField } else { Code::InvalidValue };
                let span = if code == Code::MissingField { doc.key_span(&full) } else { doc.value_span(&full) };
                let message = humanize_serde(&message);
                let _ = inner;
                diags.push(Diagnostic::error(code, format!("{message} in {what}")).at(span).path(&full));
                return None;
            }
        }
    }
    None
}

fn remove_at(value: &mut serde_json::Value, segs: &[serde_path_to_error::Segment], field: &str) -> bool {
    use serde_path_to_error::Segment;
    // The last segment is the unknown key; walk to its parent.
    let parents = match segs.last() {
        Some(Segment::Map { key }) if key == field => &segs[..segs.len() - 1],
        _ => segs,
    };
    let mut v = value;
    for seg in parents {
        v = match (seg, v) {
            (Segment::Seq { index }, serde_json::Value::Array(a)) => match a.get_mut(*index) {
                Some(x) => x,
                None => return false,
            },
            (Segment::Map { key }, serde_json::Value::Object(o)) => match o.get_mut(key) {
                Some(x) => x,
                None => return false,
            },
            (Segment::Enum { .. } | Segment::Unknown, x) => x,
            _ => return false,
        };
    }
    match v {
        serde_json::Value::Object(o) => o.shift_remove(field).is_some(),
        _ => false,
    }
}

/// `unknown field `adress`, expected one of `a`, `b`` → ("adress", [a, b]).
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_string();
    let expected = rest[end + 1..].split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((field, expected))
}

/// Rephrases serde's messages in the spec's terms:
/// `invalid type: string "lots", expected usize` → `expected a whole number, found the string "lots"`.
fn humanize_serde(message: &str) -> String {
    let words = |t: &str| -> String {
        let t = t.trim();
        match t {
            "usize" | "u8" | "u16" | "u32" | "u64" | "i64" | "i32" => "a whole number".into(),
            "f64" | "f32" => "a number".into(),
            "a string" | "a borrowed string" => "a string".into(),
            "a boolean" => "true or false".into(),
            "a sequence" => "a list".into(),
            _ if t.starts_with("a sequence") || t.starts_with("an array") => "a list".into(),
            _ if t.starts_with("struct ") || t == "a map" => "a map of keys".into(),
            _ => t.to_string(),
        }
    };
    if let Some(rest) = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: ")) {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let found = match found {
                "map" => "a map".to_string(),
                "sequence" => "a list".to_string(),
                "null" | "unit value" => "nothing".to_string(),
                f if f.starts_with("string ") => format!("the string {}", &f[7..]),
                f if f.starts_with("integer ") => format!("the number {}", &f[8..]),
                f if f.starts_with("floating point ") => format!("the number {}", &f[15..]),
                f if f.starts_with("boolean ") => f[8..].to_string(),
                f => f.to_string(),
            };
            return format!("expected {}, found {found}", words(expected));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return format!("unknown value {}", rest.replace("expected one of", "expected one of:"));
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("missing key {field}");
    }
    message.to_string()
}

/// Applies `--set PATH=VALUE` to the tree: `store.batch=1000`,
/// `channels."boiler.*".stale=5s`, `sources.plc1.points[0].scale=0.1`.
/// The value is YAML (`[0, 100]`, `{env: X}`, `true`). Missing maps are created.
pub fn apply_override(doc: &mut SpecDoc, assignment: &str) -> Result<(), String> {
    let (path, value) = assignment.split_once('=').ok_or("expected PATH=VALUE")?;
    let segs = parse_override_path(path.trim())?;
    let value = build_tree(value).map_err(|d| format!("the value is not YAML: {}", d.message))?;
    let mut node = &mut doc.root;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match seg {
            Seg::Key(k) => {
                if matches!(node.value, NodeValue::Null) {
                    node.value = NodeValue::Map(Vec::new());
                }
                let NodeValue::Map(entries) = &mut node.value else {
                    return Err(format!("`{k}` is inside something that is not a map"));
                };
                let pos = match entries.iter().position(|(e, _, _)| e == k) {
                    Some(p) => p,
                    None => {
                        let span = node.span;
                        entries.push((k.to_string(), span, Node { span, value: NodeValue::Null }));
                        entries.len() - 1
                    }
                };
                if last {
                    let span = entries[pos].2.span;
                    entries[pos].2 = Node { span, value: value.value.clone() };
                    doc.reindex();
                    return Ok(());
                }
                node = &mut entries[pos].2;
            }
            Seg::Index(i) => {
                let NodeValue::Seq(items) = &mut node.value else {
                    return Err(format!("[{i}] is applied to something that is not a list"));
                };
                let len = items.len();
                let item = items.get_mut(*i).ok_or_else(|| format!("index {i} is past the end of a list of {len}"))?;
                if last {
                    let span = item.span;
                    *item = Node { span, value: value.value.clone() };
                    doc.reindex();
                    return Ok(());
                }
                node = item;
            }
        }
    }
    Err("empty path".into())
}

fn parse_override_path(path: &str) -> Result<Vec<Seg<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or("unterminated quote")?;
            out.push(Seg::Key(&r[..end]));
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("unterminated [")?;
            out.push(Seg::Index(r[..end].parse().map_err(|_| format!("`{}` is not an index", &r[..end]))?));
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return Err(format!("empty key in `{path}`"));
            }
            out.push(Seg::Key(&rest[..end]));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    if out.is_empty() {
        return Err("empty path".into());
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (missing: exit 66).
    #[error("cannot read {0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The file was read but is not an acceptable YAML document.
    #[error("{} is not a valid pipeline spec ({} problems)", .0.path, .1.len())]
    Invalid(SpecDoc, Vec<Diagnostic>),
}

impl SpecDoc {
    fn empty(path: &str, text: String) -> SpecDoc {
        let span = Span { line: 1, col: 1 };
        SpecDoc { path: path.to_string(), text, root: Node { span, value: NodeValue::Null }, index: HashMap::new() }
    }
}

fn index_node(node: &Node, path: String, key_span: Span, index: &mut HashMap<String, (Span, Span)>) {
    match &node.value {
        NodeValue::Map(entries) => {
            for (k, ks, v) in entries {
                index_node(v, join_key(&path, k), *ks, index);
            }
        }
        NodeValue::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                index_node(v, join_index(&path, i), v.span, index);
            }
        }
        _ => {}
    }
    index.insert(path, (key_span, node.span));
}

enum Frame {
    Seq { span: Span, anchor: usize, items: Vec<Node> },
    Map { span: Span, anchor: usize, entries: Vec<(String, Span, Node)>, key: Option<(String, Span)> },
}

fn build_tree(text: &str) -> Result<Node, Diagnostic> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    // anchor id → (node, nodes in it, bytes in it)
    let mut anchors: HashMap<usize, (Node, usize, usize)> = HashMap::new();
    let mut nodes = 0usize;
    let mut bytes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let m = e.marker();
            let span = Span { line: m.line(), col: m.col() + 1 };
            // The scanner has its own nesting limit for flow collections.
            if e.info().contains("recursion limit") {
                return Diagnostic::error(Code::TooLarge, format!("nesting deeper than {MAX_DEPTH} levels")).at(span);
            }
            Diagnostic::error(Code::Syntax, format!("YAML syntax error: {}", e.info())).at(span)
        })?;
        // yaml-rust2 counts lines from 1 and columns from 0.
        let span = Span { line: mark.line(), col: mark.col() + 1 };
        let complete: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => None,
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(Code::Syntax, "more than one YAML document in the file").at(span));
                }
                None
            }
            Event::Alias(id) => {
                let (node, size, len) = anchors
                    .get(&id)
                    .ok_or_else(|| Diagnostic::error(Code::Syntax, "alias to an unknown anchor").at(span))?;
                nodes += size;
                bytes += len;
                if nodes > MAX_NODES || bytes > MAX_EXPANDED_BYTES {
                    return Err(too_many(span));
                }
                Some((Node { span, value: node.value.clone() }, *size))
            }
            Event::Scalar(v, style, anchor, tag) => {
                nodes += 1;
                bytes += v.len();
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value =
                    if style != TScalarStyle::Plain || forced_str { NodeValue::Str(v) } else { plain_scalar(v) };
                let node = Node { span, value };
                if anchor > 0 {
                    let len = scalar_bytes(&node);
                    anchors.insert(anchor, (node.clone(), 1, len));
                }
                Some((node, 1))
            }
            Event::SequenceStart(anchor, _) => {
                push_frame(&mut stack, Frame::Seq { span, anchor, items: Vec::new() }, span)?;
                None
            }
            Event::MappingStart(anchor, _) => {
                push_frame(&mut stack, Frame::Map { span, anchor, entries: Vec::new(), key: None }, span)?;
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = stack.pop().expect("balanced events");
                let (node, anchor) = match frame {
                    Frame::Seq { span, anchor, items } => (Node { span, value: NodeValue::Seq(items) }, anchor),
                    Frame::Map { span, anchor, entries, .. } => (Node { span, value: NodeValue::Map(entries) }, anchor),
                };
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many(span));
                }
                if anchor > 0 {
                    let (size, len) = (count_nodes(&node), scalar_bytes(&node));
                    anchors.insert(anchor, (node.clone(), size, len));
                }
                Some((node, 1))
            }
        };
        let Some((node, _)) = complete else { continue };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let k = match node.value {
                        NodeValue::Str(s) => s,
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Float(f) => f.to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Null => "null".to_string(),
                        _ => {
                            return Err(Diagnostic::error(Code::Syntax, "map keys must be plain strings").at(node.span))
                        }
                    };
                    if k == "<<" {
                        return Err(Diagnostic::error(
                            Code::Syntax,
                            "merge keys (`<<`) are not supported; write the keys out",
                        )
                        .at(node.span));
                    }
                    if let Some((_, first, _)) = entries.iter().find(|(e, _, _)| *e == k) {
                        return Err(Diagnostic::error(Code::DuplicateKey, format!("duplicate key `{k}`"))
                            .at(node.span)
                            .note(format!("first defined at line {}", first.line)));
                    }
                    *key = Some((k, node.span));
                }
                Some((k, ks)) => entries.push((k, ks, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node { span: Span { line: 1, col: 1 }, value: NodeValue::Null }))
}

fn push_frame(stack: &mut Vec<Frame>, frame: Frame, span: Span) -> Result<(), Diagnostic> {
    if stack.len() >= MAX_DEPTH {
        return Err(Diagnostic::error(Code::TooLarge, format!("nesting deeper than {MAX_DEPTH} levels")).at(span));
    }
    stack.push(frame);
    Ok(())
}

fn too_many(span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::TooLarge,
        format!(
            "the document expands to more than {MAX_NODES} values or {} MiB (alias bomb?)",
            MAX_EXPANDED_BYTES >> 20
        ),
    )
    .at(span)
}

/// Bytes of the keys and strings in a node (what a copy of it costs).
fn scalar_bytes(node: &Node) -> usize {
    match &node.value {
        NodeValue::Str(s) => s.len(),
        NodeValue::Seq(items) => items.iter().map(scalar_bytes).sum(),
        NodeValue::Map(entries) => entries.iter().map(|(k, _, v)| k.len() + scalar_bytes(v)).sum(),
        _ => 8,
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        NodeValue::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeValue::Map(entries) => 1 + entries.iter().map(|(_, _, v)| 1 + count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

/// YAML 1.2 core schema for plain scalars.
fn plain_scalar(v: String) -> NodeValue {
    match v.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return NodeValue::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = v.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return NodeValue::Int(i);
        }
    }
    if let Some(oct) = v.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return NodeValue::Int(i);
        }
    }
    let numeric = v.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.');
    if numeric {
        if let Ok(i) = v.parse::<i64>() {
            return NodeValue::Int(i);
        }
        if v.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) {
            if let Ok(f) = v.parse::<f64>() {
                return NodeValue::Float(f);
            }
        }
    }
    NodeValue::Str(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SpecDoc, Vec<Diagnostic>> {
        match load_bytes("t.yaml", text.as_bytes().to_vec()) {
            Ok(d) => Ok(d),
            Err(LoadError::Invalid(_, d)) => Err(d),
            Err(LoadError::Io(..)) => unreachable!(),
        }
    }

    #[test]
    fn positions_are_one_based_and_point_at_keys_and_values() {
        let doc = load("version: 1\nsources:\n  plc1:\n    type: modbus\n    unit: 3\n").unwrap();
        assert_eq!(doc.key_span("sources.plc1.unit"), Span { line: 5, col: 5 });
        assert_eq!(doc.value_span("sources.plc1.unit"), Span { line: 5, col: 11 });
        assert_eq!(doc.key_span("sources.plc1.nope"), Span { line: 3, col: 3 });
    }

    #[test]
    fn dotted_keys_are_quoted_in_paths() {
        let doc = load("channels:\n  \"boiler.temp*\": {unit: degC}\n").unwrap();
        let p = join_key(&join_key("channels", "boiler.temp*"), "unit");
        assert_eq!(p, "channels[\"boiler.temp*\"].unit");
        assert_eq!(doc.node(&p).and_then(Node::as_str), Some("degC"));
        assert_eq!(doc.value_span(&p).line, 2);
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = load("a: 1\nb: 1.5\nc: '1'\nd: true\ne: ~\nf: 10s\ng: 0x10\n").unwrap();
        let j = doc.root.to_json();
        assert_eq!(j, serde_json::json!({"a":1,"b":1.5,"c":"1","d":true,"e":null,"f":"10s","g":16}));
    }

    #[test]
    fn hostile_documents_are_refused() {
        let deep = "[".repeat(10_000);
        assert_eq!(load(&deep).unwrap_err()[0].code, Code::TooLarge);
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
            bomb += &format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n");
        }
        assert_eq!(load(&bomb).unwrap_err()[0].code, Code::TooLarge);
        let big = format!("a: &a \"{}\"\nb: [{}]\n", "x".repeat(1 << 20), vec!["*a"; 20].join(", "));
        assert_eq!(load(&big).unwrap_err()[0].code, Code::TooLarge);
        let dup = load("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(dup[0].code, Code::DuplicateKey);
        assert_eq!(dup[0].span.unwrap().line, 3);
    }

    #[test]
    fn overrides_set_nested_and_quoted_keys() {
        let mut doc = load("name: a\nchannels:\n  \"b.*\": {stale: 10s}\n").unwrap();
        apply_override(&mut doc, "channels.\"b.*\".stale=5s").unwrap();
        apply_override(&mut doc, "store.batch=10").unwrap();
        let j = doc.root.to_json();
        assert_eq!(j["channels"]["b.*"]["stale"], "5s");
        assert_eq!(j["store"]["batch"], 10);
        assert!(apply_override(&mut doc, "name.x=1").is_err());
        assert!(apply_override(&mut doc, "novalue").is_err());
    }

    #[test]
    fn invalid_utf8_points_at_the_line() {
        let err = match load_bytes("t.yaml", b"a: 1\nb: \xff\n".to_vec()) {
            Err(LoadError::Invalid(_, d)) => d,
            _ => panic!(),
        };
        assert_eq!(err[0].code, Code::Encoding);
        assert_eq!(err[0].span.unwrap().line, 2);
    }
}
