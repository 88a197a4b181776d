//! What an alert's `when` says of the channel before it is evaluated: the
//! *channel guard*.
//!
//! Most rules are about one channel or a few (`channel == 'boiler.temp' and
//! value > 95`), yet the alert stage sees every record of every channel,
//! and evaluating a minijinja expression — with the record's context built
//! for it — costs some thousands of instructions. When `when` is a chain of
//! `and`s one of whose terms is `channel == 'name'` (either way round) or
//! `channel in ['a', 'b']`, the expression is false for every other channel
//! without evaluating the rest (`and` stops at the first false term), so
//! the stage may skip it there: the guard is that set of names.
//!
//! This reads the expression's tokens, not its meaning: any form it does not
//! know for sure (an `or`, an `if … else` or `not` at the top level, a
//! filter or test on `channel`, a string with an escape) gives no guard, and
//! the rule is evaluated on every record as before. Skipping is therefore
//! exact: a guarded rule is skipped only where evaluating it gives false.

/// The channel names `when` can hold for, when its top level says so; `None`
/// when it may hold for any channel.
pub fn channel_guard(when: &str) -> Option<Vec<String>> {
    let tokens = tokenize(when)?;
    let mut guard: Option<Vec<String>> = None;
    for term in top_level_and_terms(&tokens)? {
        if let Some(names) = names_of(term) {
            guard = Some(match guard {
                // Two guards: the channel must be in both.
                Some(g) => g.into_iter().filter(|n| names.contains(n)).collect(),
                None => names,
            });
        }
    }
    guard
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A name or keyword.
    Word(String),
    /// A string literal's text (escape-free).
    Str(String),
    Open(char),
    Close(char),
    /// Any other operator or literal, kept as written.
    Other(String),
}

/// The tokens of a minijinja expression; `None` for what this does not read
/// (a string with an escape, an unterminated string).
fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'\'' | b'"' => {
                let end = i + 1 + b[i + 1..].iter().position(|&x| x == c)?;
                let text = &s[i + 1..end];
                if text.contains('\\') {
                    return None;
                }
                out.push(Tok::Str(text.to_string()));
                i = end + 1;
            }
            b'(' | b'[' | b'{' => {
                out.push(Tok::Open(c as char));
                i += 1;
            }
            b')' | b']' | b'}' => {
                out.push(Tok::Close(c as char));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i].to_string()));
            }
            _ => {
                // Operators and numbers, two characters at most per token
                // for the comparisons; anything else stands alone.
                let two = s.get(i..i + 2).unwrap_or("");
                let len = if matches!(two, "==" | "!=" | "<=" | ">=" | "//" | "**") {
                    2
                } else {
                    s[i..].chars().next().map_or(1, char::len_utf8)
                };
                out.push(Tok::Other(s[i..i + len].to_string()));
                i += len;
            }
        }
    }
    Some(out)
}

/// The terms of a top-level chain of `and`s; `None` when the top level has
/// anything binding looser than `and` (`or`, `if … else`) or unbalanced
/// brackets.
fn top_level_and_terms(tokens: &[Tok]) -> Option<Vec<&[Tok]>> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => depth = depth.checked_sub(1)?,
            Tok::Word(w) if depth == 0 && matches!(w.as_str(), "or" | "if" | "else") => return None,
            Tok::Word(w) if depth == 0 && w == "and" => {
                terms.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    terms.push(&tokens[start..]);
    Some(terms)
}

/// The names a term restricts `channel` to: exactly `channel == 'a'`,
/// `'a' == channel` or `channel in ['a', …]` (a list or tuple of strings).
fn names_of(term: &[Tok]) -> Option<Vec<String>> {
    let is_channel = |t: &Tok| matches!(t, Tok::Word(w) if w == "channel");
    let is_eq = |t: &Tok| matches!(t, Tok::Other(o) if o == "==");
    match term {
        [a, op, Tok::Str(s)] | [Tok::Str(s), op, a] if is_channel(a) && is_eq(op) => Some(vec![s.clone()]),
        [a, Tok::Word(w), Tok::Open(open), items @ .., Tok::Close(close)]
            if is_channel(a) && w == "in" && matches!((open, close), ('[', ']') | ('(', ')')) =>
        {
            let mut names = Vec::new();
            for (k, t) in items.iter().enumerate() {
                match (k % 2, t) {
                    (0, Tok::Str(s)) => names.push(s.clone()),
                    (1, Tok::Other(o)) if o == "," => {}
                    _ => return None,
                }
            }
            (!names.is_empty()).then_some(names)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Option<Vec<&'static str>> {
        channel_guard(s).map(|v| v.into_iter().map(|n| &*Box::leak(n.into_boxed_str())).collect())
    }

    #[test]
    fn a_leading_or_trailing_channel_test_guards() {
        assert_eq!(g("channel == 'boiler.temp' and value > 95"), Some(vec!["boiler.temp"]));
        assert_eq!(g("value > 95 and \"boiler.temp\" == channel"), Some(vec!["boiler.temp"]));
        assert_eq!(g("channel in ['a.b', \"c\"] and 'stale' in flags"), Some(vec!["a.b", "c"]));
        assert_eq!(g("channel in ('a',) and value > 1"), Some(vec!["a"]));
        assert_eq!(g("channel == 'a' and (value > 1 or value < 0)"), Some(vec!["a"]));
        assert_eq!(g("channel == 'a'"), Some(vec!["a"]));
        assert_eq!(g("channel in ['a', 'b'] and channel == 'b'"), Some(vec!["b"]));
        assert_eq!(g("channel == 'a' and channel == 'b'"), Some(vec![]));
    }

    #[test]
    fn anything_it_cannot_be_sure_of_has_no_guard() {
        for when in [
            "value > 95",
            "channel == 'a' or value > 1",
            "channel == 'a' and value > 1 or value < 0",
            "not channel == 'a' and value > 1",
            "channel != 'a' and value > 1",
            "channel == 'a' | upper and value > 1",
            "channel | upper == 'A' and value > 1",
            "channel is startingwith('a') and value > 1",
            "channel == 'a\\'b' and value > 1",
            "(channel == 'a' and value > 1",
            "'x' if channel == 'a' else 'y'",
            "channel == 'a' ~ 'b'",
            "channel in ['a', x] and value > 1",
            "channel in [] and value > 1",
            "channel == 'unterminated",
        ] {
            assert_eq!(g(when), None, "{when}");
        }
    }

    /// The guard never disagrees with minijinja: for every channel outside
    /// the guard the expression is false.
    #[test]
    fn skipping_is_exact() {
        let env = minijinja::Environment::new();
        for when in [
            "channel == 'a' and value > 1",
            "value > 1 and channel in ['a', 'b']",
            "channel == 'a' and (value > 1 or channel == 'z')",
        ] {
            let guard = channel_guard(when).unwrap();
            let e = env.compile_expression(when).unwrap();
            for ch in ["a", "b", "z", "ab"] {
                let holds = e.eval(minijinja::context! { channel => ch, value => 5 }).unwrap().is_true();
                assert!(!holds || guard.iter().any(|n| n == ch), "{when} on {ch}");
            }
        }
    }
}
