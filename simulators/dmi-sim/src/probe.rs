//! The `:authority` conformance probe (docs/kubeedge-dmi.md#quirk-edgecore-sends-a-socket-path-as-the-authority,
//! docs/kubeedge-dmi.md#rule-what-the-fake-edgecore-does): raw HTTP/2 written by hand,
//! because tonic and h2 refuse to *send* the invalid authorities edgecore's grpc-go
//! sends (`/etc/kubeedge/x.sock`, `%2Fetc%2Fkubeedge%2Fx.sock`).
//!
//! One connection: the client preface, an empty SETTINGS frame, one HEADERS frame whose
//! HPACK block uses only "literal without indexing, new name" fields with plain
//! (non-Huffman) strings, and one DATA frame with an empty gRPC message. The server's
//! answer tells whether it accepts the authority: response HEADERS, or RST_STREAM
//! (stock h2 resets a stream whose `:authority` does not parse: PROTOCOL_ERROR).

use std::time::Duration;

use dmi_api::transport::{Address, dial};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

/// The method the probe calls by default (any unary method would do).
pub const PROBE_PATH: &str = "/v1beta1.DeviceMapperService/GetDevice";
/// How long [`probe_authority`] waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const STREAM: u32 = 1;
/// Frames larger than this are not expected from a gRPC server answering one call.
const MAX_FRAME: usize = 1 << 24;

/// What the server did with the probe's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The server answered with response HEADERS: the authority was accepted.
    Answered {
        /// `:status`, when encoded as a static-table entry or a plain literal (h2
        /// encodes 200 as static entry 8).
        status: Option<u16>,
        /// The stream ended with a HEADERS frame (the gRPC trailers, or a
        /// trailers-only answer) before the deadline.
        trailers: bool,
    },
    /// The server reset the stream (`error_code` 1 = PROTOCOL_ERROR).
    Reset {
        /// The HTTP/2 error code.
        error_code: u32,
    },
    /// The server closed the connection with GOAWAY before answering.
    GoAway {
        /// The HTTP/2 error code.
        error_code: u32,
    },
    /// The connection closed without an answer.
    Closed,
}

impl ProbeOutcome {
    /// Whether the request reached the application (response HEADERS came back).
    pub fn accepted(&self) -> bool {
        matches!(self, Self::Answered { .. })
    }
}

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The socket could not be reached.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("probe I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The server sent something that is not HTTP/2.
    #[error("the server sent malformed HTTP/2: {0}")]
    Malformed(String),
}

/// Sends one gRPC request to [`PROBE_PATH`] at `address` with `authority` as the
/// `:authority`, and reports what came back (within [`PROBE_TIMEOUT`]).
pub async fn probe_authority(
    address: &Address,
    authority: &str,
) -> Result<ProbeOutcome, ProbeError> {
    probe_authority_with(address, authority, PROBE_PATH, PROBE_TIMEOUT).await
}

/// [`probe_authority`] with another method path and deadline.
pub async fn probe_authority_with(
    address: &Address,
    authority: &str,
    path: &str,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let mut stream = dial(address).await.map_err(|source| ProbeError::Connect {
        address: address.to_text(),
        source,
    })?;
    tokio::time::timeout(timeout, exchange(&mut stream, authority, path))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn exchange(
    stream: &mut UnixStream,
    authority: &str,
    path: &str,
) -> Result<ProbeOutcome, ProbeError> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    out.extend(frame(HEADERS, END_HEADERS, STREAM, &block));
    // One uncompressed gRPC message of length 0.
    out.extend(frame(DATA, END_STREAM, STREAM, &[0, 0, 0, 0, 0]));
    stream.write_all(&out).await?;

    let mut status = None;
    loop {
        let Some((kind, flags, id, payload)) = read_frame(stream).await? else {
            return Ok(match status {
                Some(status) => ProbeOutcome::Answered {
                    status,
                    trailers: false,
                },
                None => ProbeOutcome::Closed,
            });
        };
        match kind {
            SETTINGS if flags & ACK == 0 => stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
            PING if flags & ACK == 0 => stream.write_all(&frame(PING, ACK, 0, &payload)).await?,
            GOAWAY => {
                let error_code = be32(payload.get(4..8))?;
                return Ok(match status {
                    Some(status) => ProbeOutcome::Answered {
                        status,
                        trailers: false,
                    },
                    None => ProbeOutcome::GoAway { error_code },
                });
            }
            RST_STREAM if id == STREAM => {
                let error_code = be32(payload.get(0..4))?;
                return Ok(match status {
                    Some(status) => ProbeOutcome::Answered {
                        status,
                        trailers: false,
                    },
                    None => ProbeOutcome::Reset { error_code },
                });
            }
            HEADERS if id == STREAM => {
                let block = headers_fragment(flags, &payload)?;
                if status.is_none() {
                    status = Some(first_status(block));
                }
                if flags & END_STREAM != 0 {
                    return Ok(ProbeOutcome::Answered {
                        status: status.flatten(),
                        trailers: true,
                    });
                }
            }
            _ => {}
        }
    }
}

