//! `ble-mapper`: the KubeEdge device mapper for Bluetooth LE devices.
//!
//! Everything but the driver comes from `mapper-sdk`: flags (`--help`), the profile, MQTT,
//! scheduling and reconnects. The driver talks to BlueZ over the D-Bus system bus
//! (`DBUS_SYSTEM_BUS_ADDRESS` points elsewhere, e.g. at a simulator).

fn main() -> std::process::ExitCode {
    ble_mapper::panic_guard::install();
    mapper_sdk::main_with(ble_mapper::BleDriver::default(), mapper_sdk::about!())
}
