//! Bytes to values and back. Pure.
//!
//! # Reading (the dataConverter, as KubeEdge intended it)
//!
//! See docs/kubeedge-contract.md#rule-bluetooth-fields and
//! docs/kubeedge-contract.md#bug-the-dataconverter-concatenates-decimal-text.
//!
//! 1. **Reverse `dataWrite`:** when the whole raw value equals one of the `dataWrite` byte
//!    strings and its key parses as the property's type, the key is the value (reading back
//!    `[1]` gives `"ON"`). `bytes` properties skip this step.
//! 2. **Byte range:** `data[start..=end]`, or `data[end..=start]` reversed when
//!    `start > end`. Indices are 0-based and inclusive. Because Go's `omitempty` removes
//!    zeros from the ConfigMap, 0 and absent are the same: an absent index is 0, and when
//!    **both** are absent the whole value is used. (So the CC2650 sample's
//!    `startIndex: 1, endIndex: 0`, which reaches the ConfigMap as `{"startIndex": 1}`,
//!    still means "bytes 1 and 0", a little-endian 16-bit number. "Byte 0 only" of a longer
//!    value cannot be written; use `shiftRight` instead.) An index outside the value is a
//!    [`ConvertError::Range`] for that property only (never a panic:
//!    docs/kubeedge-contract.md#bug-a-failed-read-panics-the-mapper).
//! 3. **Integer:** the selected bytes concatenated as a **big-endian unsigned** integer of
//!    at most 8 bytes (`[0x0C, 0x80]` is 3200, not 12128 as in mappers-go).
//! 4. **Shift:** `shiftLeft` (if set; an overflow past 64 bits is an error), else
//!    `shiftRight`.
//! 5. **Operations:** the integer as `f64`, then `orderOfOperations` in order.
//! 6. **Type:** `int` rounds to the nearest integer (exact without operations; out of the
//!    64-bit range is an error); `float`/`double` as is; `boolean` is non-zero; `string` is
//!    the number's canonical text when a shift or an operation is configured, else the
//!    selected bytes as UTF-8 text with trailing NULs removed; `bytes` are the selected
//!    bytes.
//!
//! # Writing
//!
//! The value's canonical text is looked up in `dataWrite`: an exact key first, then a key
//! equal ignoring ASCII case, then (numbers and booleans) a key that parses to the same
//! value. Otherwise the value is encoded with `writeEncoding` after undoing the converter:
//! the operations inverted in reverse order, then the shift inverted (`shiftRight n` on read
//! is `shiftLeft n` on write), then rounded for integer encodings and range-checked. So a
//! value written and read back through the same visitor comes back unchanged.

use mapper_sdk::driver::DriverError;
use mapper_sdk::model::{DataType, Value};
use thiserror::Error;

use crate::config::{
    BleVisitor, DataConverter, Endian, MAX_INTEGER_BYTES, Operation, OperationKind, WriteEncoding,
};

