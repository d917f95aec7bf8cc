//! Typed values in engineering terms and their register encoding, plus the
//! dynamics that make them change over time. All pure.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The data type of a typed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Unsigned 16 bit, one register.
    #[serde(alias = "uint16")]
    U16,
    /// Signed 16 bit, one register.
    #[serde(alias = "int16")]
    I16,
    /// Unsigned 32 bit, two registers.
    #[serde(alias = "uint32")]
    U32,
    /// Signed 32 bit, two registers.
    #[serde(alias = "int32", alias = "int")]
    I32,
    /// Unsigned 64 bit, four registers (engineering values are f64: exact up to 2^53).
    #[serde(alias = "uint64")]
    U64,
    /// Signed 64 bit, four registers (engineering values are f64: exact up to 2^53).
    #[serde(alias = "int64")]
    I64,
    /// IEEE 754 single precision, two registers.
    #[serde(alias = "float32", alias = "float")]
    F32,
    /// IEEE 754 double precision, four registers.
    #[serde(alias = "float64", alias = "double")]
    F64,
    /// A bit (coils, discrete inputs) or a 0/1 register.
    #[serde(alias = "boolean")]
    Bool,
    /// Text, two bytes per register (first character in the high byte),
    /// zero padded to `length` registers.
    String,
}

impl ValueType {
    /// Registers used by a numeric type (strings use their configured length).
    pub fn registers(self) -> usize {
        match self {
            ValueType::U16 | ValueType::I16 | ValueType::Bool | ValueType::String => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 4,
        }
    }

    /// The raw (unscaled) range of the type.
    pub fn raw_bounds(self) -> (f64, f64) {
        match self {
            ValueType::U16 => (0.0, f64::from(u16::MAX)),
            ValueType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            ValueType::U32 => (0.0, f64::from(u32::MAX)),
            ValueType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            ValueType::U64 => (0.0, u64::MAX as f64),
            ValueType::I64 => (i64::MIN as f64, i64::MAX as f64),
            ValueType::F32 => (f64::from(f32::MIN), f64::from(f32::MAX)),
            ValueType::F64 => (f64::MIN, f64::MAX),
            ValueType::Bool => (0.0, 1.0),
            ValueType::String => (0.0, 0.0),
        }
    }

    pub(crate) fn is_integer(self) -> bool {
        !matches!(self, ValueType::F32 | ValueType::F64)
    }
}

/// How a numeric value sits in its registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Engineering value = raw × scale (KubeEdge `scale`); 1.0 when absent.
    pub scale: f64,
    /// Swap the two bytes inside each register (KubeEdge `isSwap`).
    pub byte_swap: bool,
    /// Reverse the register order: low word first (KubeEdge `isRegisterSwap`).
    pub word_swap: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            scale: 1.0,
            byte_swap: false,
            word_swap: false,
        }
    }
}

fn apply_layout(mut words: Vec<u16>, layout: &Layout) -> Vec<u16> {
    if layout.word_swap {
        words.reverse();
    }
    if layout.byte_swap {
        for w in &mut words {
            *w = w.swap_bytes();
        }
    }
    words
}

fn bytes_to_words(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
        .collect()
}

fn words_to_bytes(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Why an engineering value cannot be encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodeError {
    /// The value (after dividing by scale) is outside the type's range.
    OutOfRange {
        /// The raw value that did not fit.
        raw: f64,
        /// The type.
        ty: ValueType,
    },
    /// The value is NaN or infinite where an integer is needed, or scale is 0.
    NotFinite,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::OutOfRange { raw, ty } => {
                write!(f, "raw value {raw} does not fit in {ty:?}")
            }
            EncodeError::NotFinite => f.write_str("value is not a finite number (or scale is 0)"),
        }
    }
}

/// Encodes a numeric engineering value into registers.
///
/// With `clamp`, out-of-range values are clamped to the type's range
/// (used by dynamics); otherwise they are an error (used at load time).
pub fn encode_number(
    ty: ValueType,
    layout: &Layout,
    value: f64,
    clamp: bool,
) -> Result<Vec<u16>, EncodeError> {
    if layout.scale == 0.0 || !layout.scale.is_finite() {
        return Err(EncodeError::NotFinite);
    }
    let mut raw = value / layout.scale;
    if ty.is_integer() {
        if !raw.is_finite() {
            return Err(EncodeError::NotFinite);
        }
        raw = raw.round();
    }
    let (lo, hi) = ty.raw_bounds();
    if ty != ValueType::F64 && raw.is_finite() && (raw < lo || raw > hi) {
        if clamp {
            raw = raw.clamp(lo, hi);
        } else {
            return Err(EncodeError::OutOfRange { raw, ty });
        }
    }
    // `as` casts saturate; the range was checked above.
    let bytes: Vec<u8> = match ty {
        ValueType::U16 | ValueType::Bool => (raw as u16).to_be_bytes().to_vec(),
        ValueType::I16 => (raw as i16).to_be_bytes().to_vec(),
        ValueType::U32 => (raw as u32).to_be_bytes().to_vec(),
        ValueType::I32 => (raw as i32).to_be_bytes().to_vec(),
        ValueType::U64 => (raw as u64).to_be_bytes().to_vec(),
        ValueType::I64 => (raw as i64).to_be_bytes().to_vec(),
        ValueType::F32 => (raw as f32).to_be_bytes().to_vec(),
        ValueType::F64 => raw.to_be_bytes().to_vec(),
        ValueType::String => return Err(EncodeError::NotFinite),
    };
    Ok(apply_layout(bytes_to_words(&bytes), layout))
}

