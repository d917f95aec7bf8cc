//! Pure Modbus PDU handling: request decoding, response encoding, exceptions.
//!
//! Nothing here does I/O; the TCP and RTU servers frame these PDUs.

/// Exception code 0x01: the function code is not supported.
pub const ILLEGAL_FUNCTION: u8 = 0x01;
/// Exception code 0x02: the address (or address range) is not mapped.
pub const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
/// Exception code 0x03: a quantity, byte count or value in the request is invalid.
pub const ILLEGAL_DATA_VALUE: u8 = 0x03;
/// Exception code 0x04: unrecoverable error in the server device.
pub const SERVER_DEVICE_FAILURE: u8 = 0x04;
/// Exception code 0x06: the server is busy.
pub const SERVER_DEVICE_BUSY: u8 = 0x06;

/// Maximum quantity of bits in one read (FC1/FC2).
pub(crate) const MAX_READ_BITS: u16 = 2000;
/// Maximum quantity of registers in one read (FC3/FC4, read part of FC23).
pub(crate) const MAX_READ_REGISTERS: u16 = 125;
/// Maximum quantity of coils in one FC15 write.
pub(crate) const MAX_WRITE_BITS: u16 = 1968;
/// Maximum quantity of registers in one FC16 write.
pub(crate) const MAX_WRITE_REGISTERS: u16 = 123;
/// Maximum quantity of registers in the write part of FC23.
pub(crate) const MAX_RW_WRITE_REGISTERS: u16 = 121;

/// A decoded request PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    ReadCoils {
        addr: u16,
        qty: u16,
    },
    ReadDiscreteInputs {
        addr: u16,
        qty: u16,
    },
    ReadHoldingRegisters {
        addr: u16,
        qty: u16,
    },
    ReadInputRegisters {
        addr: u16,
        qty: u16,
    },
    WriteSingleCoil {
        addr: u16,
        value: bool,
    },
    WriteSingleRegister {
        addr: u16,
        value: u16,
    },
    WriteMultipleCoils {
        addr: u16,
        values: Vec<bool>,
    },
    WriteMultipleRegisters {
        addr: u16,
        values: Vec<u16>,
    },
    ReadWriteMultipleRegisters {
        read_addr: u16,
        read_qty: u16,
        write_addr: u16,
        values: Vec<u16>,
    },
}

/// A response to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    ReadBits {
        fc: u8,
        bits: Vec<bool>,
    },
    ReadRegisters {
        fc: u8,
        words: Vec<u16>,
    },
    /// FC5/FC6 echo, FC15/FC16 (addr, qty).
    Echo {
        fc: u8,
        a: u16,
        b: u16,
    },
}

impl Request {
    /// The function code of this request.
    pub(crate) fn function_code(&self) -> u8 {
        match self {
            Request::ReadCoils { .. } => 0x01,
            Request::ReadDiscreteInputs { .. } => 0x02,
            Request::ReadHoldingRegisters { .. } => 0x03,
            Request::ReadInputRegisters { .. } => 0x04,
            Request::WriteSingleCoil { .. } => 0x05,
            Request::WriteSingleRegister { .. } => 0x06,
            Request::WriteMultipleCoils { .. } => 0x0F,
            Request::WriteMultipleRegisters { .. } => 0x10,
            Request::ReadWriteMultipleRegisters { .. } => 0x17,
        }
    }

