//! `ble-sim` binary (work in progress).

fn main() {}
