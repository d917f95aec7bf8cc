//! Characteristic value dynamics: engineering values that change over time
//! and their byte layout inside a characteristic value.

use rand::Rng;
use serde::Deserialize;

/// How an engineering value moves on each simulator tick.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dynamics {
    /// Add `step` (may be negative) each tick; wrap to `min` above `max`
    /// (to `max` below `min` for a negative step).
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
}

impl Dynamics {
    /// Bounds `(min, max)` of the movement.
    pub fn bounds(&self) -> (f64, f64) {
        match *self {
            Dynamics::Ramp { min, max, .. } | Dynamics::RandomWalk { min, max, .. } => (min, max),
        }
    }

    /// The next value after `current`.
    pub fn next<R: Rng + ?Sized>(&self, current: f64, rng: &mut R) -> f64 {
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
                let delta = if step > 0.0 {
                    rng.random_range(-step..=step)
                } else {
                    0.0
                };
                (current + delta).clamp(min, max)
            }
        }
    }
}

/// The binary layout of one number inside a characteristic value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Unsigned byte.
    U8,
    /// Signed byte.
    I8,
    /// Little-endian u16.
    U16Le,
    /// Big-endian u16.
    U16Be,
    /// Little-endian i16.
    I16Le,
    /// Big-endian i16.
    I16Be,
    /// Little-endian u32.
    U32Le,
    /// Big-endian u32.
    U32Be,
    /// Little-endian i32.
    I32Le,
    /// Big-endian i32.
    I32Be,
    /// Little-endian IEEE-754 f32.
    F32Le,
    /// Big-endian IEEE-754 f32.
    F32Be,
}

impl Encoding {
    /// Bytes taken in the value.
    pub fn width(self) -> usize {
        match self {
            Encoding::U8 | Encoding::I8 => 1,
            Encoding::U16Le | Encoding::U16Be | Encoding::I16Le | Encoding::I16Be => 2,
            _ => 4,
        }
    }

    /// The raw bytes for `raw` (already divided by the scale), saturating at the
    /// type's range; floats are stored as they are.
    pub fn encode(self, raw: f64) -> Vec<u8> {
        let r = raw.round();
        match self {
            Encoding::U8 => vec![r.clamp(0.0, u8::MAX.into()) as u8],
            Encoding::I8 => (r.clamp(i8::MIN.into(), i8::MAX.into()) as i8)
                .to_le_bytes()
                .to_vec(),
            Encoding::U16Le => (r.clamp(0.0, u16::MAX.into()) as u16)
                .to_le_bytes()
                .to_vec(),
            Encoding::U16Be => (r.clamp(0.0, u16::MAX.into()) as u16)
                .to_be_bytes()
                .to_vec(),
            Encoding::I16Le => (r.clamp(i16::MIN.into(), i16::MAX.into()) as i16)
                .to_le_bytes()
                .to_vec(),
            Encoding::I16Be => (r.clamp(i16::MIN.into(), i16::MAX.into()) as i16)
                .to_be_bytes()
                .to_vec(),
            Encoding::U32Le => (r.clamp(0.0, u32::MAX.into()) as u32)
                .to_le_bytes()
                .to_vec(),
            Encoding::U32Be => (r.clamp(0.0, u32::MAX.into()) as u32)
                .to_be_bytes()
                .to_vec(),
            Encoding::I32Le => (r.clamp(i32::MIN.into(), i32::MAX.into()) as i32)
                .to_le_bytes()
                .to_vec(),
            Encoding::I32Be => (r.clamp(i32::MIN.into(), i32::MAX.into()) as i32)
                .to_be_bytes()
                .to_vec(),
            Encoding::F32Le => (raw as f32).to_le_bytes().to_vec(),
            Encoding::F32Be => (raw as f32).to_be_bytes().to_vec(),
        }
    }
}

/// One engineering value placed inside a characteristic value.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Optional label (for logs and docs).
    pub name: Option<String>,
    /// Byte offset inside the characteristic value.
    pub offset: usize,
    /// Binary layout.
    pub encoding: Encoding,
    /// Engineering units per raw count: raw = value / scale.
    pub scale: f64,
    /// Initial engineering value.
    pub value: f64,
    /// How it moves; `None` keeps it constant.
    pub dynamics: Option<Dynamics>,
}

impl FieldSpec {
    /// Write `value` into `buf` at this field's offset (the buffer is grown when short).
    pub fn write_into(&self, value: f64, buf: &mut Vec<u8>) {
        let bytes = self.encoding.encode(value / self.scale);
        let end = self.offset + bytes.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[self.offset..end].copy_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ramp_wraps_and_walk_stays_in_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let ramp = Dynamics::Ramp {
            step: 1.0,
            min: 0.0,
            max: 2.0,
        };
        let seq: Vec<f64> = std::iter::successors(Some(0.0), |v| Some(ramp.next(*v, &mut rng)))
            .take(5)
            .collect();
        assert_eq!(seq, vec![0.0, 1.0, 2.0, 0.0, 1.0]);
        let walk = Dynamics::RandomWalk {
            step: 5.0,
            min: 10.0,
            max: 12.0,
        };
        let mut v = 11.0;
        for _ in 0..100 {
            v = walk.next(v, &mut rng);
            assert!((10.0..=12.0).contains(&v));
        }
    }

    #[test]
    fn encodes_scaled_little_endian_at_offset() {
        // CC2650 ambient temperature: raw = °C / 0.0078125, u16 LE at offset 2.
        let f = FieldSpec {
            name: None,
            offset: 2,
            encoding: Encoding::U16Le,
            scale: 0.0078125,
            value: 0.0,
            dynamics: None,
        };
        let mut buf = vec![0xAA, 0xBB];
        f.write_into(25.0, &mut buf);
        assert_eq!(buf, vec![0xAA, 0xBB, 0x80, 0x0C]);
        assert_eq!(Encoding::I16Be.encode(-2.0), vec![0xFF, 0xFE]);
        assert_eq!(Encoding::U8.encode(300.0), vec![0xFF]);
        assert_eq!(Encoding::F32Le.encode(1.5), 1.5f32.to_le_bytes().to_vec());
    }
}