    /// Whether this request changes server state (used for RTU broadcast).
    pub(crate) fn is_write(&self) -> bool {
        matches!(
            self,
            Request::WriteSingleCoil { .. }
                | Request::WriteSingleRegister { .. }
                | Request::WriteMultipleCoils { .. }
                | Request::WriteMultipleRegisters { .. }
                | Request::ReadWriteMultipleRegisters { .. }
        )
    }
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn check_qty(qty: u16, max: u16) -> Result<(), u8> {
    if qty == 0 || qty > max {
        Err(ILLEGAL_DATA_VALUE)
    } else {
        Ok(())
    }
}

/// Decodes a request PDU (function code + data).
///
/// Returns the exception code to send back when the request is not acceptable.
/// Unknown function codes give [`ILLEGAL_FUNCTION`], malformed bodies
/// [`ILLEGAL_DATA_VALUE`].
pub(crate) fn decode_request(pdu: &[u8]) -> Result<Request, u8> {
    let Some((&fc, data)) = pdu.split_first() else {
        return Err(ILLEGAL_FUNCTION);
    };
    let word = |i: usize| be16(data, i).ok_or(ILLEGAL_DATA_VALUE);
    match fc {
        0x01..=0x04 => {
            if data.len() != 4 {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let addr = word(0)?;
            let qty = word(2)?;
            let max = if fc <= 0x02 {
                MAX_READ_BITS
            } else {
                MAX_READ_REGISTERS
            };
            check_qty(qty, max)?;
            Ok(match fc {
                0x01 => Request::ReadCoils { addr, qty },
                0x02 => Request::ReadDiscreteInputs { addr, qty },
                0x03 => Request::ReadHoldingRegisters { addr, qty },
                _ => Request::ReadInputRegisters { addr, qty },
            })
        }
        0x05 => {
            if data.len() != 4 {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let addr = word(0)?;
            let value = match word(2)? {
                0xFF00 => true,
                0x0000 => false,
                _ => return Err(ILLEGAL_DATA_VALUE),
            };
            Ok(Request::WriteSingleCoil { addr, value })
        }
        0x06 => {
            if data.len() != 4 {
                return Err(ILLEGAL_DATA_VALUE);
            }
            Ok(Request::WriteSingleRegister {
                addr: word(0)?,
                value: word(2)?,
            })
        }
        0x0F => {
            let addr = word(0)?;
            let qty = word(2)?;
            check_qty(qty, MAX_WRITE_BITS)?;
            let count = usize::from(*data.get(4).ok_or(ILLEGAL_DATA_VALUE)?);
            let bytes = data.get(5..).ok_or(ILLEGAL_DATA_VALUE)?;
            if count != usize::from(qty).div_ceil(8) || bytes.len() != count {
                return Err(ILLEGAL_DATA_VALUE);
            }
            Ok(Request::WriteMultipleCoils {
                addr,
                values: unpack_bits(bytes, qty),
            })
        }
        0x10 => {
            let addr = word(0)?;
            let qty = word(2)?;
            check_qty(qty, MAX_WRITE_REGISTERS)?;
            let count = usize::from(*data.get(4).ok_or(ILLEGAL_DATA_VALUE)?);
            let bytes = data.get(5..).ok_or(ILLEGAL_DATA_VALUE)?;
            if count != usize::from(qty) * 2 || bytes.len() != count {
                return Err(ILLEGAL_DATA_VALUE);
            }
            Ok(Request::WriteMultipleRegisters {
                addr,
                values: unpack_words(bytes),
            })
        }
        0x17 => {
            let read_addr = word(0)?;
            let read_qty = word(2)?;
            let write_addr = word(4)?;
            let write_qty = word(6)?;
            check_qty(read_qty, MAX_READ_REGISTERS)?;
            check_qty(write_qty, MAX_RW_WRITE_REGISTERS)?;
            let count = usize::from(*data.get(8).ok_or(ILLEGAL_DATA_VALUE)?);
            let bytes = data.get(9..).ok_or(ILLEGAL_DATA_VALUE)?;
            if count != usize::from(write_qty) * 2 || bytes.len() != count {
                return Err(ILLEGAL_DATA_VALUE);
            }
            Ok(Request::ReadWriteMultipleRegisters {
                read_addr,
                read_qty,
                write_addr,
                values: unpack_words(bytes),
            })
        }
        _ => Err(ILLEGAL_FUNCTION),
    }
}

fn unpack_bits(bytes: &[u8], qty: u16) -> Vec<bool> {
    (0..usize::from(qty))
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

fn unpack_words(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Packs bits LSB first, as Modbus does for FC1/FC2/FC15.
pub(crate) fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
        out[i / 8] |= 1 << (i % 8);
    }
    out
}

/// Encodes a response PDU.
pub(crate) fn encode_response(resp: &Response) -> Vec<u8> {
    match resp {
        Response::ReadBits { fc, bits } => {
            let packed = pack_bits(bits);
            let mut out = Vec::with_capacity(2 + packed.len());
            out.push(*fc);
            out.push(u8::try_from(packed.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&packed);
            out
        }
        Response::ReadRegisters { fc, words } => {
            let mut out = Vec::with_capacity(2 + words.len() * 2);
            out.push(*fc);
            out.push(u8::try_from(words.len() * 2).unwrap_or(u8::MAX));
            for w in words {
                out.extend_from_slice(&w.to_be_bytes());
            }
            out
        }
        Response::Echo { fc, a, b } => {
            let mut out = Vec::with_capacity(5);
            out.push(*fc);
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&b.to_be_bytes());
            out
        }
    }
}

/// Encodes an exception response PDU.
pub(crate) fn encode_exception(fc: u8, code: u8) -> Vec<u8> {
    vec![fc | 0x80, code]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_reads() {
        assert_eq!(
            decode_request(&[0x03, 0x00, 0x10, 0x00, 0x02]),
            Ok(Request::ReadHoldingRegisters { addr: 16, qty: 2 })
        );
        assert_eq!(
            decode_request(&[0x01, 0x00, 0x00, 0x07, 0xD0]),
            Ok(Request::ReadCoils { addr: 0, qty: 2000 })
        );
        assert_eq!(
            decode_request(&[0x01, 0x00, 0x00, 0x07, 0xD1]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            decode_request(&[0x04, 0x00, 0x00, 0x00, 0x00]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(decode_request(&[0x03, 0x00]), Err(ILLEGAL_DATA_VALUE));
        assert_eq!(decode_request(&[]), Err(ILLEGAL_FUNCTION));
        assert_eq!(decode_request(&[0x2B, 0x0E, 1, 0]), Err(ILLEGAL_FUNCTION));
    }

    #[test]
    fn decodes_writes() {
        assert_eq!(
            decode_request(&[0x05, 0x00, 0x01, 0xFF, 0x00]),
            Ok(Request::WriteSingleCoil {
                addr: 1,
                value: true
            })
        );
        assert_eq!(
            decode_request(&[0x05, 0x00, 0x01, 0x12, 0x34]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            decode_request(&[0x0F, 0x00, 0x00, 0x00, 0x0A, 0x02, 0b0000_0101, 0b10]),
            Ok(Request::WriteMultipleCoils {
                addr: 0,
                values: vec![
                    true, false, true, false, false, false, false, false, false, true
                ]
            })
        );
        assert_eq!(
            decode_request(&[0x10, 0x00, 0x02, 0x00, 0x02, 0x04, 0, 1, 0, 2]),
            Ok(Request::WriteMultipleRegisters {
                addr: 2,
                values: vec![1, 2]
            })
        );
        // byte count disagrees with quantity
        assert_eq!(
            decode_request(&[0x10, 0x00, 0x02, 0x00, 0x02, 0x02, 0, 1]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            decode_request(&[0x17, 0, 1, 0, 2, 0, 5, 0, 1, 2, 0xAB, 0xCD]),
            Ok(Request::ReadWriteMultipleRegisters {
                read_addr: 1,
                read_qty: 2,
                write_addr: 5,
                values: vec![0xABCD]
            })
        );
    }

    #[test]
    fn encodes_responses() {
        let bits = vec![true, false, true, true, false, false, false, false, true];
        assert_eq!(
            encode_response(&Response::ReadBits { fc: 1, bits }),
            vec![1, 2, 0b0000_1101, 0b1]
        );
        assert_eq!(
            encode_response(&Response::ReadRegisters {
                fc: 3,
                words: vec![0x1234, 5]
            }),
            vec![3, 4, 0x12, 0x34, 0, 5]
        );
        assert_eq!(
            encode_response(&Response::Echo { fc: 6, a: 1, b: 2 }),
            vec![6, 0, 1, 0, 2]
        );
        assert_eq!(encode_exception(3, 2), vec![0x83, 2]);
    }
}