/// Decodes registers into a numeric engineering value (raw × scale).
/// Returns `None` when `words` has the wrong length for the type.
pub fn decode_number(ty: ValueType, layout: &Layout, words: &[u16]) -> Option<f64> {
    if words.len() != ty.registers() || ty == ValueType::String {
        return None;
    }
    let mut words = words.to_vec();
    // undo the layout: byte swap is its own inverse, then word order
    if layout.byte_swap {
        for w in &mut words {
            *w = w.swap_bytes();
        }
    }
    if layout.word_swap {
        words.reverse();
    }
    let b = words_to_bytes(&words);
    let raw = match ty {
        ValueType::U16 | ValueType::Bool => f64::from(u16::from_be_bytes([b[0], b[1]])),
        ValueType::I16 => f64::from(i16::from_be_bytes([b[0], b[1]])),
        ValueType::U32 => f64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ValueType::I32 => f64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ValueType::F32 => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ValueType::U64 => u64::from_be_bytes(b[..8].try_into().ok()?) as f64,
        ValueType::I64 => i64::from_be_bytes(b[..8].try_into().ok()?) as f64,
        ValueType::F64 => f64::from_be_bytes(b[..8].try_into().ok()?),
        ValueType::String => return None,
    };
    Some(raw * layout.scale)
}

/// Encodes text into `registers` registers (zero padded; too long is an error).
pub fn encode_string(text: &str, registers: usize, byte_swap: bool) -> Option<Vec<u16>> {
    let bytes = text.as_bytes();
    if bytes.len() > registers * 2 {
        return None;
    }
    let mut words = bytes_to_words(bytes);
    words.resize(registers, 0);
    Some(apply_layout(
        words,
        &Layout {
            byte_swap,
            ..Layout::default()
        },
    ))
}

