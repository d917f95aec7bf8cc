//! Pure value codec: register words and bits to [`Value`]s and back.
//!
//! Reading a register property: the words are put in order (`isRegisterSwap` reverses
//! them), the bytes of each word are swapped when `isSwap` is set, and the resulting
//! big-endian bytes are read as the raw type. Numbers are then scaled:
//! `value = raw × scale + offsetValue`.
//!
//! * Scaled results are rounded to the decimals the inputs imply (the raw value's, plus
//!   the scale's, or the offset's if more), so `215 × 0.1` reports `21.5`, never
//!   `21.500000000000004`. A `float32` raw value is first converted through its shortest
//!   decimal form, so `21.1f32` reports `21.1`.
//! * `int` properties round to the nearest integer (half away from zero), never truncate.
//! * Booleans are true when the register (or the bit) is non-zero.
//! * Strings stop at the first NUL; with `stringPadding: space` trailing spaces are
//!   trimmed too. Strings must be UTF-8.
//!
//! Writing inverts every step: `raw = (value − offsetValue) / scale`. For integer raw
//! types the result must be integral (within a relative 1e-9, which absorbs binary
//! rounding such as `21.5 / 0.1 = 214.99999999999997`); `21.55` with scale `0.1` is refused
//! rather than silently rounded. Values outside the raw type's range are refused, never
//! wrapped (70000 does not fit `int16`). `float32` writes round to the nearest `f32`.

use mapper_sdk::model::{DataType, Value};
use thiserror::Error;

use crate::config::{ModbusVisitor, Padding, RawType};

/// What to put on the wire for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Coil values, first address first.
    Bits(Vec<bool>),
    /// Register values, first address first.
    Words(Vec<u16>),
    /// Change one bit of a holding register (FC22 mask write):
    /// `new = (old & and) | (or & !and)`.
    Mask {
        /// Bits to keep.
        and: u16,
        /// Bits to set.
        or: u16,
    },
}

/// Why a value could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CodecError {
    /// The device sent fewer or more registers or bits than the visitor reads.
    #[error("the reply has {got} {unit}, the property needs {want}")]
    Length {
        /// What arrived.
        got: usize,
        /// What the visitor needs.
        want: usize,
        /// `registers` or `bits`.
        unit: &'static str,
    },
    /// The value does not fit the raw type.
    #[error("{value} does not fit {raw} ({range}); the register cannot hold it")]
    OutOfRange {
        /// The raw value after inverse scaling.
        value: String,
        /// The raw type.
        raw: &'static str,
        /// Its range.
        range: String,
    },
    /// After inverse scaling the value is not an integer.
    #[error(
        "{value} is not representable: ({value} - {add}) / {scale} = {raw} is not an integer, and the register holds integers; write a multiple of the scale"
    )]
    NotIntegral {
        /// The value written.
        value: String,
        /// The visitor's scale.
        scale: f64,
        /// The visitor's offsetValue.
        add: f64,
        /// The raw result.
        raw: f64,
    },
    /// The value has the wrong kind for the property.
    #[error("cannot write {value} to a {data_type} property: {reason}")]
    WrongType {
        /// The value, as text.
        value: String,
        /// The property's data type.
        data_type: DataType,
        /// Why.
        reason: String,
    },
    /// The device sent something that is not a value (NaN, invalid UTF-8...).
    #[error("the device sent an unusable value: {0}")]
    BadData(String),
    /// The string or byte string does not fit the registers.
    #[error("{got} bytes do not fit {capacity} bytes ({registers} registers)")]
    TooLong {
        /// Bytes given.
        got: usize,
        /// Bytes available.
        capacity: usize,
        /// Registers of the property.
        registers: u16,
    },
}

/// A raw number before scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
}

/// Decimal digits after the point in the shortest form of `x` (at most 17 are meaningful).
fn decimals(x: f64) -> usize {
    if !x.is_finite() || x.fract() == 0.0 {
        return 0;
    }
    let s = format!("{}", x.abs());
    s.find('.').map_or(0, |i| s.len() - i - 1)
}

/// Rounds `x` to `d` decimals when `d` is small enough to mean something.
fn clean(x: f64, d: usize) -> f64 {
    if d > 15 || !x.is_finite() {
        return x;
    }
    let v = format!("{x:.d$}").parse::<f64>().unwrap_or(x);
    if v == 0.0 { 0.0 } else { v }
}

fn round_half_away(x: f64) -> f64 {
    x.round()
}