/// Why bytes could not become a value, or a value bytes.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConvertError {
    /// The byte range lies outside the value.
    #[error(
        "the byte range {start}..={end} is outside the {len}-byte value; fix dataConverter startIndex/endIndex"
    )]
    Range {
        /// startIndex (0 when absent).
        start: usize,
        /// endIndex (0 when absent).
        end: usize,
        /// The value's length.
        len: usize,
    },
    /// More than 8 bytes for a number.
    #[error(
        "{0} bytes do not fit a 64-bit integer; select at most 8 bytes with dataConverter startIndex/endIndex"
    )]
    TooWide(usize),
    /// The device sent an empty value.
    #[error("the device sent an empty value")]
    Empty,
    /// `shiftLeft` pushed bits past 64.
    #[error("shifting {value} left by {bits} bits overflows 64 bits")]
    ShiftOverflow {
        /// The integer before the shift.
        value: u64,
        /// The shift.
        bits: u32,
    },
    /// The operations produced NaN or infinity.
    #[error("the converted value is not a finite number")]
    NotFinite,
    /// Too large for an `int` property.
    #[error("{0} is out of the 64-bit integer range")]
    IntRange(f64),
    /// A `string` property's bytes are not UTF-8.
    #[error("the value is not UTF-8 text (hex {0}); use a bytes property or a dataConverter")]
    NotText(String),
    /// A write value that is not a `dataWrite` key, and no `writeEncoding`.
    #[error(
        "{value:?} is not one of the dataWrite values ({allowed}); set writeEncoding to write other values"
    )]
    UnknownWriteValue {
        /// The refused value.
        value: String,
        /// The allowed values, comma-separated.
        allowed: String,
    },
    /// A numeric write without `dataWrite` or `writeEncoding`.
    #[error(
        "no encoding for writing a {0} value: set writeEncoding (e.g. uint8, int16le, float32le) or dataWrite"
    )]
    NoEncoding(DataType),
    /// The value does not fit the encoding.
    #[error("{value} does not fit the write encoding {encoding}")]
    EncodeRange {
        /// The value after undoing the converter.
        value: String,
        /// The encoding.
        encoding: String,
    },
    /// The value cannot be expressed in the encoding at all.
    #[error("{value:?} cannot be written as {encoding}")]
    EncodeType {
        /// The value's text.
        value: String,
        /// The encoding.
        encoding: String,
    },
}

impl From<ConvertError> for DriverError {
    fn from(e: ConvertError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// The bytes the converter's range selects (the whole value without a range).
pub fn select(raw: &[u8], conv: &DataConverter) -> Result<Vec<u8>, ConvertError> {
    if !conv.has_range() {
        return Ok(raw.to_vec());
    }
    let start = conv.start_index.unwrap_or(0);
    let end = conv.end_index.unwrap_or(0);
    let range_err = || ConvertError::Range {
        start,
        end,
        len: raw.len(),
    };
    if start <= end {
        raw.get(start..=end)
            .map(<[u8]>::to_vec)
            .ok_or_else(range_err)
    } else {
        let mut v = raw.get(end..=start).ok_or_else(range_err)?.to_vec();
        v.reverse();
        Ok(v)
    }
}

/// Folds bytes into a big-endian unsigned integer (at most 8 bytes).
pub fn be_uint(bytes: &[u8]) -> Result<u64, ConvertError> {
    if bytes.is_empty() {
        return Err(ConvertError::Empty);
    }
    if bytes.len() > MAX_INTEGER_BYTES {
        return Err(ConvertError::TooWide(bytes.len()));
    }
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Steps 2-4: range, big-endian integer, shift.
pub fn to_integer(raw: &[u8], conv: &DataConverter) -> Result<u64, ConvertError> {
    let v = be_uint(&select(raw, conv)?)?;
    if let Some(bits) = conv.shift_left {
        let wide = u128::from(v) << bits;
        u64::try_from(wide).map_err(|_| ConvertError::ShiftOverflow { value: v, bits })
    } else if let Some(bits) = conv.shift_right {
        Ok(v >> bits)
    } else {
        Ok(v)
    }
}

/// Applies operations in order.
pub fn apply_operations(x: f64, ops: &[Operation]) -> f64 {
    ops.iter().fold(x, |acc, op| match op.kind {
        OperationKind::Add => acc + op.value,
        OperationKind::Subtract => acc - op.value,
        OperationKind::Multiply => acc * op.value,
        OperationKind::Divide => acc / op.value,
    })
}

/// Undoes operations (in reverse order).
pub fn invert_operations(x: f64, ops: &[Operation]) -> f64 {
    ops.iter().rev().fold(x, |acc, op| match op.kind {
        OperationKind::Add => acc - op.value,
        OperationKind::Subtract => acc + op.value,
        OperationKind::Multiply => acc / op.value,
        OperationKind::Divide => acc * op.value,
    })
}

/// Steps 2-5: the converted number.
#[allow(clippy::cast_precision_loss)]
pub fn to_number(raw: &[u8], conv: &DataConverter) -> Result<f64, ConvertError> {
    let x = apply_operations(to_integer(raw, conv)? as f64, &conv.operations);
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ConvertError::NotFinite)
    }
}

fn reverse_lookup(raw: &[u8], visitor: &BleVisitor, data_type: DataType) -> Option<Value> {
    if data_type == DataType::Bytes {
        return None;
    }
    visitor
        .data_write
        .iter()
        .filter(|(_, bytes)| bytes.as_slice() == raw)
        .find_map(|(key, _)| Value::parse(key, data_type).ok())
}

/// Converts a characteristic value to a property value (see the module docs).
#[allow(clippy::cast_possible_truncation)]
pub fn decode(
    raw: &[u8],
    visitor: &BleVisitor,
    data_type: DataType,
) -> Result<Value, ConvertError> {
    if let Some(v) = reverse_lookup(raw, visitor, data_type) {
        return Ok(v);
    }
    let conv = &visitor.converter;
    match data_type {
        DataType::Int => {
            if conv.operations.is_empty() {
                let i = to_integer(raw, conv)?;
                Ok(i64::try_from(i).map_or(Value::UInt(i), Value::Int))
            } else {
                let f = to_number(raw, conv)?.round();
                // 2^63 is exactly representable; the range is [-2^63, 2^63).
                if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                    Ok(Value::Int(f as i64))
                } else {
                    Err(ConvertError::IntRange(f))
                }
            }
        }
        DataType::Float | DataType::Double => Ok(Value::Float(to_number(raw, conv)?)),
        DataType::Boolean => {
            if conv.operations.is_empty() {
                Ok(Value::Bool(to_integer(raw, conv)? != 0))
            } else {
                Ok(Value::Bool(to_number(raw, conv)? != 0.0))
            }
        }
        DataType::String => {
            if conv.is_arithmetic() {
                let v = if conv.operations.is_empty() {
                    Value::UInt(to_integer(raw, conv)?)
                } else {
                    Value::Float(to_number(raw, conv)?)
                };
                return Ok(Value::String(v.canonical().unwrap_or_default()));
            }
            let mut bytes = select(raw, conv)?;
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|e| ConvertError::NotText(hex(e.as_bytes())))
        }
        DataType::Bytes => Ok(Value::Bytes(select(raw, conv)?)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        v => v.canonical().unwrap_or_default(),
    }
}

