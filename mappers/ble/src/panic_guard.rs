//! Keeps a known panic in a dependency out of the log.
//!
//! bluez-async 0.9.0 (the newest; btleplug 0.13.5 uses it) wraps each D-Bus match rule in
//! a `MessageStream`. Dropping one spawns a tokio task that calls
//! `SyncConnection::remove_match(token).await.unwrap()`
//! (`bluez-async-0.9.0/src/messagestream.rs`, `Drop for MessageStream`). The dbus crate
//! (0.9, `nonblock.rs`) fails that call with `No match with that id found` when the local
//! filter is already gone, which happens when a matching signal is dispatched around the
//! drop: (a) the stream's receiver is dropped first, so the filter callback
//! (`msg_stream`: `sender.unbounded_send(msg).is_ok()`) returns false and the dispatcher
//! discards the filter before the spawned task runs; or (b) in the signal match-all mode
//! bluez-async turns on (`set_signal_match_mode(true)`), the dispatcher takes every matching
//! filter out of the list while it runs their callbacks, so a concurrent `remove_match` on
//! another worker thread does not find it. Every connect drops such a stream
//! (`connect_with_timeout` -> `await_service_discovery` subscribes to the device's
//! `PropertiesChanged` and drops the stream once `ServicesResolved` is true, just when
//! BlueZ emits more property changes for the device), and so does every link whose
//! notification stream ends.
//!
//! The panic unwinds only that detached task: no device worker, lock or connection is
//! affected (the filter is already removed; the bus-side match rule stays until the
//! D-Bus connection closes). [`install`] logs it at debug level instead of printing a
//! panic; every other panic goes to the previous hook unchanged. With `panic = "abort"` it
//! would end the process, so this crate refuses to build that way.

#[cfg(panic = "abort")]
compile_error!(
    "ble-mapper must unwind: bluez-async 0.9.0 panics in a background task (see panic_guard.rs)"
);

use std::panic::PanicHookInfo;

/// Whether a panic is bluez-async's failed match-rule removal (see the module docs).
pub fn is_bluez_async_match_removal(file: &str, message: &str) -> bool {
    let file = file.replace('\\', "/");
    file.contains("bluez-async-")
        && file.ends_with("src/messagestream.rs")
        && message.contains("No match with that id found")
}

fn message<'a>(info: &'a PanicHookInfo<'_>) -> &'a str {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

/// Installs a panic hook that logs bluez-async's failed match-rule removal at debug level
/// and hands every other panic to the hook installed before (the default one prints it).
pub fn install() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or("");
        if is_bluez_async_match_removal(file, message(info)) {
            tracing::debug!(
                location = %file,
                "bluez-async could not remove a D-Bus match rule that was already gone (a known bluez-async 0.9.0 bug in a background task; harmless)"
            );
            return;
        }
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_known_panic_is_recognised() {
        let file = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bluez-async-0.9.0/src/messagestream.rs";
        let msg = "called `Result::unwrap()` on an `Err` value: D-Bus error: No match with that id found (org.freedesktop.DBus.Error.Failed)";
        assert!(is_bluez_async_match_removal(file, msg));
        assert!(is_bluez_async_match_removal(&file.replace('/', "\\"), msg));
        assert!(!is_bluez_async_match_removal(file, "index out of bounds"));
        assert!(!is_bluez_async_match_removal(
            "mappers/ble/src/btle.rs",
            msg
        ));
        assert!(!is_bluez_async_match_removal(
            "/x/bluez-async-0.9.0/src/lib.rs",
            msg
        ));
    }
}