/// Register words in wire order to the big-endian bytes of the value.
fn words_to_bytes(v: &ModbusVisitor, words: &[u16]) -> Vec<u8> {
    let mut w: Vec<u16> = words.to_vec();
    if v.swap_words {
        w.reverse();
    }
    let mut out = Vec::with_capacity(w.len() * 2);
    for x in w {
        let x = if v.swap_bytes { x.swap_bytes() } else { x };
        out.extend_from_slice(&x.to_be_bytes());
    }
    out
}

/// The inverse of [`words_to_bytes`].
fn bytes_to_words(v: &ModbusVisitor, bytes: &[u8]) -> Vec<u16> {
    let mut w: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let x = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
            if v.swap_bytes { x.swap_bytes() } else { x }
        })
        .collect();
    if v.swap_words {
        w.reverse();
    }
    w
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    a
}

fn f32_shortest(f: f32) -> f64 {
    // f32's Display is the shortest decimal that reads back as the same f32.
    format!("{f}").parse::<f64>().unwrap_or(f64::from(f))
}

/// Decodes the registers of a register-table property.
pub fn decode_words(v: &ModbusVisitor, words: &[u16]) -> Result<Value, CodecError> {
    if words.len() != usize::from(v.count) {
        return Err(CodecError::Length {
            got: words.len(),
            want: usize::from(v.count),
            unit: "registers",
        });
    }
    let b = words_to_bytes(v, words);
    let num = match v.raw {
        RawType::Int16 => Num::Int(i16::from_be_bytes(arr(&b)).into()),
        RawType::UInt16 => Num::Int(u16::from_be_bytes(arr(&b)).into()),
        RawType::Int32 => Num::Int(i32::from_be_bytes(arr(&b)).into()),
        RawType::UInt32 => Num::Int(u32::from_be_bytes(arr(&b)).into()),
        RawType::Int64 => Num::Int(i64::from_be_bytes(arr(&b)).into()),
        RawType::UInt64 => Num::Int(u64::from_be_bytes(arr(&b)).into()),
        RawType::Float32 => {
            let f = f32::from_be_bytes(arr(&b));
            if !f.is_finite() {
                return Err(CodecError::BadData(format!("float32 {f}")));
            }
            Num::Float(f32_shortest(f))
        }
        RawType::Float64 => {
            let f = f64::from_be_bytes(arr(&b));
            if !f.is_finite() {
                return Err(CodecError::BadData(format!("float64 {f}")));
            }
            Num::Float(f)
        }
        RawType::Bool => Num::Int(i128::from(b.iter().any(|x| *x != 0))),
        RawType::Bit(i) => {
            let w = u16::from_be_bytes(arr(&b));
            Num::Int(i128::from((w >> i) & 1))
        }
        RawType::String => return decode_string(v, &b),
        RawType::Bytes => return Ok(Value::Bytes(b)),
        RawType::Bits => {
            return Err(CodecError::BadData(
                "registers read for a bit property".into(),
            ));
        }
    };
    finish(v, num)
}

fn decode_string(v: &ModbusVisitor, b: &[u8]) -> Result<Value, CodecError> {
    let end = b.iter().position(|x| *x == 0).unwrap_or(b.len());
    let mut s = &b[..end];
    if v.padding == Padding::Space {
        while let [rest @ .., b' '] = s {
            s = rest;
        }
    }
    String::from_utf8(s.to_vec())
        .map(Value::String)
        .map_err(|e| CodecError::BadData(format!("the string registers are not UTF-8: {e}")))
}

/// Decodes the bits of a coil or discrete-input property.
pub fn decode_bits(v: &ModbusVisitor, bits: &[bool]) -> Result<Value, CodecError> {
    if bits.len() != usize::from(v.count) {
        return Err(CodecError::Length {
            got: bits.len(),
            want: usize::from(v.count),
            unit: "bits",
        });
    }
    match v.data_type {
        DataType::Boolean => Ok(Value::Bool(bits[0])),
        DataType::String => Ok(Value::String(
            bits.iter().map(|b| if *b { '1' } else { '0' }).collect(),
        )),
        DataType::Bytes => Ok(Value::Bytes(pack_bits(bits))),
        DataType::Int | DataType::Float | DataType::Double => {
            let mut n: u64 = 0;
            for (i, b) in bits.iter().enumerate().take(64) {
                if *b {
                    n |= 1 << i;
                }
            }
            finish(v, Num::Int(n.into()))
        }
    }
}

fn pack_bits(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, b)| if *b { acc | (1 << i) } else { acc })
        })
        .collect()
}

