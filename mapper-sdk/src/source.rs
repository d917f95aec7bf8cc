//! Where profiles come from.
//!
//! A [`FileSource`] watches the *directory* of the mounted ConfigMap (the kubelet swaps
//! a `..data` symlink, so the file's inode changes), debounces bursts of events, re-reads
//! the file, and publishes its text when it changed. It also re-reads periodically and
//! whenever it is hinted (a membership update), because events can be missed and the
//! ConfigMap lands after edgecore's MQTT messages
//! (docs/kubeedge-contract.md#quirk-the-configmap-lags-behind-mqtt). A missing or
//! unreadable file keeps the last good profile running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A profile text as read from its source (an `Arc<String>`, so that a text of megabytes
/// is never copied on its way to the runtime).
pub type ProfileText = Arc<String>;

/// The SHA-256 digest of a profile text: how sources tell a changed profile from the
/// same one re-read, without keeping a copy of the text (profiles of a thousand
/// devices run to megabytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `text`.
    pub fn of(text: &str) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }
}

/// Watches a profile file.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The profile file, e.g. `/opt/kubeedge/deviceProfile.json`.
    pub path: PathBuf,
    /// Quiet time after the last file event before re-reading.
    pub debounce: Duration,
    /// Re-read at least this often.
    pub recheck: Duration,
}

impl FileSource {
    /// A source for `path` with a 300 ms debounce and a 30 s periodic re-check.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            debounce: Duration::from_millis(300),
            recheck: Duration::from_secs(30),
        }
    }

    /// Reads the file now.
    pub async fn read(&self) -> std::io::Result<ProfileText> {
        let bytes = tokio::fs::read(&self.path).await?;
        String::from_utf8(bytes)
            .map(Arc::new)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Watches until `cancel`, sending each new text on `tx`. `hint` triggers a re-read
    /// (and a few more over the next minute, while the ConfigMap catches up).
    pub async fn watch(
        self,
        tx: watch::Sender<Option<ProfileText>>,
        hint: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        let (ev_tx, mut ev_rx) = mpsc::channel::<()>(64);
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut watcher = None;
        let mut last = tx.borrow().as_deref().map(|t| Fingerprint::of(t));
        let mut recheck = tokio::time::interval(self.recheck);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hinted_rereads: Vec<tokio::time::Instant> = Vec::new();
        loop {
            if watcher.is_none() {
                watcher = start_watcher(&dir, ev_tx.clone());
            }
            let next_hint = hinted_rereads.iter().min().copied();
            tokio::select! {
                () = cancel.cancelled() => return,
                Some(()) = ev_rx.recv() => {
                    // Debounce: wait until events stop for a moment (at most 5 s).
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    loop {
                        let quiet = tokio::time::sleep(self.debounce);
                        tokio::select! {
                            () = quiet => break,
                            Some(()) = ev_rx.recv() => {
                                if tokio::time::Instant::now() >= deadline { break; }
                            }
                        }
                    }
                    debug!(path = %self.path.display(), "profile directory changed");
                }
                () = hint.notified() => {
                    let now = tokio::time::Instant::now();
                    hinted_rereads = [2u64, 10, 30, 60]
                        .iter()
                        .map(|s| now + Duration::from_secs(*s))
                        .collect();
                    debug!("re-reading the profile on a membership hint");
                }
                () = async {
                    match next_hint {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = tokio::time::Instant::now();
                    hinted_rereads.retain(|t| *t > now);
                }
                _ = recheck.tick() => {
                    if watcher.is_none() {
                        watcher = start_watcher(&dir, ev_tx.clone());
                    }
                }
            }
            match self.read().await {
                Ok(text) => {
                    let print = Fingerprint::of(&text);
                    if last != Some(print) {
                        info!(path = %self.path.display(), bytes = text.len(), "profile changed");
                        last = Some(print);
                        if tx.send(Some(text)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    warn!(path = %self.path.display(), error = %e, "cannot read the profile; keeping the last one")
                }
            }
        }
    }
}

/// Whether a file event may mean new content. Opening, reading and closing do not: the
/// source's own read of the profile raises them, and taking them as changes made it
/// re-read the profile for ever, every debounce interval.
fn changes_content(kind: &notify::EventKind) -> bool {
    !matches!(kind, notify::EventKind::Access(_))
}

fn start_watcher(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|ev| changes_content(&ev.kind)) {
            let _ = tx.try_send(());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot create a file watcher; relying on periodic re-reads");
            return None;
        }
    };
    match w.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot watch the profile directory; relying on periodic re-reads");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn next(rx: &mut watch::Receiver<Option<ProfileText>>) -> String {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .unwrap()
            .unwrap();
        rx.borrow_and_update()
            .as_deref()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn reading_the_profile_is_not_a_change() {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::Any)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_content(&EventKind::Remove(RemoveKind::Any)));
        assert!(changes_content(&EventKind::Any));
    }

    #[tokio::test]
    async fn follows_kubelet_style_symlink_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Layout as the kubelet makes it: file -> ..data/file, ..data -> ..v1
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/deviceProfile.json"), "one").unwrap();
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/deviceProfile.json", root.join("deviceProfile.json"))
            .unwrap();

        let (tx, mut rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let mut src = FileSource::new(root.join("deviceProfile.json"));
        src.debounce = Duration::from_millis(50);
        let task = tokio::spawn(src.watch(tx, Arc::new(Notify::new()), cancel.clone()));
        assert_eq!(next(&mut rx).await, "one");

        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/deviceProfile.json"), "two").unwrap();
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert_eq!(next(&mut rx).await, "two");

        cancel.cancel();
        task.await.unwrap();
    }
}