/// How a value changes on each dynamics tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dynamics {
    /// Add `step` (may be negative) each tick; wrap to `min` above `max`
    /// (to `max` below `min` for negative steps).
    Ramp {
        /// Change per tick, in engineering units.
        step: f64,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// Add a uniform random amount in `-step..=step`, clamped to `min..=max`.
    RandomWalk {
        /// Largest change per tick, in engineering units.
        step: f64,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// Add `step` (default 1, engineering units) each tick, wrapping around
    /// the raw range of the type like a hardware counter.
    Counter {
        /// Increment per tick, in engineering units.
        #[serde(default = "one")]
        step: f64,
    },
    /// Flip between 0 and 1 (bits, booleans).
    Toggle,
}

impl Dynamics {
    /// A `counter` re-expressed in raw counts for `scale`.
    pub fn raw_counter(&self, scale: f64) -> Option<Dynamics> {
        match *self {
            Dynamics::Counter { step } => Some(Dynamics::Counter { step: step / scale }),
            _ => None,
        }
    }
}

fn one() -> f64 {
    1.0
}

impl Dynamics {
    /// Checks the parameters; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Dynamics::Ramp { step, min, max } | Dynamics::RandomWalk { step, min, max } => {
                if !(step.is_finite() && min.is_finite() && max.is_finite()) {
                    return Err("step, min and max must be finite numbers".into());
                }
                if min >= max {
                    return Err(format!("min ({min}) must be below max ({max})"));
                }
                if *step == 0.0 {
                    return Err("step must not be 0".into());
                }
                Ok(())
            }
            Dynamics::Counter { step } => {
                if step.is_finite() && *step != 0.0 {
                    Ok(())
                } else {
                    Err("step must be a finite, non-zero number".into())
                }
            }
            Dynamics::Toggle => Ok(()),
        }
    }

    /// The next value. `bounds` is the range `counter` wraps around. The
    /// simulator calls `counter` with raw values, bounds and a raw step
    /// (see [`Dynamics::raw_counter`]), the others with engineering values.
    pub fn next<R: Rng + ?Sized>(&self, current: f64, bounds: (f64, f64), rng: &mut R) -> f64 {
        match *self {
            Dynamics::Ramp { step, min, max } => {
                let v = current + step;
                if v > max {
                    min
                } else if v < min {
                    max
                } else {
                    v
                }
            }
            Dynamics::RandomWalk { step, min, max } => {
                let delta = rng.random_range(-step.abs()..=step.abs());
                (current + delta).clamp(min, max)
            }
            Dynamics::Counter { step } => {
                let (lo, hi) = bounds;
                let v = current + step;
                // wrap modulo the range, like an unsigned/signed hardware counter
                if v > hi {
                    lo + (v - hi - 1.0)
                } else if v < lo {
                    hi - (lo - v - 1.0)
                } else {
                    v
                }
            }
            Dynamics::Toggle => {
                if current != 0.0 {
                    0.0
                } else {
                    1.0
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn float32_word_orders() {
        let l = Layout::default();
        // 21.5f32 = 0x41AC0000
        assert_eq!(
            encode_number(ValueType::F32, &l, 21.5, false).unwrap(),
            vec![0x41AC, 0x0000]
        );
        let swapped = Layout {
            word_swap: true,
            ..l
        };
        assert_eq!(
            encode_number(ValueType::F32, &swapped, 21.5, false).unwrap(),
            vec![0x0000, 0x41AC]
        );
        let both = Layout {
            word_swap: true,
            byte_swap: true,
            ..l
        };
        let w = encode_number(ValueType::F32, &both, 21.5, false).unwrap();
        assert_eq!(w, vec![0x0000, 0xAC41]);
        assert_eq!(decode_number(ValueType::F32, &both, &w), Some(21.5));
    }

    #[test]
    fn scaled_and_signed_integers() {
        let l = Layout {
            scale: 0.1,
            ..Layout::default()
        };
        assert_eq!(
            encode_number(ValueType::I16, &l, -21.5, false).unwrap(),
            vec![(-215i16) as u16]
        );
        let v = decode_number(ValueType::I16, &l, &[(-215i16) as u16]).unwrap();
        assert!((v + 21.5).abs() < 1e-9);
        assert_eq!(
            encode_number(ValueType::I32, &Layout::default(), -2.0, false).unwrap(),
            vec![0xFFFF, 0xFFFE]
        );
        assert!(matches!(
            encode_number(ValueType::U16, &Layout::default(), 70000.0, false),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert_eq!(
            encode_number(ValueType::U16, &Layout::default(), 70000.0, true).unwrap(),
            vec![0xFFFF]
        );
        assert_eq!(
            decode_number(ValueType::U64, &Layout::default(), &[0, 0, 1, 2]),
            Some(65538.0)
        );
        assert_eq!(
            decode_number(ValueType::U32, &Layout::default(), &[1]),
            None
        );
    }

    #[test]
    fn strings() {
        assert_eq!(
            encode_string("ABC", 3, false).unwrap(),
            vec![0x4142, 0x4300, 0]
        );
        assert_eq!(encode_string("AB", 1, true).unwrap(), vec![0x4241]);
        assert!(encode_string("ABC", 1, false).is_none());
    }

    #[test]
    fn dynamics_step() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let b = (0.0, 65535.0);
        let ramp = Dynamics::Ramp {
            step: 2.0,
            min: 10.0,
            max: 15.0,
        };
        let mut v = 10.0;
        let mut seen = vec![];
        for _ in 0..4 {
            v = ramp.next(v, b, &mut rng);
            seen.push(v);
        }
        assert_eq!(seen, vec![12.0, 14.0, 10.0, 12.0]);
        let down = Dynamics::Ramp {
            step: -5.0,
            min: 0.0,
            max: 9.0,
        };
        assert_eq!(down.next(3.0, b, &mut rng), 9.0);

        let walk = Dynamics::RandomWalk {
            step: 1.0,
            min: 0.0,
            max: 3.0,
        };
        let mut v = 1.5;
        for _ in 0..1000 {
            let n = walk.next(v, b, &mut rng);
            assert!((n - v).abs() <= 1.0 + 1e-9 && (0.0..=3.0).contains(&n));
            v = n;
        }

        let counter = Dynamics::Counter { step: 1.0 };
        assert_eq!(counter.next(5.0, b, &mut rng), 6.0);
        assert_eq!(counter.next(65535.0, b, &mut rng), 0.0);
        let c3 = Dynamics::Counter { step: 3.0 };
        assert_eq!(c3.next(65534.0, b, &mut rng), 1.0);
        assert_eq!(Dynamics::Toggle.next(0.0, b, &mut rng), 1.0);
        assert_eq!(Dynamics::Toggle.next(1.0, b, &mut rng), 0.0);
    }

    #[test]
    fn dynamics_validation() {
        assert!(
            Dynamics::Ramp {
                step: 1.0,
                min: 5.0,
                max: 5.0
            }
            .validate()
            .is_err()
        );
        assert!(Dynamics::Counter { step: 0.0 }.validate().is_err());
        assert!(Dynamics::Toggle.validate().is_ok());
    }
}