/// Scales a raw number and converts it to the property's data type.
fn finish(v: &ModbusVisitor, num: Num) -> Result<Value, CodecError> {
    let scaled = if v.scale == 1.0 && v.add == 0.0 {
        num
    } else {
        let d = match num {
            Num::Int(_) => 0,
            Num::Float(f) => decimals(f),
        };
        let d = (d + decimals(v.scale)).max(decimals(v.add));
        Num::Float(clean(num.as_f64() * v.scale + v.add, d))
    };
    Ok(match v.data_type {
        DataType::Int => match scaled {
            Num::Int(i) => int_value(i)?,
            Num::Float(f) => {
                let r = round_half_away(f);
                if r >= -(2f64.powi(63)) && r < 2f64.powi(64) {
                    #[allow(clippy::cast_possible_truncation)]
                    int_value(r as i128)?
                } else {
                    return Err(CodecError::BadData(format!(
                        "{f} is out of the 64-bit integer range"
                    )));
                }
            }
        },
        DataType::Float | DataType::Double => Value::Float(scaled.as_f64()),
        DataType::Boolean => Value::Bool(scaled.as_f64() != 0.0),
        DataType::String => Value::String(match scaled {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => Value::Float(f).canonical().unwrap_or_default(),
        }),
        DataType::Bytes => {
            return Err(CodecError::BadData(
                "a bytes property cannot hold a number".into(),
            ));
        }
    })
}

fn int_value(i: i128) -> Result<Value, CodecError> {
    if let Ok(x) = i64::try_from(i) {
        Ok(Value::Int(x))
    } else if let Ok(x) = u64::try_from(i) {
        Ok(Value::UInt(x))
    } else {
        Err(CodecError::BadData(format!(
            "{i} is out of the 64-bit integer range"
        )))
    }
}

fn value_text(value: &Value) -> String {
    value.canonical().unwrap_or_else(|| format!("{value:?}"))
}

fn wrong(value: &Value, v: &ModbusVisitor, reason: impl Into<String>) -> CodecError {
    CodecError::WrongType {
        value: value_text(value),
        data_type: v.data_type,
        reason: reason.into(),
    }
}

/// The value as a number: integers exactly, floats as they are, booleans 1/0, text parsed.
fn to_num(value: &Value, v: &ModbusVisitor) -> Result<Num, CodecError> {
    Ok(match value {
        Value::Int(i) => Num::Int((*i).into()),
        Value::UInt(u) => Num::Int((*u).into()),
        Value::Float(f) if f.is_finite() => Num::Float(*f),
        Value::Float(_) => return Err(wrong(value, v, "not a finite number")),
        Value::Bool(b) => Num::Int(i128::from(*b)),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i128>() {
                Num::Int(i)
            } else {
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() => Num::Float(f),
                    _ => return Err(wrong(value, v, "not a number")),
                }
            }
        }
        Value::Bytes(_) => return Err(wrong(value, v, "bytes are not a number")),
    })
}

/// Undoes scale and offsetValue.
fn unscale(num: Num, v: &ModbusVisitor) -> Num {
    if v.scale == 1.0 && v.add == 0.0 {
        num
    } else {
        Num::Float((num.as_f64() - v.add) / v.scale)
    }
}

/// The raw integer for an integer register, refusing fractions.
fn integral(num: Num, value: &Value, v: &ModbusVisitor) -> Result<i128, CodecError> {
    match num {
        Num::Int(i) => Ok(i),
        Num::Float(f) => {
            let r = f.round();
            if (f - r).abs() > 1e-9 * r.abs().max(1.0) {
                return Err(CodecError::NotIntegral {
                    value: value_text(value),
                    scale: v.scale,
                    add: v.add,
                    raw: f,
                });
            }
            if r.abs() >= 2f64.powi(100) {
                return Err(CodecError::OutOfRange {
                    value: format!("{f}"),
                    raw: v.raw.name(),
                    range: "64-bit".into(),
                });
            }
            #[allow(clippy::cast_possible_truncation)]
            Ok(r as i128)
        }
    }
}

fn check_range(i: i128, lo: i128, hi: i128, v: &ModbusVisitor) -> Result<i128, CodecError> {
    if (lo..=hi).contains(&i) {
        Ok(i)
    } else {
        Err(CodecError::OutOfRange {
            value: i.to_string(),
            raw: v.raw.name(),
            range: format!("{lo}..={hi}"),
        })
    }
}

