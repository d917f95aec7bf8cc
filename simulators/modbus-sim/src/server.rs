//! The TCP and RTU transports around [`Core`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::core::Core;
use crate::frame::transaction_time;
use crate::frame::{FrameLen, parse_mbap, rtu_crc_ok, rtu_frame, rtu_request_len, tcp_frame};

/// Silence after which a partial RTU frame is discarded (or an unknown
/// function code's frame is taken as complete). Generous because a pty on a
/// busy machine may deliver one write in pieces.
pub(crate) const RTU_FRAME_GAP: Duration = Duration::from_millis(50);

/// Options for an RTU line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtuOptions {
    /// Emulate the wire time of this baud rate: each reply is delayed by the
    /// time request and reply would take on a real line (11 bits per byte)
    /// plus two 3.5-character silences. `None` answers at once.
    pub wire_time_baud: Option<u32>,
}

/// Handing out per-connection kill switches; replaced by `drop_connections`.
#[derive(Debug)]
pub(crate) struct ConnKill {
    root: CancellationToken,
    current: std::sync::Mutex<CancellationToken>,
}

impl ConnKill {
    pub(crate) fn new(root: CancellationToken) -> Self {
        let current = std::sync::Mutex::new(root.child_token());
        Self { root, current }
    }

    fn token(&self) -> CancellationToken {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .child_token()
    }

    pub(crate) fn kill_all(&self) {
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cur.cancel();
        *cur = self.root.child_token();
    }
}

pub(crate) async fn accept_loop(
    core: Arc<Core>,
    listener: TcpListener,
    kill: Arc<ConnKill>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                debug!(?local, %peer, "connection accepted");
                core.stats.update(|s| s.connections += 1);
                let _ = stream.set_nodelay(true);
                let token = kill.token();
                let core = core.clone();
                let shutdown = cancel.clone();
                tracker.spawn(async move {
                    if let Err(e) = serve_tcp_conn(&core, stream, token, shutdown).await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning
                warn!(?local, error = %e, "accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    debug!(?local, "listener stopped");
}

async fn serve_tcp_conn(
    core: &Core,
    mut stream: TcpStream,
    kill: CancellationToken,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // a kill that is not a shutdown is a `drop_connections` call
    let dropped = || {
        if !shutdown.is_cancelled() {
            core.stats.update(|s| s.dropped_connections += 1);
        }
        Ok(())
    };
    let (r, mut w) = stream.split();
    let mut r = BufReader::new(r);
    let mut pdu = Vec::with_capacity(260);
    loop {
        let mut hdr = [0u8; 7];
        tokio::select! {
            () = kill.cancelled() => return dropped(),
            res = r.read_exact(&mut hdr) => {
                if let Err(e) = res {
                    return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(e) };
                }
            }
        }
        let Some(mbap) = parse_mbap(&hdr) else {
            core.stats.update(|s| s.malformed += 1);
            debug!("not a Modbus TCP header; closing the connection");
            return Ok(());
        };
        pdu.resize(mbap.pdu_len, 0);
        tokio::select! {
            () = kill.cancelled() => return dropped(),
            res = r.read_exact(&mut pdu) => { res?; }
        }
        let action = core.handle(mbap.unit, &pdu);
        if action.close {
            debug!(unit = mbap.unit, "fault: closing the connection");
            return Ok(());
        }
        let Some(reply) = action.reply else {
            continue;
        };
        if !action.delay.is_zero() {
            tokio::select! {
                () = kill.cancelled() => return dropped(),
                () = tokio::time::sleep(action.delay) => {}
            }
        }
        w.write_all(&tcp_frame(mbap.transaction, mbap.unit, &reply))
            .await?;
    }
}

/// Serves one RTU line until the peer goes away or `cancel` fires.
pub(crate) async fn serve_rtu_line<T>(
    core: Arc<Core>,
    mut io: T,
    opts: RtuOptions,
    cancel: CancellationToken,
    name: String,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    info!(line = %name, "rtu line serving");
    loop {
        // take every complete frame out of the buffer
        loop {
            match rtu_request_len(&buf) {
                FrameLen::Known(n) if buf.len() >= n => {
                    let frame: Vec<u8> = buf.drain(..n).collect();
                    if !rtu_crc_ok(&frame) {
                        // lost sync or line noise: drop everything buffered
                        core.stats.update(|s| s.crc_errors += 1);
                        buf.clear();
                        continue;
                    }
                    if !answer(&core, &mut io, &frame, opts, &cancel).await {
                        return;
                    }
                }
                _ => break,
            }
        }
        let read = if buf.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                r = io.read(&mut chunk) => Some(r),
            }
        } else {
            tokio::select! {
                () = cancel.cancelled() => return,
                r = tokio::time::timeout(RTU_FRAME_GAP, io.read(&mut chunk)) => r.ok(),
            }
        };
        match read {
            Some(Ok(0)) => {
                debug!(line = %name, "rtu peer closed");
                return;
            }
            Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Some(Err(e)) => {
                // a pty master reads EIO once the client end is closed
                debug!(line = %name, error = %e, "rtu line read failed; stopping");
                return;
            }
            None => {
                // silence: the buffered bytes are all there is
                let frame = std::mem::take(&mut buf);
                if rtu_request_len(&frame) == FrameLen::Unknown && rtu_crc_ok(&frame) {
                    if !answer(&core, &mut io, &frame, opts, &cancel).await {
                        return;
                    }
                } else {
                    core.stats.update(|s| s.malformed += 1);
                }
            }
        }
    }
}

/// Handles one CRC-checked RTU frame. `false` when the line is unusable.
async fn answer<T>(
    core: &Core,
    io: &mut T,
    frame: &[u8],
    opts: RtuOptions,
    cancel: &CancellationToken,
) -> bool
where
    T: AsyncWrite + Unpin,
{
    let unit = frame[0];
    let pdu = &frame[1..frame.len() - 2];
    if unit == 0 {
        core.broadcast(pdu);
        return true;
    }
    let action = core.handle(unit, pdu);
    let Some(reply) = action.reply else {
        return true;
    };
    let mut out = rtu_frame(unit, &reply);
    if action.corrupt_crc
        && let Some(last) = out.last_mut()
    {
        *last ^= 0xA5;
    }
    let wire = opts
        .wire_time_baud
        .map(|b| transaction_time(frame.len(), out.len(), b))
        .unwrap_or_default();
    let delay = action.delay + wire;
    if !delay.is_zero() {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
    }
    if let Err(e) = async {
        io.write_all(&out).await?;
        io.flush().await
    }
    .await
    {
        debug!(error = %e, "rtu write failed; stopping");
        return false;
    }
    true
}
