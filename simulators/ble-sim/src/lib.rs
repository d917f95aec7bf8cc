//! BLE simulator (work in progress).