/// Encodes a value for writing to the property.
pub fn encode(v: &ModbusVisitor, value: &Value) -> Result<Payload, CodecError> {
    if v.table.is_bits() {
        return encode_bits(v, value);
    }
    let bytes: Vec<u8> = match v.raw {
        RawType::String => {
            let s = match value {
                Value::String(s) => s.clone(),
                other => value_text(other),
            };
            let capacity = usize::from(v.count) * 2;
            if s.len() > capacity {
                return Err(CodecError::TooLong {
                    got: s.len(),
                    capacity,
                    registers: v.count,
                });
            }
            if s.as_bytes().contains(&0) {
                return Err(wrong(value, v, "text with NUL characters cannot be stored"));
            }
            let pad = if v.padding == Padding::Space { b' ' } else { 0 };
            let mut b = s.into_bytes();
            b.resize(capacity, pad);
            b
        }
        RawType::Bytes => {
            let Value::Bytes(b) = value else {
                return Err(wrong(value, v, "expected bytes"));
            };
            let capacity = usize::from(v.count) * 2;
            if b.len() != capacity {
                return Err(CodecError::TooLong {
                    got: b.len(),
                    capacity,
                    registers: v.count,
                });
            }
            b.clone()
        }
        RawType::Bool => {
            let n = to_num(value, v)?;
            let w: u16 = u16::from(n.as_f64() != 0.0);
            return Ok(Payload::Words(vec![w]));
        }
        RawType::Bit(i) => {
            let n = to_num(value, v)?;
            let on = n.as_f64() != 0.0;
            // The bit index counts in the register value after isSwap.
            let wire = if v.swap_bytes { (i + 8) % 16 } else { i };
            let mask = 1u16 << wire;
            return Ok(Payload::Mask {
                and: !mask,
                or: if on { mask } else { 0 },
            });
        }
        RawType::Float32 => {
            let f = unscale(to_num(value, v)?, v).as_f64();
            if !f.is_finite() || f.abs() > f64::from(f32::MAX) {
                return Err(CodecError::OutOfRange {
                    value: format!("{f}"),
                    raw: "float32",
                    range: format!("±{}", f32::MAX),
                });
            }
            #[allow(clippy::cast_possible_truncation)]
            (f as f32).to_be_bytes().to_vec()
        }
        RawType::Float64 => {
            let f = unscale(to_num(value, v)?, v).as_f64();
            if !f.is_finite() {
                return Err(CodecError::OutOfRange {
                    value: format!("{f}"),
                    raw: "float64",
                    range: "finite".into(),
                });
            }
            f.to_be_bytes().to_vec()
        }
        RawType::Int16
        | RawType::UInt16
        | RawType::Int32
        | RawType::UInt32
        | RawType::Int64
        | RawType::UInt64 => {
            let i = integral(unscale(to_num(value, v)?, v), value, v)?;
            match v.raw {
                RawType::Int16 => {
                    let i = check_range(i, i16::MIN.into(), i16::MAX.into(), v)?;
                    i16::try_from(i).unwrap_or_default().to_be_bytes().to_vec()
                }
                RawType::UInt16 => {
                    let i = check_range(i, 0, u16::MAX.into(), v)?;
                    u16::try_from(i).unwrap_or_default().to_be_bytes().to_vec()
                }
                RawType::Int32 => {
                    let i = check_range(i, i32::MIN.into(), i32::MAX.into(), v)?;
                    i32::try_from(i).unwrap_or_default().to_be_bytes().to_vec()
                }
                RawType::UInt32 => {
                    let i = check_range(i, 0, u32::MAX.into(), v)?;
                    u32::try_from(i).unwrap_or_default().to_be_bytes().to_vec()
                }
                RawType::Int64 => {
                    let i = check_range(i, i64::MIN.into(), i64::MAX.into(), v)?;
                    i64::try_from(i).unwrap_or_default().to_be_bytes().to_vec()
                }
                _ => {
                    let i = check_range(i, 0, u64::MAX.into(), v)?;
                    u64::try_from(i).unwrap_or_default().to_be_bytes().to_vec()
                }
            }
        }
        RawType::Bits => {
            return Err(wrong(
                value,
                v,
                "a register property cannot use raw type bits",
            ));
        }
    };
    Ok(Payload::Words(bytes_to_words(v, &bytes)))
}

