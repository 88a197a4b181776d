//! The fast path of NDJSON input: the line nearly every producer writes —
//! one flat object of plain strings and numbers — read without serde.
//!
//! [`parse`] reads only what it is sure of: strings without escapes,
//! numbers, `null`, and the keys of [`Key`] at most once each. On anything
//! else (an escape, an array or object, a duplicate or unknown key, a type
//! the field does not take, a syntax error) it returns `None` and the line
//! goes through serde_json, which gives the same record or words the error.
//! A field added to the line's serde struct (`ndjson::RawLine`) is read by
//! serde until it is added to [`Key`] too: an unknown key is never dropped
//! here.
//! Both paths read numbers the same way (correctly rounded), so a line
//! gives the same record whichever path takes it (a property test in
//! `super::ndjson` holds the two paths to that).

use std::borrow::Cow;

use super::ndjson::{RawLine, RawTs, Text};

/// The line as serde would read it, or `None` to let serde read it.
pub(super) fn parse(line: &str) -> Option<RawLine<'_>> {
    let mut s = Scan { text: line, at: 0 };
    let mut raw = RawLine::default();
    let mut seen = 0u16;
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.at += 1;
    } else {
        loop {
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let value = s.value()?;
            let key = Key::of(key)?;
            if seen & (1 << key as u16) != 0 {
                return None; // serde: "duplicate field"
            }
            seen |= 1 << key as u16;
            set(&mut raw, key, value)?;
            s.ws();
            match s.peek()? {
                b',' => {
                    s.at += 1;
                    s.ws();
                }
                b'}' => {
                    s.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.ws();
    (s.at == line.len()).then_some(raw)
}

/// The keys of a line (`ndjson::RawLine`'s fields); any other goes to serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Kind,
    Ts,
    Channel,
    Value,
    Unit,
    Quality,
    Source,
    Spread,
    /// Rare, and often escaped: serde's unless `null`.
    Text,
    /// Lists: serde's unless `null`.
    Flags,
    Inputs,
    VotedOut,
}

impl Key {
    fn of(key: &str) -> Option<Key> {
        Some(match key {
            "kind" => Key::Kind,
            "ts" => Key::Ts,
            "channel" => Key::Channel,
            "value" => Key::Value,
            "unit" => Key::Unit,
            "quality" => Key::Quality,
            "source" => Key::Source,
            "spread" => Key::Spread,
            "text" => Key::Text,
            "flags" => Key::Flags,
            "inputs" => Key::Inputs,
            "voted_out" => Key::VotedOut,
            _ => return None,
        })
    }
}

/// A plain JSON value.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    /// The number's text, read by the field that takes it.
    Num(&'a str),
    Null,
    Bool,
}

fn set<'a>(raw: &mut RawLine<'a>, key: Key, value: Value<'a>) -> Option<()> {
    let text = |v: Value<'a>| match v {
        Value::Str(t) => Some(Some(Text(Cow::Borrowed(t)))),
        Value::Null => Some(None),
        Value::Num(_) | Value::Bool => None,
    };
    let num = |v: Value<'a>| match v {
        Value::Num(n) => number(n).map(Some),
        Value::Null => Some(None),
        Value::Str(_) | Value::Bool => None,
    };
    match key {
        Key::Kind => raw.kind = text(value)?,
        Key::Channel => raw.channel = text(value)?,
        Key::Unit => raw.unit = text(value)?,
        Key::Quality => raw.quality = text(value)?,
        Key::Source => raw.source = text(value)?,
        Key::Value => raw.value = num(value)?,
        Key::Spread => raw.spread = num(value)?,
        Key::Ts => {
            raw.ts = match value {
                Value::Str(t) => Some(RawTs::Text(Cow::Borrowed(t))),
                Value::Num(n) => Some(RawTs::Number(number(n)?)),
                Value::Null => None,
                Value::Bool => return None,
            }
        }
        Key::Text | Key::Flags | Key::Inputs | Key::VotedOut if matches!(value, Value::Null) => {}
        Key::Text | Key::Flags | Key::Inputs | Key::VotedOut => return None,
    }
    Some(())
}

