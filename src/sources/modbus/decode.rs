//! Register words → values: every type, byte and word order of a Modbus point.
//!
//! A register is 16 bits, sent high byte first. A value wider than one
//! register is spread over several, and devices disagree on the order: we name
//! the orders by where the bytes of the big-endian value `A B C D` (most
//! significant first) land on the wire:
//!
//! | order  | wire bytes (32-bit) | 64-bit `A…H` on the wire | also called                  |
//! |--------|---------------------|--------------------------|------------------------------|
//! | `ABCD` | A B C D             | A B C D E F G H          | big endian                   |
//! | `CDAB` | C D A B             | G H E F C D A B          | word swap, little-endian words |
//! | `BADC` | B A D C             | B A D C F E H G          | byte swap                    |
//! | `DCBA` | D C B A             | H G F E D C B A          | little endian                |
//!
//! 16-bit values are `AB` (high byte first, the standard) or `BA`. Strings
//! take two characters per register, the first in the high byte (`AB`) or in
//! the low byte (`BA`); trailing NULs and spaces are dropped. `bit: n` reads
//! bit `n` of the register's value, bit 0 being the least significant.
//!
//! Everything here is pure and allocation-free except string decoding.

use crate::spec::{ByteOrder, PointType};

/// Registers a value of `kind` spans (strings: their `length`).
pub fn words_of(kind: PointType) -> usize {
    match kind {
        PointType::Bool | PointType::U16 | PointType::I16 | PointType::F16 => 1,
        PointType::U32 | PointType::I32 | PointType::F32 => 2,
        PointType::U64 | PointType::I64 | PointType::F64 => 4,
        PointType::String => 0,
    }
}

/// The value's bytes, most significant first, for a numeric `kind` read
/// from `words` (exactly `words_of(kind)` of them) in `order`.
fn be_bytes(order: ByteOrder, words: &[u16], out: &mut [u8; 8]) -> usize {
    let n = words.len() * 2;
    for (i, w) in words.iter().enumerate() {
        let [hi, lo] = w.to_be_bytes();
        out[2 * i] = hi;
        out[2 * i + 1] = lo;
    }
    let bytes = &mut out[..n];
    match order {
        ByteOrder::ABCD | ByteOrder::AB => {}
        ByteOrder::DCBA | ByteOrder::BA => bytes.reverse(),
        ByteOrder::BADC => bytes.chunks_exact_mut(2).for_each(|p| p.swap(0, 1)),
        ByteOrder::CDAB => {
            // Reverse the order of the words, keep the bytes inside each.
            bytes.reverse();
            bytes.chunks_exact_mut(2).for_each(|p| p.swap(0, 1));
        }
    }
    n
}

/// The raw number (before scale and offset) of a numeric point, or `None`
/// when `words` is too short. `bool` points read `bit` (default 0).
pub fn raw_number(kind: PointType, order: ByteOrder, bit: Option<u8>, words: &[u16]) -> Option<f64> {
    let need = words_of(kind);
    if need == 0 || words.len() < need {
        return None;
    }
    let words = &words[..need];
    if kind == PointType::Bool {
        let b = bit.unwrap_or(0);
        return Some(f64::from((words[0] >> (b & 15)) & 1));
    }
    let mut buf = [0u8; 8];
    let n = be_bytes(order, words, &mut buf);
    let b = &buf[..n];
    Some(match kind {
        PointType::U16 => f64::from(u16::from_be_bytes([b[0], b[1]])),
        PointType::I16 => f64::from(i16::from_be_bytes([b[0], b[1]])),
        PointType::F16 => f16_to_f64(u16::from_be_bytes([b[0], b[1]])),
        PointType::U32 => f64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        PointType::I32 => f64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        PointType::F32 => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        PointType::U64 => u64::from_be_bytes(buf) as f64,
        PointType::I64 => i64::from_be_bytes(buf) as f64,
        PointType::F64 => f64::from_be_bytes(buf),
        PointType::Bool | PointType::String => unreachable!("handled above"),
    })
}

/// IEEE 754 half precision → f64 (subnormals, infinities and NaN included).
pub fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    sign * match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
    }
}