/// One frame: 24-bit length, type, flags, 31-bit stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541, section 5.1); `first` holds the bits
/// above the prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Literal header fields without indexing, new names, plain strings (RFC 7541, section 6.2.2).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn decode_int(block: &[u8], n: u32) -> Option<(usize, usize)> {
    let max = (1usize << n) - 1;
    let first = usize::from(*block.first()?) & max;
    if first < max {
        return Some((first, 1));
    }
    let mut value = max;
    let mut shift = 0u32;
    for (i, b) in block.iter().enumerate().skip(1) {
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    None
}

/// The `:status` of a response header block when its first field is a static-table
/// `:status` entry (indexes 8-14) or a literal with the `:status` name and a plain value.
fn first_status(block: &[u8]) -> Option<u16> {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let b = *block.first()?;
    if b & 0x80 != 0 {
        let (index, _) = decode_int(block, 7)?;
        return index.checked_sub(8).and_then(|i| STATIC.get(i)).copied();
    }
    // Literal with incremental indexing (01xxxxxx, 6-bit index) or without / never
    // indexed (000xxxxx / 0001xxxx, 4-bit index), name from the static table.
    let n = if b & 0x40 != 0 { 6 } else { 4 };
    let (index, used) = decode_int(block, n)?;
    if !(8..=14).contains(&index) {
        return None;
    }
    let rest = block.get(used..)?;
    let hb = *rest.first()?;
    if hb & 0x80 != 0 {
        return None; // Huffman-coded value: not decoded here.
    }
    let (len, used) = decode_int(rest, 7)?;
    let value = rest.get(used..used + len)?;
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The header block fragment of a HEADERS payload (padding and priority removed).
fn headers_fragment(flags: u8, payload: &[u8]) -> Result<&[u8], ProbeError> {
    let bad = || ProbeError::Malformed("HEADERS frame shorter than its padding".into());
    let mut body = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*body.first().ok_or_else(bad)?);
        body = &body[1..];
    }
    if flags & PRIORITY != 0 {
        body = body.get(5..).ok_or_else(bad)?;
    }
    body.get(..body.len().checked_sub(pad).ok_or_else(bad)?)
        .ok_or_else(bad)
}

fn be32(bytes: Option<&[u8]>) -> Result<u32, ProbeError> {
    bytes
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| ProbeError::Malformed("frame too short for its error code".into()))
}

/// Reads one frame; `None` at a clean end of the connection.
async fn read_frame(stream: &mut UnixStream) -> Result<Option<(u8, u8, u32, Vec<u8>)>, ProbeError> {
    let mut head = [0u8; 9];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if len > MAX_FRAME {
        return Err(ProbeError::Malformed(format!("a {len}-byte frame")));
    }
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(Some((head[3], head[4], id, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_round_trip() {
        for v in [0usize, 5, 126, 127, 128, 300, 70_000] {
            let mut out = Vec::new();
            hpack_int(&mut out, 0, 7, v);
            assert_eq!(decode_int(&out, 7), Some((v, out.len())), "{v}");
        }
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, vec![31, 154, 10]);
    }

    #[test]
    fn status_is_read_from_static_and_plain_literals() {
        assert_eq!(first_status(&[0x88]), Some(200));
        assert_eq!(first_status(&[0x8d]), Some(404));
        assert_eq!(first_status(&[0x82]), None);
        // Literal without indexing, name index 8, plain value "503".
        assert_eq!(first_status(&[0x08, 3, b'5', b'0', b'3']), Some(503));
        // Huffman value: unknown.
        assert_eq!(first_status(&[0x48, 0x82, 0x64, 0x02]), None);
    }

    #[test]
    fn frames_and_blocks_are_laid_out_as_rfc_9113() {
        let f = frame(HEADERS, END_HEADERS, 1, &[1, 2, 3]);
        assert_eq!(f, vec![0, 0, 3, 1, 4, 0, 0, 0, 1, 1, 2, 3]);
        let b = header_block(&[("te", "trailers")]);
        assert_eq!(b, [&[0u8, 2][..], b"te", &[8], b"trailers"].concat());
        assert_eq!(headers_fragment(PADDED, &[2, 9, 0, 0]).unwrap(), &[9]);
        assert!(headers_fragment(PADDED, &[5, 9]).is_err());
    }
}