/// A JSON number as serde_json reads it (`float_roundtrip`: correctly
/// rounded, as `str::parse`). `-0` is left to serde, which reads the
/// integer as 0; out of range is serde's error.
fn number(n: &str) -> Option<f64> {
    if n == "-0" {
        return None;
    }
    n.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The index in `s` of the first byte that ends or escapes a JSON string:
/// a quote, a backslash or a control character (below 0x20), which JSON
/// forbids there.
///
/// Eight bytes at a time (SWAR), byte 0 of the slice the lowest of the
/// word (`from_le_bytes`). `(v - n × 0x01…01) & !v & 0x80…80` marks the
/// bytes of `v` below `n` (for `n` ≤ 0x80), exactly up to and including the
/// first of them: a byte below `n` borrows from the byte above it, so later
/// bytes may be marked wrongly, earlier ones never. With `n` = 1 on
/// `v ^ c × 0x01…01` it marks the bytes equal to `c`. The lowest bit set of
/// the three marks together is therefore the first stop. A loop testing
/// the three conditions byte by byte took 14 instructions a byte, half of
/// this module's time (callgrind).
fn string_stop(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
    let mut words = s.chunks_exact(8);
    for (i, w) in words.by_ref().enumerate() {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        let stop = below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1) | below(w, 0x20);
        if stop != 0 {
            return Some(i * 8 + (stop.trailing_zeros() / 8) as usize);
        }
    }
    let done = s.len() - words.remainder().len();
    words.remainder().iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|i| done + i)
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// A string without escapes or control characters. Inlined into
    /// [`parse`], which keeps `string_stop`'s constants in registers: out
    /// of line, saving and loading them cost more than the scan of the
    /// short strings of a line (callgrind).
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = string_stop(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some(&self.text[start..start + len])
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'n' => self.word("null").map(|()| Value::Null),
            b't' => self.word("true").map(|()| Value::Bool),
            b'f' => self.word("false").map(|()| Value::Bool),
            b'-' | b'0'..=b'9' => self.number().map(Value::Num),
            _ => None,
        }
    }

    fn word(&mut self, w: &str) -> Option<()> {
        self.text[self.at..].starts_with(w).then(|| self.at += w.len())
    }

    /// A number by JSON's grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        let b = self.text.as_bytes();
        let digits = |at: &mut usize| {
            let from = *at;
            while b.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        let mut at = self.at;
        if b.get(at) == Some(&b'-') {
            at += 1;
        }
        match b.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                digits(&mut at);
            }
            _ => return None,
        }
        if b.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return None;
            }
        }
        if matches!(b.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(b.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if !digits(&mut at) {
                return None;
            }
        }
        // `01`, `1x`: not a number serde reads either.
        if b.get(at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.') {
            return None;
        }
        self.at = at;
        Some(&self.text[start..at])
    }
}

#[cfg(test)]
mod tests {
    use super::string_stop;
    use proptest::prelude::*;

    /// Bytes next to the ones that stop a string: on both sides of 0x20,
    /// of `"` (0x22) and `\` (0x5c), and UTF-8's high bytes.
    const OTHER: &[u8] = b"\x20\x21\x23\x5b\x5d\x7f\x80\xc3\xa9\xff a0";
    const STOP: &[u8] = b"\x00\x01\x1f\x22\x5c";

    proptest! {
        /// Eight bytes at a time finds what a byte-by-byte search finds,
        /// wherever in a word (or the tail) the first stop lies, if any.
        #[test]
        fn the_string_stop_is_the_first_quote_backslash_or_control_byte(
            other in proptest::collection::vec(0..OTHER.len(), 0..64),
            stops in proptest::collection::vec((any::<prop::sample::Index>(), 0..STOP.len()), 0..3),
        ) {
            let mut s: Vec<u8> = other.iter().map(|&i| OTHER[i]).collect();
            for (at, stop) in stops {
                s.insert(at.index(s.len() + 1), STOP[stop]);
            }
            let want = s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(string_stop(&s), want);
        }
    }
}