/// A string point: two bytes per register in `order` (`AB` or `BA`),
/// trailing NULs and spaces dropped, invalid UTF-8 replaced.
pub fn text(order: ByteOrder, words: &[u16]) -> String {
    let mut bytes = Vec::with_capacity(words.len() * 2);
    for w in words {
        let [hi, lo] = w.to_be_bytes();
        if order == ByteOrder::BA {
            bytes.extend_from_slice(&[lo, hi]);
        } else {
            bytes.extend_from_slice(&[hi, lo]);
        }
    }
    while matches!(bytes.last(), Some(0 | b' ')) {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The orders that apply to a numeric type.
pub fn orders_for(kind: PointType) -> &'static [ByteOrder] {
    match words_of(kind) {
        1 => &[ByteOrder::AB, ByteOrder::BA],
        _ => &[ByteOrder::ABCD, ByteOrder::CDAB, ByteOrder::BADC, ByteOrder::DCBA],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ByteOrder::*;
    use PointType::*;

    /// Registers from wire bytes, as a device sends them (high byte first).
    fn regs(wire: &[u8]) -> Vec<u16> {
        wire.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect()
    }

    fn num(kind: PointType, order: ByteOrder, wire: &[u8]) -> f64 {
        raw_number(kind, order, None, &regs(wire)).unwrap()
    }

    // Every expected value below is written from the bytes by hand:
    // 123456789 = 0x075BCD15; -2 = 0xFFFFFFFE; 3.14159274 (f32) = 0x40490FDB;
    // 1.5 (f64) = 0x3FF8000000000000; 1.0 (f16) = 0x3C00; 0x0102030405060708 = 72623859790382856.

    #[test]
    fn sixteen_bit_types() {
        assert_eq!(num(U16, AB, &[0x12, 0x34]), 4660.0);
        assert_eq!(num(U16, BA, &[0x34, 0x12]), 4660.0);
        assert_eq!(num(I16, AB, &[0xFF, 0xFE]), -2.0);
        assert_eq!(num(I16, BA, &[0xFE, 0xFF]), -2.0);
        assert_eq!(num(I16, AB, &[0x80, 0x00]), -32768.0);
        assert_eq!(num(F16, AB, &[0x3C, 0x00]), 1.0);
        assert_eq!(num(F16, BA, &[0x00, 0x3C]), 1.0);
        assert_eq!(num(F16, AB, &[0xC0, 0x00]), -2.0);
        assert_eq!(num(F16, AB, &[0x7B, 0xFF]), 65504.0);
        assert_eq!(num(F16, AB, &[0x00, 0x01]), 2f64.powi(-24));
        assert_eq!(num(F16, AB, &[0x7C, 0x00]), f64::INFINITY);
        assert!(num(F16, AB, &[0x7E, 0x00]).is_nan());
    }

    #[test]
    fn thirty_two_bit_types_in_every_order() {
        // 123456789 = 07 5B CD 15
        assert_eq!(num(U32, ABCD, &[0x07, 0x5B, 0xCD, 0x15]), 123456789.0);
        assert_eq!(num(U32, CDAB, &[0xCD, 0x15, 0x07, 0x5B]), 123456789.0);
        assert_eq!(num(U32, BADC, &[0x5B, 0x07, 0x15, 0xCD]), 123456789.0);
        assert_eq!(num(U32, DCBA, &[0x15, 0xCD, 0x5B, 0x07]), 123456789.0);
        // -2 = FF FF FF FE
        assert_eq!(num(I32, ABCD, &[0xFF, 0xFF, 0xFF, 0xFE]), -2.0);
        assert_eq!(num(I32, CDAB, &[0xFF, 0xFE, 0xFF, 0xFF]), -2.0);
        assert_eq!(num(I32, BADC, &[0xFF, 0xFF, 0xFE, 0xFF]), -2.0);
        assert_eq!(num(I32, DCBA, &[0xFE, 0xFF, 0xFF, 0xFF]), -2.0);
        // pi as f32 = 40 49 0F DB
        let pi = f64::from(std::f32::consts::PI);
        assert_eq!(num(F32, ABCD, &[0x40, 0x49, 0x0F, 0xDB]), pi);
        assert_eq!(num(F32, CDAB, &[0x0F, 0xDB, 0x40, 0x49]), pi);
        assert_eq!(num(F32, BADC, &[0x49, 0x40, 0xDB, 0x0F]), pi);
        assert_eq!(num(F32, DCBA, &[0xDB, 0x0F, 0x49, 0x40]), pi);
    }

    #[test]
    fn sixty_four_bit_types_in_every_order() {
        let v = 72623859790382856.0; // 01 02 03 04 05 06 07 08
        assert_eq!(num(U64, ABCD, &[1, 2, 3, 4, 5, 6, 7, 8]), v);
        assert_eq!(num(U64, CDAB, &[7, 8, 5, 6, 3, 4, 1, 2]), v);
        assert_eq!(num(U64, BADC, &[2, 1, 4, 3, 6, 5, 8, 7]), v);
        assert_eq!(num(U64, DCBA, &[8, 7, 6, 5, 4, 3, 2, 1]), v);
        // -2 = FF.. FE
        let m2 = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE];
        assert_eq!(num(I64, ABCD, &m2), -2.0);
        assert_eq!(num(I64, DCBA, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), -2.0);
        assert_eq!(num(I64, CDAB, &[0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), -2.0);
        assert_eq!(num(I64, BADC, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF]), -2.0);
        // 1.5 = 3F F8 00 00 00 00 00 00
        assert_eq!(num(F64, ABCD, &[0x3F, 0xF8, 0, 0, 0, 0, 0, 0]), 1.5);
        assert_eq!(num(F64, CDAB, &[0, 0, 0, 0, 0, 0, 0x3F, 0xF8]), 1.5);
        assert_eq!(num(F64, BADC, &[0xF8, 0x3F, 0, 0, 0, 0, 0, 0]), 1.5);
        assert_eq!(num(F64, DCBA, &[0, 0, 0, 0, 0, 0, 0xF8, 0x3F]), 1.5);
    }

    #[test]
    fn bits_of_a_register() {
        let w = regs(&[0x80, 0x05]); // bits 0, 2 and 15 set
        assert_eq!(raw_number(Bool, AB, Some(0), &w), Some(1.0));
        assert_eq!(raw_number(Bool, AB, Some(1), &w), Some(0.0));
        assert_eq!(raw_number(Bool, AB, Some(2), &w), Some(1.0));
        assert_eq!(raw_number(Bool, AB, Some(15), &w), Some(1.0));
        assert_eq!(raw_number(Bool, AB, Some(14), &w), Some(0.0));
    }

    #[test]
    fn strings_and_short_input() {
        assert_eq!(text(AB, &regs(b"EG-100\0\0")), "EG-100");
        assert_eq!(text(BA, &regs(b"GE1-00  ")), "EG-100");
        assert_eq!(raw_number(U32, ABCD, None, &[1]), None);
        assert_eq!(raw_number(F64, ABCD, None, &[1, 2, 3]), None);
    }
}
