//! BLE mapper (work in progress).