fn encode_bits(v: &ModbusVisitor, value: &Value) -> Result<Payload, CodecError> {
    let n = usize::from(v.count);
    match v.data_type {
        DataType::Boolean => {
            let on = match value {
                Value::Bool(b) => *b,
                Value::Int(0) | Value::UInt(0) => false,
                Value::Int(1) | Value::UInt(1) => true,
                Value::Float(f) if *f == 0.0 || *f == 1.0 => *f == 1.0,
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "on" => true,
                    "false" | "0" | "off" => false,
                    _ => return Err(wrong(value, v, "expected true or false")),
                },
                _ => return Err(wrong(value, v, "expected true or false")),
            };
            Ok(Payload::Bits(vec![on]))
        }
        DataType::String => {
            let Value::String(s) = value else {
                return Err(wrong(value, v, "expected text of 0 and 1"));
            };
            let bits: Option<Vec<bool>> = s
                .trim()
                .chars()
                .map(|c| match c {
                    '0' => Some(false),
                    '1' => Some(true),
                    _ => None,
                })
                .collect();
            match bits {
                Some(b) if b.len() == n => Ok(Payload::Bits(b)),
                _ => Err(wrong(
                    value,
                    v,
                    format!("expected exactly {n} characters 0 or 1, one per coil"),
                )),
            }
        }
        DataType::Bytes => {
            let Value::Bytes(b) = value else {
                return Err(wrong(value, v, "expected bytes"));
            };
            if b.len() != n.div_ceil(8) {
                return Err(wrong(
                    value,
                    v,
                    format!("{n} coils take {} bytes, got {}", n.div_ceil(8), b.len()),
                ));
            }
            Ok(Payload::Bits(
                (0..n).map(|i| b[i / 8] & (1 << (i % 8)) != 0).collect(),
            ))
        }
        DataType::Int | DataType::Float | DataType::Double => {
            let i = integral(unscale(to_num(value, v)?, v), value, v)?;
            let hi: i128 = if n >= 64 {
                u64::MAX.into()
            } else {
                (1i128 << n) - 1
            };
            if !(0..=hi).contains(&i) {
                return Err(CodecError::OutOfRange {
                    value: i.to_string(),
                    raw: "bits",
                    range: format!("0..={hi} for {n} coils"),
                });
            }
            Ok(Payload::Bits((0..n).map(|k| (i >> k) & 1 == 1).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Table;
    use proptest::prelude::*;

    fn vis(table: Table, data_type: DataType, raw: RawType, count: u16) -> ModbusVisitor {
        ModbusVisitor {
            data_type,
            table,
            offset: 0,
            count,
            raw,
            swap_bytes: false,
            swap_words: false,
            scale: 1.0,
            add: 0.0,
            padding: Padding::Nul,
        }
    }

    fn reg(data_type: DataType, raw: RawType) -> ModbusVisitor {
        vis(Table::Holding, data_type, raw, raw.width().unwrap_or(1))
    }

    #[test]
    fn integers_signed_and_unsigned() {
        let v = reg(DataType::Int, RawType::Int16);
        assert_eq!(decode_words(&v, &[0xFFFF]).unwrap(), Value::Int(-1));
        let v = reg(DataType::Int, RawType::UInt16);
        assert_eq!(decode_words(&v, &[0xFFFF]).unwrap(), Value::Int(65535));
        let v = reg(DataType::Int, RawType::Int32);
        assert_eq!(
            decode_words(&v, &[0xFFFE, 0x7960]).unwrap(),
            Value::Int(-100_000)
        );
        let mut v = reg(DataType::Int, RawType::UInt32);
        assert_eq!(
            decode_words(&v, &[0x0001, 0x0000]).unwrap(),
            Value::Int(65536)
        );
        v.swap_words = true;
        assert_eq!(
            decode_words(&v, &[0x0000, 0x0001]).unwrap(),
            Value::Int(65536)
        );
        let v = reg(DataType::Int, RawType::UInt64);
        assert_eq!(
            decode_words(&v, &[0xFFFF; 4]).unwrap(),
            Value::UInt(u64::MAX)
        );
        let v = reg(DataType::Int, RawType::Int64);
        assert_eq!(decode_words(&v, &[0xFFFF; 4]).unwrap(), Value::Int(-1));
        let mut v = reg(DataType::Int, RawType::UInt16);
        v.swap_bytes = true;
        assert_eq!(decode_words(&v, &[0x3412]).unwrap(), Value::Int(0x1234));
    }

    #[test]
    fn floats_report_their_shortest_decimal() {
        let v = reg(DataType::Float, RawType::Float32);
        let b = 21.1f32.to_bits();
        let w = [(b >> 16) as u16, b as u16];
        assert_eq!(decode_words(&v, &w).unwrap(), Value::Float(21.1));
        let v = reg(DataType::Double, RawType::Float64);
        let b = (-0.1f64).to_bits();
        let w = [
            (b >> 48) as u16,
            (b >> 32) as u16,
            (b >> 16) as u16,
            b as u16,
        ];
        assert_eq!(decode_words(&v, &w).unwrap(), Value::Float(-0.1));
        let v = reg(DataType::Float, RawType::Float32);
        assert!(matches!(
            decode_words(&v, &[0x7FC0, 0]),
            Err(CodecError::BadData(_))
        ));
    }

    #[test]
    fn scaling_rounds_without_noise() {
        let mut v = reg(DataType::Float, RawType::Int16);
        v.scale = 0.1;
        assert_eq!(decode_words(&v, &[215]).unwrap(), Value::Float(21.5));
        assert_eq!(
            decode_words(&v, &[(-3i16) as u16]).unwrap(),
            Value::Float(-0.3)
        );
        v.scale = 0.01;
        assert_eq!(decode_words(&v, &[2155]).unwrap(), Value::Float(21.55));
        v.add = -40.0;
        v.scale = 0.1;
        assert_eq!(decode_words(&v, &[615]).unwrap(), Value::Float(21.5));
        // int properties round, not truncate
        let mut v = reg(DataType::Int, RawType::Int16);
        v.scale = 0.1;
        assert_eq!(decode_words(&v, &[219]).unwrap(), Value::Int(22));
        assert_eq!(
            decode_words(&v, &[(-219i16) as u16]).unwrap(),
            Value::Int(-22)
        );
        // float32 raw with scale keeps the float's digits
        let mut v = reg(DataType::Float, RawType::Float32);
        v.scale = 0.1;
        let b = 21.13f32.to_bits();
        assert_eq!(
            decode_words(&v, &[(b >> 16) as u16, b as u16]).unwrap(),
            Value::Float(2.113)
        );
    }

    #[test]
    fn booleans_use_the_whole_register() {
        let v = reg(DataType::Boolean, RawType::Bool);
        assert_eq!(decode_words(&v, &[0x0001]).unwrap(), Value::Bool(true));
        assert_eq!(decode_words(&v, &[0x0100]).unwrap(), Value::Bool(true));
        assert_eq!(decode_words(&v, &[0]).unwrap(), Value::Bool(false));
        let v = reg(DataType::Boolean, RawType::Bit(3));
        assert_eq!(decode_words(&v, &[0b1000]).unwrap(), Value::Bool(true));
        assert_eq!(decode_words(&v, &[0b0111]).unwrap(), Value::Bool(false));
        assert_eq!(
            encode(&v, &Value::Bool(true)).unwrap(),
            Payload::Mask {
                and: !0b1000,
                or: 0b1000
            }
        );
        let v = vis(Table::Coil, DataType::Boolean, RawType::Bits, 1);
        assert_eq!(decode_bits(&v, &[true]).unwrap(), Value::Bool(true));
        assert_eq!(
            encode(&v, &Value::Bool(true)).unwrap(),
            Payload::Bits(vec![true])
        );
    }

    #[test]
    fn strings_trim_padding() {
        let mut v = vis(Table::Holding, DataType::String, RawType::String, 4);
        assert_eq!(
            decode_words(&v, &[0x4142, 0x4300, 0x5858, 0x5858]).unwrap(),
            Value::String("ABC".into())
        );
        v.padding = Padding::Space;
        assert_eq!(
            decode_words(&v, &[0x4142, 0x2020, 0x2020, 0x2020]).unwrap(),
            Value::String("AB".into())
        );
        assert_eq!(
            encode(&v, &Value::String("AB".into())).unwrap(),
            Payload::Words(vec![0x4142, 0x2020, 0x2020, 0x2020])
        );
        v.swap_bytes = true;
        assert_eq!(
            decode_words(&v, &[0x4241, 0x2043]).unwrap_err(),
            CodecError::Length {
                got: 2,
                want: 4,
                unit: "registers"
            }
        );
        v.count = 2;
        assert_eq!(
            decode_words(&v, &[0x4241, 0x2043]).unwrap(),
            Value::String("ABC".into())
        );
        assert!(matches!(
            encode(&v, &Value::String("ABCDE".into())),
            Err(CodecError::TooLong { .. })
        ));
        assert!(matches!(
            decode_words(&v, &[0xFFFF, 0]),
            Err(CodecError::BadData(_))
        ));
    }

    #[test]
    fn encoding_refuses_what_does_not_fit() {
        let v = reg(DataType::Int, RawType::Int16);
        let e = encode(&v, &Value::Int(70000)).unwrap_err();
        assert!(e.to_string().contains("does not fit int16"), "{e}");
        assert_eq!(
            encode(&v, &Value::Int(-1)).unwrap(),
            Payload::Words(vec![0xFFFF])
        );
        let v = reg(DataType::Int, RawType::UInt16);
        assert!(encode(&v, &Value::Int(-1)).is_err());
        let mut v = reg(DataType::Float, RawType::Int16);
        v.scale = 0.1;
        assert_eq!(
            encode(&v, &Value::Float(21.5)).unwrap(),
            Payload::Words(vec![215])
        );
        let e = encode(&v, &Value::Float(21.55)).unwrap_err();
        assert!(matches!(e, CodecError::NotIntegral { .. }), "{e}");
        assert!(encode(&v, &Value::Float(f64::NAN)).is_err());
        let v = reg(DataType::Float, RawType::Float32);
        assert!(encode(&v, &Value::Float(1e39)).is_err());
        let v = reg(DataType::Int, RawType::UInt64);
        assert_eq!(
            encode(&v, &Value::UInt(u64::MAX)).unwrap(),
            Payload::Words(vec![0xFFFF; 4])
        );
        let v = vis(Table::Coil, DataType::Int, RawType::Bits, 3);
        assert_eq!(
            encode(&v, &Value::Int(5)).unwrap(),
            Payload::Bits(vec![true, false, true])
        );
        assert!(encode(&v, &Value::Int(8)).is_err());
        let v = vis(Table::Coil, DataType::Boolean, RawType::Bits, 1);
        assert!(encode(&v, &Value::Int(2)).is_err());
    }

    #[test]
    fn bits_as_numbers_bytes_and_text() {
        let v = vis(Table::DiscreteInput, DataType::Int, RawType::Bits, 10);
        let bits = [
            true, false, true, false, false, false, false, false, false, true,
        ];
        assert_eq!(decode_bits(&v, &bits).unwrap(), Value::Int(0b10_0000_0101));
        let v = vis(Table::DiscreteInput, DataType::Bytes, RawType::Bits, 10);
        assert_eq!(
            decode_bits(&v, &bits).unwrap(),
            Value::Bytes(vec![0b101, 0b10])
        );
        let v = vis(Table::DiscreteInput, DataType::String, RawType::Bits, 3);
        assert_eq!(
            decode_bits(&v, &[true, false, true]).unwrap(),
            Value::String("101".into())
        );
    }

    fn raw_int_types() -> impl Strategy<Value = RawType> {
        prop_oneof![
            Just(RawType::Int16),
            Just(RawType::UInt16),
            Just(RawType::Int32),
            Just(RawType::UInt32),
            Just(RawType::Int64),
            Just(RawType::UInt64),
        ]
    }

    fn words(n: u16) -> impl Strategy<Value = Vec<u16>> {
        proptest::collection::vec(any::<u16>(), usize::from(n))
    }

    proptest! {
        /// Unscaled integers of every width, sign and order round-trip exactly.
        #[test]
        fn integers_round_trip(raw in raw_int_types(), sb in any::<bool>(), sw in any::<bool>(), seed in words(4)) {
            let mut v = reg(DataType::Int, raw);
            v.swap_bytes = sb;
            v.swap_words = sw;
            let w = &seed[..usize::from(v.count)];
            let value = decode_words(&v, w).unwrap();
            prop_assert_eq!(encode(&v, &value).unwrap(), Payload::Words(w.to_vec()));
            prop_assert_eq!(decode_words(&v, w).unwrap(), value);
        }

        /// Scaled integer registers read as floats round-trip through encode.
        #[test]
        fn scaled_integers_round_trip(
            raw in prop_oneof![Just(RawType::Int16), Just(RawType::UInt16), Just(RawType::Int32), Just(RawType::UInt32)],
            scale in prop_oneof![Just(0.1), Just(0.01), Just(0.001), Just(10.0), Just(0.5), Just(2.5), Just(-1.0), Just(0.25)],
            add in prop_oneof![Just(0.0), Just(-40.0), Just(0.5), Just(273.15)],
            sb in any::<bool>(), sw in any::<bool>(), seed in words(2),
        ) {
            let mut v = reg(DataType::Float, raw);
            v.scale = scale;
            v.add = add;
            v.swap_bytes = sb;
            v.swap_words = sw;
            let w = &seed[..usize::from(v.count)];
            let value = decode_words(&v, w).unwrap();
            let back = encode(&v, &value).unwrap();
            prop_assert_eq!(&back, &Payload::Words(w.to_vec()), "value {:?}", value);
            let Payload::Words(bw) = back else { unreachable!() };
            prop_assert_eq!(decode_words(&v, &bw).unwrap(), value);
        }

        /// float32 and float64 registers round-trip for every finite value and order.
        #[test]
        fn floats_round_trip(f in any::<f32>(), d in any::<f64>(), sb in any::<bool>(), sw in any::<bool>()) {
            let mut v = reg(DataType::Float, RawType::Float32);
            v.swap_bytes = sb;
            v.swap_words = sw;
            let value = Value::Float(f32_shortest(f));
            if f.is_finite() {
                let Payload::Words(w) = encode(&v, &value).unwrap() else { unreachable!() };
                prop_assert_eq!(decode_words(&v, &w).unwrap(), value);
            }
            let mut v = reg(DataType::Double, RawType::Float64);
            v.swap_bytes = sb;
            v.swap_words = sw;
            if d.is_finite() {
                let Payload::Words(w) = encode(&v, &Value::Float(d)).unwrap() else { unreachable!() };
                prop_assert_eq!(decode_words(&v, &w).unwrap(), Value::Float(d));
            }
        }

        /// Unscaled integer values within range encode and decode back to themselves.
        #[test]
        fn int_values_round_trip(i in any::<i64>(), raw in raw_int_types(), sb in any::<bool>(), sw in any::<bool>()) {
            let mut v = reg(DataType::Int, raw);
            v.swap_bytes = sb;
            v.swap_words = sw;
            let value = Value::Int(i);
            match encode(&v, &value) {
                Ok(Payload::Words(w)) => prop_assert_eq!(decode_words(&v, &w).unwrap(), value),
                Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                Err(e) => prop_assert!(matches!(e, CodecError::OutOfRange { .. }), "{}", e),
            }
        }

        /// Strings without NULs (and without trailing padding) round-trip.
        #[test]
        fn strings_round_trip(s in "[ -~]{0,16}", n in 8u16..12, sb in any::<bool>(), sw in any::<bool>(), space in any::<bool>()) {
            let mut v = vis(Table::Holding, DataType::String, RawType::String, n);
            v.swap_bytes = sb;
            v.swap_words = sw;
            v.padding = if space { Padding::Space } else { Padding::Nul };
            let s = if space { s.trim_end().to_owned() } else { s };
            let Payload::Words(w) = encode(&v, &Value::String(s.clone())).unwrap() else { unreachable!() };
            prop_assert_eq!(decode_words(&v, &w).unwrap(), Value::String(s));
        }

        /// Bits as numbers, with scale, round-trip.
        #[test]
        fn bits_round_trip(x in any::<u64>(), n in 1u16..=64, scale in prop_oneof![Just(1.0), Just(2.0)]) {
            let mut v = vis(Table::Coil, DataType::Int, RawType::Bits, n);
            v.scale = scale;
            let raw = if n == 64 { x } else { x & ((1u64 << n) - 1) };
            let bits: Vec<bool> = (0..n).map(|k| (raw >> k) & 1 == 1).collect();
            if scale == 1.0 || raw < (1u64 << 52) {
                let value = decode_bits(&v, &bits).unwrap();
                prop_assert_eq!(encode(&v, &value).unwrap(), Payload::Bits(bits));
            }
        }

        /// Bytes round-trip for register and coil tables.
        #[test]
        fn bytes_round_trip(b in proptest::collection::vec(any::<u8>(), 6), sb in any::<bool>(), sw in any::<bool>()) {
            let mut v = vis(Table::Holding, DataType::Bytes, RawType::Bytes, 3);
            v.swap_bytes = sb;
            v.swap_words = sw;
            let Payload::Words(w) = encode(&v, &Value::Bytes(b.clone())).unwrap() else { unreachable!() };
            prop_assert_eq!(decode_words(&v, &w).unwrap(), Value::Bytes(b.clone()));
            let v = vis(Table::Coil, DataType::Bytes, RawType::Bits, 48);
            let Payload::Bits(bits) = encode(&v, &Value::Bytes(b.clone())).unwrap() else { unreachable!() };
            prop_assert_eq!(decode_bits(&v, &bits).unwrap(), Value::Bytes(b));
        }
    }
}
