//! Registration with edgecore: `MapperRegister(withData)` once per protocol, after the
//! server listens; retried with backoff (never fatal); repeated when edgecore restarts
//! (its socket file changes identity or change time — the inode number alone is often
//! reused — or calls to it failed and work again) and periodically.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use dmi_api::transport::{Address, connect};
use dmi_api::v1beta1::device_manager_service_client::DeviceManagerServiceClient;
use dmi_api::v1beta1::{MapperInfo, MapperRegisterRequest, MapperRegisterResponse};

use super::Shared;
use crate::runtime::Backoff;

/// The identity of a socket file: device, inode and change time.
fn identity(path: &std::path::Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

pub(super) fn is_limited(status: &tonic::Status) -> bool {
    status.message().contains("too many request")
}

async fn register_once(
    shared: &Shared,
    protocol: &str,
    address: &str,
    version: &str,
) -> Result<MapperRegisterResponse, tonic::Status> {
    let s = &shared.settings;
    let edgecore = Address::Path(s.edgecore_socket_file());
    let name = match (&s.name, s.protocols.len()) {
        (Some(n), 1) => n.clone(),
        (Some(n), _) => format!("{n}-{protocol}"),
        (None, _) => format!("rust-{protocol}-mapper"),
    };
    let request = MapperRegisterRequest {
        with_data: true,
        mapper: Some(MapperInfo {
            name,
            version: version.to_owned(),
            api_version: "v1beta1".into(),
            protocol: protocol.to_owned(),
            address: address.as_bytes().to_vec(),
            state: "ok".into(),
        }),
    };
    let call = async {
        let channel = connect(&edgecore, "localhost").await.map_err(|e| {
            tonic::Status::unavailable(format!("cannot reach edgecore at {edgecore}: {e}"))
        })?;
        let mut client = DeviceManagerServiceClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(64 << 20);
        client
            .mapper_register(request)
            .await
            .map(tonic::Response::into_inner)
    };
    match tokio::time::timeout(s.register_timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "edgecore did not answer MapperRegister within {:?}",
            s.register_timeout
        ))),
    }
}

/// Registers every protocol, retrying each until it works or `cancel`.
async fn register_all(
    shared: &Shared,
    address: &str,
    version: &str,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let socket = shared.settings.edgecore_socket_file();
    let mut said: Option<(String, tokio::time::Instant)> = None;
    for protocol in &shared.settings.protocols {
        loop {
            if !shared.take_token(cancel).await {
                return false;
            }
            match register_once(shared, protocol, address, version).await {
                Ok(resp) => {
                    let devices = resp.device_list.len();
                    let summary =
                        shared
                            .lock_store()
                            .apply_list(protocol, resp.device_list, resp.model_list);
                    for e in &summary.errors {
                        tracing::error!("dmi: {e}");
                    }
                    if !summary.removed.is_empty() {
                        info!(devices = ?summary.removed, "dmi: devices no longer listed by edgecore; removed");
                    }
                    if !summary.absent.is_empty() {
                        info!(devices = ?summary.absent, "dmi: devices missing from edgecore's list; kept until they are missing again");
                    }
                    info!(protocol = %protocol, address = %address, devices, changed = summary.upserted, "dmi: registered with edgecore");
                    shared.changed.notify_one();
                    backoff.reset();
                    break;
                }
                Err(status) => {
                    if is_limited(&status) {
                        shared.drain_budget();
                    }
                    let wait = backoff.next_delay();
                    // The same failure is logged once a minute, not at every retry.
                    let now = tokio::time::Instant::now();
                    let repeat = said.as_ref().is_some_and(|(m, at)| {
                        m == status.message() && now.duration_since(*at) < Duration::from_secs(60)
                    });
                    if repeat {
                        tracing::debug!(protocol = %protocol, retry_in = ?wait, "dmi: MapperRegister failed again: {}", status.message());
                    } else {
                        warn!(protocol = %protocol, code = ?status.code(), retry_in = ?wait, "dmi: MapperRegister failed: {} (retrying until it works)", status.message());
                        said = Some((status.message().to_owned(), now));
                    }
                    // A socket that appears or is re-created (edgecore started) ends the
                    // wait at once.
                    let before = identity(&socket);
                    let deadline = tokio::time::sleep(wait);
                    tokio::pin!(deadline);
                    let mut poll = tokio::time::interval(Duration::from_millis(200));
                    loop {
                        tokio::select! {
                            () = cancel.cancelled() => return false,
                            () = &mut deadline => break,
                            _ = poll.tick() => {
                                let now = identity(&socket);
                                if now.is_some() && now != before {
                                    backoff.reset();
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    true
}

pub(super) async fn run(
    shared: Arc<Shared>,
    address: String,
    version: String,
    cancel: CancellationToken,
) {
    let socket = shared.settings.edgecore_socket_file();
    loop {
        if !register_all(&shared, &address, &version, &cancel).await {
            return;
        }
        shared.epoch.send_modify(|e| *e += 1);
        let seen = identity(&socket);
        let period = tokio::time::sleep(shared.settings.reregister);
        tokio::pin!(period);
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = &mut period => {
                    tracing::debug!("dmi: periodic re-registration");
                    break;
                }
                () = shared.edgecore_back.notified() => {
                    info!("dmi: edgecore answers again; registering again");
                    break;
                }
                _ = poll.tick() => {
                    let now = identity(&socket);
                    if now.is_some() && now != seen {
                        info!(socket = %socket.display(), "dmi: edgecore's socket was re-created (edgecore restarted); registering again");
                        break;
                    }
                }
            }
        }
    }
}
