//! The decode explorer behind `acquire --probe`: every way a window of
//! registers can be read, ranked against the value the user expects.

use super::decode;
use crate::spec::{ByteOrder, PointType};

/// Scales tried for every numeric reading.
pub const SCALES: [f64; 3] = [1.0, 0.1, 0.01];

const NUMERIC: [PointType; 9] = [
    PointType::U16,
    PointType::I16,
    PointType::U32,
    PointType::I32,
    PointType::F32,
    PointType::U64,
    PointType::I64,
    PointType::F64,
    PointType::F16,
];

/// One reading of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpretation {
    /// Protocol (0-based) address of the first register.
    pub address: u16,
    pub kind: PointType,
    pub order: ByteOrder,
    pub scale: f64,
    pub value: Option<f64>,
    pub text: Option<String>,
    /// Within `--expect`.
    pub matches: bool,
    /// Lower is better.
    pub rank: f64,
}

/// Every interpretation of `words` (read from protocol address `start`),
/// best first. `typed` is the address the user gave: an interpretation there
/// (or one below, the 1-based reading of it) ranks above one elsewhere.
pub fn interpretations(start: u16, words: &[u16], typed: u16, expect: Option<(f64, f64)>) -> Vec<Interpretation> {
    let mut out = Vec::new();
    for off in 0..words.len() {
        let address = start + off as u16;
        for kind in NUMERIC {
            let n = decode::words_of(kind);
            if off + n > words.len() {
                continue;
            }
            for &order in decode::orders_for(kind) {
                let Some(raw) = decode::raw_number(kind, order, None, &words[off..off + n]) else {
                    continue;
                };
                for scale in SCALES {
                    // Scaling only makes sense for integers.
                    if scale != 1.0 && matches!(kind, PointType::F16 | PointType::F32 | PointType::F64) {
                        continue;
                    }
                    let value = raw * scale;
                    let (matches, rank) = rank(value, kind, order, scale, address, typed, expect);
                    out.push(Interpretation {
                        address,
                        kind,
                        order,
                        scale,
                        value: value.is_finite().then_some(value),
                        text: None,
                        matches,
                        rank,
                    });
                }
            }
        }
    }
    if !words.is_empty() {
        for order in [ByteOrder::AB, ByteOrder::BA] {
            let text = decode::text(order, words);
            let printable = !text.is_empty() && text.chars().all(|c| !c.is_control());
            out.push(Interpretation {
                address: start,
                kind: PointType::String,
                order,
                scale: 1.0,
                value: None,
                text: Some(text),
                matches: false,
                rank: if printable { 50.0 } else { 1e9 },
            });
        }
    }
    out.sort_by(|a, b| a.rank.total_cmp(&b.rank));
    out
}

/// Whether `value` is within `expect`, and a rank: distance from the range
/// first, then how likely the layout is (the Modbus default order, no scale,
/// the typed address, narrow types), so ties go to the simplest reading.
fn rank(
    value: f64,
    kind: PointType,
    order: ByteOrder,
    scale: f64,
    address: u16,
    typed: u16,
    expect: Option<(f64, f64)>,
) -> (bool, f64) {
    if !value.is_finite() {
        return (false, 1e12);
    }
    let mut r = 0.0;
    let mut matches = false;
    if let Some((lo, hi)) = expect {
        let width = (hi - lo).abs().max(1e-9);
        let miss = if value < lo {
            lo - value
        } else if value > hi {
            value - hi
        } else {
            0.0
        };
        matches = miss == 0.0;
        r += if matches { 0.0 } else { 100.0 + (miss / width).min(1e6) };
    }
    // Layout plausibility, each step small next to a miss.
    r += match address {
        a if a == typed => 0.0,
        a if typed > 0 && a == typed - 1 => 0.5,
        a => 2.0 + f64::from(a.abs_diff(typed)),
    };
    r += match order {
        ByteOrder::ABCD | ByteOrder::AB => 0.0,
        ByteOrder::CDAB => 0.3,
        _ => 0.6,
    };
    r += if scale == 1.0 {
        0.0
    } else if scale == 0.1 {
        0.2
    } else {
        0.4
    };
    r += match kind {
        PointType::U16 | PointType::I16 => 0.0,
        PointType::F32 | PointType::U32 | PointType::I32 => 0.1,
        PointType::F16 => 0.9,
        _ => 0.2,
    };
    // Denormal floats and huge magnitudes are nearly always a wrong layout.
    if value != 0.0 && (value.abs() < 1e-6 || value.abs() > 1e9) {
        r += 10.0;
    }
    (matches, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_word_swapped_float_in_range() {
        // 21.5 as f32 = 41 AC 00 00; word-swapped on the wire: 00 00 41 AC.
        let words = [7, 0x0000, 0x41AC, 3];
        let all = interpretations(99, &words, 100, Some((20.0, 25.0)));
        let best = &all[0];
        assert!(best.matches);
        assert_eq!(
            (best.address, best.kind, best.order, best.value),
            (100, PointType::F32, ByteOrder::CDAB, Some(21.5))
        );
    }

    #[test]
    fn prefers_the_plain_reading_among_matches() {
        // 235 in one register: u16 × 0.1 = 23.5 is in range, and simpler than alternatives.
        let all = interpretations(10, &[235], 10, Some((20.0, 25.0)));
        let best = &all[0];
        assert_eq!((best.kind, best.order, best.scale), (PointType::U16, ByteOrder::AB, 0.1));
        assert!(all.iter().any(|i| i.kind == PointType::String));
    }
}