/// Finds the `dataWrite` bytes for a value: exact key, then case-insensitive, then (numbers
/// and booleans) a key meaning the same value.
pub fn lookup_write<'a>(
    visitor: &'a BleVisitor,
    value: &Value,
    data_type: DataType,
) -> Option<&'a [u8]> {
    let text = value_text(value);
    let dw = &visitor.data_write;
    dw.iter()
        .find(|(k, _)| *k == text)
        .or_else(|| dw.iter().find(|(k, _)| k.eq_ignore_ascii_case(&text)))
        .or_else(|| {
            if !(data_type.is_numeric() || data_type == DataType::Boolean) {
                return None;
            }
            dw.iter().find(|(k, _)| {
                Value::parse(k, data_type).is_ok_and(|kv| kv.same_as(value, data_type))
            })
        })
        .map(|(_, b)| b.as_slice())
}

/// Converts a desired value to the bytes to write (see the module docs).
pub fn encode(
    value: &Value,
    visitor: &BleVisitor,
    data_type: DataType,
) -> Result<Vec<u8>, ConvertError> {
    if let Some(b) = lookup_write(visitor, value, data_type) {
        return Ok(b.to_vec());
    }
    let encoding = match visitor.write_encoding {
        Some(e) => e,
        None if !visitor.data_write.is_empty() => {
            return Err(ConvertError::UnknownWriteValue {
                value: value_text(value),
                allowed: visitor
                    .data_write
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        None => match data_type {
            DataType::String => WriteEncoding::Utf8,
            DataType::Bytes => WriteEncoding::Bytes,
            DataType::Boolean => WriteEncoding::Unsigned {
                bytes: 1,
                endian: Endian::Little,
            },
            DataType::Int | DataType::Float | DataType::Double => {
                return Err(ConvertError::NoEncoding(data_type));
            }
        },
    };
    encode_typed(value, encoding, &visitor.converter)
}

fn encoding_name(e: WriteEncoding) -> String {
    let end = |e: Endian| match e {
        Endian::Little => "le",
        Endian::Big => "be",
    };
    match e {
        WriteEncoding::Unsigned { bytes: 1, .. } => "uint8".into(),
        WriteEncoding::Signed { bytes: 1, .. } => "int8".into(),
        WriteEncoding::Unsigned { bytes, endian } => format!("uint{}{}", bytes * 8, end(endian)),
        WriteEncoding::Signed { bytes, endian } => format!("int{}{}", bytes * 8, end(endian)),
        WriteEncoding::Float { bytes, endian } => format!("float{}{}", bytes * 8, end(endian)),
        WriteEncoding::Utf8 => "utf8".into(),
        WriteEncoding::Bytes => "bytes".into(),
    }
}

fn ordered(mut le: Vec<u8>, endian: Endian) -> Vec<u8> {
    if endian == Endian::Big {
        le.reverse();
    }
    le
}

/// Encodes a value with a typed encoding, undoing the converter first.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]
pub fn encode_typed(
    value: &Value,
    encoding: WriteEncoding,
    conv: &DataConverter,
) -> Result<Vec<u8>, ConvertError> {
    let text = value_text(value);
    let type_err = || ConvertError::EncodeType {
        value: text.clone(),
        encoding: encoding_name(encoding),
    };
    let number = || -> Result<f64, ConvertError> {
        let x = match value {
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| type_err())?,
            v => v.as_f64().ok_or_else(type_err)?,
        };
        Ok(invert_operations(x, &conv.operations))
    };
    match encoding {
        WriteEncoding::Utf8 => Ok(text.clone().into_bytes()),
        WriteEncoding::Bytes => match value {
            Value::Bytes(b) => Ok(b.clone()),
            _ => match Value::parse(&text, DataType::Bytes) {
                Ok(Value::Bytes(b)) => Ok(b),
                _ => Err(type_err()),
            },
        },
        WriteEncoding::Float { bytes, endian } => {
            let f = number()?;
            let range_err = || ConvertError::EncodeRange {
                value: f.to_string(),
                encoding: encoding_name(encoding),
            };
            if !f.is_finite() {
                return Err(range_err());
            }
            if bytes == 4 {
                if f.abs() > f64::from(f32::MAX) {
                    return Err(range_err());
                }
                Ok(ordered((f as f32).to_le_bytes().to_vec(), endian))
            } else {
                Ok(ordered(f.to_le_bytes().to_vec(), endian))
            }
        }
        WriteEncoding::Unsigned { bytes, endian } | WriteEncoding::Signed { bytes, endian } => {
            let signed = matches!(encoding, WriteEncoding::Signed { .. });
            // Exact for integers without operations; rounded otherwise.
            let mut n: i128 = match value {
                Value::Int(i) if conv.operations.is_empty() => i128::from(*i),
                Value::UInt(u) if conv.operations.is_empty() => i128::from(*u),
                _ => {
                    let f = number()?.round();
                    if !f.is_finite() || f.abs() >= 2f64.powi(100) {
                        return Err(ConvertError::EncodeRange {
                            value: f.to_string(),
                            encoding: encoding_name(encoding),
                        });
                    }
                    f as i128
                }
            };
            if let Some(bits) = conv.shift_left {
                n >>= bits;
            } else if let Some(bits) = conv.shift_right {
                if n.unsigned_abs() >= 1u128 << (126 - bits) {
                    return Err(ConvertError::EncodeRange {
                        value: n.to_string(),
                        encoding: encoding_name(encoding),
                    });
                }
                n <<= bits;
            }
            let width = u32::from(bytes) * 8;
            let (lo, hi) = if signed {
                (-(1i128 << (width - 1)), (1i128 << (width - 1)) - 1)
            } else {
                (0, (1i128 << width) - 1)
            };
            if n < lo || n > hi {
                return Err(ConvertError::EncodeRange {
                    value: n.to_string(),
                    encoding: encoding_name(encoding),
                });
            }
            let le = (n as u128).to_le_bytes();
            Ok(ordered(le[..usize::from(bytes)].to_vec(), endian))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NotifyMode, WriteType};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn visitor(conv: DataConverter) -> BleVisitor {
        BleVisitor {
            characteristic: Uuid::nil(),
            data_write: Vec::new(),
            converter: conv,
            notify: NotifyMode::Auto,
            write_encoding: None,
            write_type: WriteType::Auto,
        }
    }

    fn range(start: usize, end: usize) -> DataConverter {
        DataConverter {
            start_index: Some(start).filter(|i| *i > 0),
            end_index: Some(end).filter(|i| *i > 0),
            ..DataConverter::default()
        }
    }

    fn op(kind: OperationKind, value: f64) -> Operation {
        Operation { kind, value }
    }

    #[test]
    fn big_endian_not_decimal_strings() {
        // mappers-go gives 12128 here
        // (docs/kubeedge-contract.md#bug-the-dataconverter-concatenates-decimal-text).
        let v = visitor(range(0, 1));
        assert_eq!(
            decode(&[0x0C, 0x80], &v, DataType::Int).unwrap(),
            Value::Int(3200)
        );
        let v = visitor(DataConverter::default());
        assert_eq!(
            decode(&[0x0C, 0x80], &v, DataType::Int).unwrap(),
            Value::Int(3200)
        );
    }

    #[test]
    fn cc2650_temperature() {
        // TMP007 object temperature: little-endian bytes 0-1, >> 2, * 0.03125 °C.
        let v = visitor(DataConverter {
            start_index: Some(1),
            shift_right: Some(2),
            operations: vec![op(OperationKind::Multiply, 0.03125)],
            ..DataConverter::default()
        });
        // 25.5 °C = 816 << 2 = 3264 = 0x0CC0 -> bytes C0 0C, ambient after.
        let raw = [0xC0, 0x0C, 0x00, 0x0D];
        assert_eq!(
            decode(&raw, &v, DataType::Float).unwrap(),
            Value::Float(25.5)
        );
        assert_eq!(decode(&raw, &v, DataType::Int).unwrap(), Value::Int(26));
    }

    #[test]
    fn xiaomi_humidity() {
        let v = visitor(DataConverter {
            start_index: Some(2),
            end_index: Some(2),
            operations: vec![op(OperationKind::Divide, 100.0)],
            ..DataConverter::default()
        });
        assert_eq!(
            decode(&[0x10, 0x09, 0x37], &v, DataType::Float).unwrap(),
            Value::Float(0.55)
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let v = visitor(range(2, 3));
        assert_eq!(
            decode(&[1, 2], &v, DataType::Int),
            Err(ConvertError::Range {
                start: 2,
                end: 3,
                len: 2
            })
        );
        let v = visitor(range(3, 2));
        assert!(matches!(
            decode(&[1, 2], &v, DataType::Int),
            Err(ConvertError::Range { .. })
        ));
        let v = visitor(DataConverter::default());
        assert_eq!(decode(&[], &v, DataType::Int), Err(ConvertError::Empty));
        assert_eq!(
            decode(&[0; 9], &v, DataType::Int),
            Err(ConvertError::TooWide(9))
        );
        let e: DriverError = ConvertError::TooWide(9).into();
        assert!(matches!(e, DriverError::Invalid(_)));
    }

    #[test]
    fn shifts() {
        let mut c = range(0, 1);
        c.shift_left = Some(4);
        c.shift_right = Some(8); // left wins
        assert_eq!(to_integer(&[0x01, 0x02], &c).unwrap(), 0x1020);
        c.shift_left = None;
        assert_eq!(to_integer(&[0x01, 0x02], &c).unwrap(), 0x01);
        let c = DataConverter {
            shift_left: Some(8),
            ..DataConverter::default()
        };
        assert!(matches!(
            to_integer(&[0xFF; 8], &c),
            Err(ConvertError::ShiftOverflow { .. })
        ));
    }

    #[test]
    fn types() {
        let v = visitor(DataConverter::default());
        assert_eq!(
            decode(&[0xFF; 8], &v, DataType::Int).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            decode(&[0], &v, DataType::Boolean).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            decode(&[0, 2], &v, DataType::Boolean).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode(b"LED\0\0", &v, DataType::String).unwrap(),
            Value::String("LED".into())
        );
        assert!(matches!(
            decode(&[0xFF, 0xFE], &v, DataType::String),
            Err(ConvertError::NotText(_))
        ));
        assert_eq!(
            decode(&[1, 2], &v, DataType::Bytes).unwrap(),
            Value::Bytes(vec![1, 2])
        );
        let v = visitor(DataConverter {
            operations: vec![op(OperationKind::Divide, 10.0)],
            ..DataConverter::default()
        });
        assert_eq!(
            decode(&[0, 215], &v, DataType::String).unwrap(),
            Value::String("21.5".into())
        );
        assert_eq!(
            decode(&[0, 215], &v, DataType::Int).unwrap(),
            Value::Int(22)
        );
        let v = visitor(DataConverter {
            operations: vec![
                op(OperationKind::Multiply, 1e300),
                op(OperationKind::Multiply, 1e300),
            ],
            ..DataConverter::default()
        });
        assert_eq!(
            decode(&[1], &v, DataType::Float),
            Err(ConvertError::NotFinite)
        );
        let v = visitor(DataConverter {
            operations: vec![op(OperationKind::Multiply, 1e300)],
            ..DataConverter::default()
        });
        assert!(matches!(
            decode(&[1], &v, DataType::Int),
            Err(ConvertError::IntRange(_))
        ));
    }

    #[test]
    fn data_write_both_ways() {
        let mut v = visitor(DataConverter::default());
        v.data_write = vec![("ON".into(), vec![1]), ("OFF".into(), vec![0])];
        assert_eq!(
            decode(&[1], &v, DataType::String).unwrap(),
            Value::String("ON".into())
        );
        assert_eq!(
            decode(&[7], &v, DataType::String).unwrap(),
            Value::String("\u{7}".into())
        );
        assert_eq!(
            encode(&Value::String("ON".into()), &v, DataType::String).unwrap(),
            vec![1]
        );
        assert_eq!(
            encode(&Value::String("off".into()), &v, DataType::String).unwrap(),
            vec![0]
        );
        // Booleans map onto ON/OFF keys.
        assert_eq!(
            encode(&Value::Bool(true), &v, DataType::Boolean).unwrap(),
            vec![1]
        );
        assert_eq!(
            decode(&[0], &v, DataType::Boolean).unwrap(),
            Value::Bool(false)
        );
        let e = encode(&Value::String("BLINK".into()), &v, DataType::String).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"BLINK\" is not one of the dataWrite values (ON, OFF); set writeEncoding to write other values"
        );
        // Exact beats case-insensitive.
        v.data_write = vec![("on".into(), vec![2]), ("ON".into(), vec![1])];
        assert_eq!(
            encode(&Value::String("ON".into()), &v, DataType::String).unwrap(),
            vec![1]
        );
        // An int property with named values reads back as a number (the key is not an int).
        v.data_write = vec![("Red".into(), vec![1])];
        assert_eq!(decode(&[1], &v, DataType::Int).unwrap(), Value::Int(1));
        // Numeric keys match numerically.
        v.data_write = vec![("1.0".into(), vec![9])];
        assert_eq!(encode(&Value::Int(1), &v, DataType::Int).unwrap(), vec![9]);
    }

    #[test]
    fn default_encodings() {
        let v = visitor(DataConverter::default());
        assert_eq!(
            encode(&Value::String("hi".into()), &v, DataType::String).unwrap(),
            b"hi"
        );
        assert_eq!(
            encode(&Value::Bytes(vec![1, 2]), &v, DataType::Bytes).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            encode(&Value::Bool(true), &v, DataType::Boolean).unwrap(),
            vec![1]
        );
        assert_eq!(
            encode(&Value::Int(3), &v, DataType::Int),
            Err(ConvertError::NoEncoding(DataType::Int))
        );
    }

    #[test]
    fn typed_encodings() {
        let c = DataConverter::default();
        let enc = |s: &str| s.parse::<WriteEncoding>().unwrap();
        assert_eq!(
            encode_typed(&Value::Int(-2), enc("int16le"), &c).unwrap(),
            vec![0xFE, 0xFF]
        );
        assert_eq!(
            encode_typed(&Value::Int(0x1234), enc("uint16be"), &c).unwrap(),
            vec![0x12, 0x34]
        );
        assert_eq!(
            encode_typed(&Value::Int(0x1234), enc("uint32le"), &c).unwrap(),
            vec![0x34, 0x12, 0, 0]
        );
        assert_eq!(
            encode_typed(&Value::UInt(u64::MAX), enc("uint64be"), &c).unwrap(),
            vec![0xFF; 8]
        );
        assert_eq!(
            encode_typed(&Value::Float(1.5), enc("float32be"), &c).unwrap(),
            1.5f32.to_be_bytes().to_vec()
        );
        assert_eq!(
            encode_typed(&Value::Float(2.5), enc("uint8"), &c).unwrap(),
            vec![3]
        );
        assert!(matches!(
            encode_typed(&Value::Int(256), enc("uint8"), &c),
            Err(ConvertError::EncodeRange { .. })
        ));
        assert!(matches!(
            encode_typed(&Value::Int(-1), enc("uint16le"), &c),
            Err(ConvertError::EncodeRange { .. })
        ));
        assert!(matches!(
            encode_typed(&Value::Int(128), enc("int8"), &c),
            Err(ConvertError::EncodeRange { .. })
        ));
        assert!(matches!(
            encode_typed(&Value::String("x".into()), enc("int8"), &c),
            Err(ConvertError::EncodeType { .. })
        ));
        assert_eq!(
            encode_typed(&Value::String("0a0b".into()), enc("bytes"), &c).unwrap(),
            vec![10, 11]
        );
        assert_eq!(
            encode_typed(&Value::Int(42), enc("utf8"), &c).unwrap(),
            b"42"
        );
        // Operations and shifts are undone.
        let c = DataConverter {
            start_index: Some(1),
            shift_right: Some(2),
            operations: vec![op(OperationKind::Multiply, 0.03125)],
            ..DataConverter::default()
        };
        assert_eq!(
            encode_typed(&Value::Float(25.5), enc("uint16le"), &c).unwrap(),
            vec![0xC0, 0x0C]
        );
    }

    proptest! {
        #[test]
        fn integer_is_the_big_endian_fold(raw in proptest::collection::vec(any::<u8>(), 1..16), a in 0usize..16, len in 0usize..8, rev in any::<bool>()) {
            let a = a % raw.len();
            let b = (a + len).min(raw.len() - 1);
            let (start, end) = if rev { (b, a) } else { (a, b) };
            let conv = DataConverter { start_index: Some(start), end_index: Some(end), ..DataConverter::default() };
            let mut sel: Vec<u8> = raw[a..=b].to_vec();
            if start > end { sel.reverse(); }
            let manual = sel.iter().fold(0u64, |acc, x| acc * 256 + u64::from(*x));
            prop_assert_eq!(to_integer(&raw, &conv).unwrap(), manual);
        }

        #[test]
        fn reversal_is_the_mirror(raw in proptest::collection::vec(any::<u8>(), 2..16), a in 0usize..16, b in 0usize..16) {
            let (a, b) = (a % raw.len(), b % raw.len());
            prop_assume!(a < b);
            let fwd = select(&raw, &DataConverter { start_index: Some(a), end_index: Some(b), ..DataConverter::default() }).unwrap();
            let mut back = select(&raw, &DataConverter { start_index: Some(b), end_index: Some(a), ..DataConverter::default() }).unwrap();
            back.reverse();
            prop_assert_eq!(fwd, back);
        }

        #[test]
        fn shifts_match_integer_shifts(raw in proptest::collection::vec(any::<u8>(), 1..=8), bits in 1u32..64, left in any::<bool>()) {
            let v = be_uint(&raw).unwrap();
            let conv = DataConverter {
                shift_left: left.then_some(bits),
                shift_right: (!left).then_some(bits),
                ..DataConverter::default()
            };
            let got = to_integer(&raw, &conv);
            if left {
                match v.checked_shl(bits).filter(|s| s >> bits == v) {
                    Some(s) => prop_assert_eq!(got.unwrap(), s),
                    None => {
                        let overflow = matches!(got, Err(ConvertError::ShiftOverflow { .. }));
                        prop_assert!(overflow);
                    }
                }
            } else {
                prop_assert_eq!(got.unwrap(), v >> bits);
            }
        }

        #[test]
        fn operations_apply_in_order(x in -1e6f64..1e6, a in -1e3f64..1e3, m in 0.001f64..1e3) {
            let ops = [op(OperationKind::Add, a), op(OperationKind::Multiply, m), op(OperationKind::Subtract, a), op(OperationKind::Divide, m)];
            let manual = (((x + a) * m) - a) / m;
            prop_assert_eq!(apply_operations(x, &ops), manual);
            let back = invert_operations(apply_operations(x, &ops), &ops);
            prop_assert!((back - x).abs() <= 1e-6 * x.abs().max(1.0));
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..20), s in 0usize..40, e in 0usize..40, sl in 0u32..64, sr in 0u32..64, t in 0usize..6) {
            let conv = DataConverter {
                start_index: Some(s).filter(|i| *i > 0),
                end_index: Some(e).filter(|i| *i > 0),
                shift_left: Some(sl).filter(|i| *i > 0),
                shift_right: Some(sr).filter(|i| *i > 0),
                operations: vec![op(OperationKind::Multiply, 0.5)],
            };
            let dt = [DataType::Int, DataType::Float, DataType::Double, DataType::Boolean, DataType::String, DataType::Bytes][t];
            let _ = decode(&raw, &visitor(conv), dt);
        }

        #[test]
        fn u16_le_round_trips_through_a_reversed_range(n in any::<u16>(), scale in prop::sample::select(vec![1.0, 0.5, 0.25, 0.125])) {
            let mut v = visitor(DataConverter {
                start_index: Some(1),
                operations: vec![op(OperationKind::Multiply, scale)],
                ..DataConverter::default()
            });
            v.write_encoding = Some("uint16le".parse().unwrap());
            let value = Value::Float(f64::from(n) * scale);
            let bytes = encode(&value, &v, DataType::Float).unwrap();
            prop_assert_eq!(bytes.clone(), n.to_le_bytes().to_vec());
            prop_assert_eq!(decode(&bytes, &v, DataType::Float).unwrap(), value);
        }

        #[test]
        fn unsigned_big_endian_round_trips(n in any::<u32>()) {
            let mut v = visitor(DataConverter::default());
            v.write_encoding = Some("uint32be".parse().unwrap());
            let bytes = encode(&Value::Int(i64::from(n)), &v, DataType::Int).unwrap();
            prop_assert_eq!(decode(&bytes, &v, DataType::Int).unwrap(), Value::Int(i64::from(n)));
        }
    }
}
