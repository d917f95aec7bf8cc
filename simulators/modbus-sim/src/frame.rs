//! Pure framing helpers: RTU CRC and frame lengths, Modbus TCP (MBAP) headers,
//! and the serial wire-time formula.

use std::time::Duration;

/// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF). Sent low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Builds an RTU frame: unit id, PDU, CRC (low byte first).
pub(crate) fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pdu.len() + 3);
    out.push(unit);
    out.extend_from_slice(pdu);
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Whether an RTU frame (including its two CRC bytes) carries a valid CRC.
pub(crate) fn rtu_crc_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(n) if n >= 2 => crc16(&frame[..n]).to_le_bytes() == [frame[n], frame[n + 1]],
        _ => false,
    }
}

/// How long the RTU request starting at `buf[0]` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameLen {
    /// At least this many bytes are needed to know more.
    Need(usize),
    /// The whole frame is this long (CRC included).
    Known(usize),
    /// Unknown function code: the frame ends at the next silence.
    Unknown,
}

/// Determines the length of a request frame from its first bytes.
pub(crate) fn rtu_request_len(buf: &[u8]) -> FrameLen {
    let Some(&fc) = buf.get(1) else {
        return FrameLen::Need(2);
    };
    match fc {
        0x01..=0x06 | 0x08 => FrameLen::Known(8),
        0x07 | 0x0B | 0x0C | 0x11 => FrameLen::Known(4),
        0x0F | 0x10 => match buf.get(6) {
            Some(&n) => FrameLen::Known(9 + usize::from(n)),
            None => FrameLen::Need(7),
        },
        0x16 => FrameLen::Known(10),
        0x17 => match buf.get(10) {
            Some(&n) => FrameLen::Known(13 + usize::from(n)),
            None => FrameLen::Need(11),
        },
        0x2B => FrameLen::Known(7),
        _ => FrameLen::Unknown,
    }
}

/// A decoded Modbus TCP (MBAP) header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mbap {
    pub(crate) transaction: u16,
    pub(crate) unit: u8,
    /// Length of the PDU that follows (function code included).
    pub(crate) pdu_len: usize,
}

/// Parses the 7-byte MBAP header; `None` when it is not a Modbus header
/// (protocol id not 0, or a length outside 2..=254 which no valid PDU has).
pub(crate) fn parse_mbap(h: &[u8; 7]) -> Option<Mbap> {
    let protocol = u16::from_be_bytes([h[2], h[3]]);
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if protocol != 0 || !(2..=254).contains(&len) {
        return None;
    }
    Some(Mbap {
        transaction: u16::from_be_bytes([h[0], h[1]]),
        unit: h[6],
        pdu_len: len - 1,
    })
}

/// Builds a Modbus TCP frame (MBAP header + PDU).
pub(crate) fn tcp_frame(transaction: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let len = u16::try_from(pdu.len() + 1).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(7 + pdu.len());
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

/// Time `bytes` take on a serial line at `baud` (11 bits per character:
/// start, 8 data, parity or second stop, stop).
pub fn wire_time(bytes: usize, baud: u32) -> Duration {
    if baud == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(bytes as f64 * 11.0 / f64::from(baud))
}

/// The 3.5-character inter-frame silence; fixed at 1.75 ms above 19200 baud.
pub fn frame_silence(baud: u32) -> Duration {
    if baud == 0 {
        Duration::ZERO
    } else if baud > 19_200 {
        Duration::from_micros(1750)
    } else {
        Duration::from_secs_f64(3.5 * 11.0 / f64::from(baud))
    }
}

/// Emulated duration of one RTU transaction: the request and the reply on
/// the wire, each followed by its inter-frame silence. The simulator delays
/// each reply by this amount (a pty delivers bytes instantly).
pub fn transaction_time(request_bytes: usize, reply_bytes: usize, baud: u32) -> Duration {
    wire_time(request_bytes + reply_bytes, baud) + frame_silence(baud) * 2
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_frame() {
        // 01 03 00 00 00 01 -> CRC 84 0A
        let f = rtu_frame(1, &[3, 0, 0, 0, 1]);
        assert_eq!(f, vec![1, 3, 0, 0, 0, 1, 0x84, 0x0A]);
        assert!(rtu_crc_ok(&f));
        let mut bad = f.clone();
        bad[7] ^= 0xFF;
        assert!(!rtu_crc_ok(&bad));
        assert!(!rtu_crc_ok(&[1, 2]));
    }

    #[test]
    fn request_lengths() {
        assert_eq!(rtu_request_len(&[1]), FrameLen::Need(2));
        assert_eq!(rtu_request_len(&[1, 3]), FrameLen::Known(8));
        assert_eq!(rtu_request_len(&[1, 0x10, 0, 0, 0]), FrameLen::Need(7));
        assert_eq!(
            rtu_request_len(&[1, 0x10, 0, 0, 0, 2, 4]),
            FrameLen::Known(13)
        );
        assert_eq!(rtu_request_len(&[1, 0x42]), FrameLen::Unknown);
    }

    #[test]
    fn mbap_roundtrip() {
        let f = tcp_frame(0x1234, 7, &[3, 0, 0, 0, 1]);
        let h: [u8; 7] = f[..7].try_into().unwrap();
        assert_eq!(
            parse_mbap(&h),
            Some(Mbap {
                transaction: 0x1234,
                unit: 7,
                pdu_len: 5
            })
        );
        assert_eq!(parse_mbap(&[0, 0, 0, 1, 0, 6, 1]), None);
        assert_eq!(parse_mbap(&[0, 0, 0, 0, 0, 1, 1]), None);
    }

    fn ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 10_000.0).round() / 10.0
    }

    #[test]
    fn wire_time_matches_testing_notes() {
        // FC03: request 8 bytes, reply 5 + 2N
        for (baud, n, expect) in [
            (9600, 1, 25.2),
            (9600, 10, 45.8),
            (9600, 125, 309.4),
            (115_200, 1, 4.9),
            (115_200, 10, 6.7),
            (115_200, 125, 28.6),
        ] {
            let got = ms(transaction_time(8, 5 + 2 * n, baud));
            assert!(
                (got - expect).abs() < 0.11,
                "{baud} N={n}: {got} != {expect}"
            );
        }
        assert_eq!(frame_silence(0), Duration::ZERO);
    }
}
