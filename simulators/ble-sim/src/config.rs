//! The device file format (YAML) and its validation.
//!
//! serde reads the file into `Raw*` mirror structs (unknown fields are
//! errors, so typos are caught), then [`SimConfig::from_yaml`] resolves them
//! into validated specs. Every error names the file, the adapter or device
//! and the field. See the crate documentation for the format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::faults::DeviceFaultConfig;
use crate::ids::{BleUuid, MacAddr};
use crate::value::{Dynamics, Encoding, FieldSpec};

/// Default dynamics tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1000);
/// Modalias of the default adapters (a Linux Foundation USB id, as BlueZ reports).
pub const DEFAULT_MODALIAS: &str = "usb:v1D6Bp0246d0542";

/// A whole simulation: adapters and the peripherals around them.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Adapters in the order they are exported (BlueZ's order is not stable;
    /// clients should pick by name).
    pub adapters: Vec<AdapterSpec>,
    /// Simulated peripherals.
    pub devices: Vec<DeviceSpec>,
    /// Period of value dynamics (and of notifications of changing values).
    pub tick: Duration,
    /// Seed for random walks; `None` seeds from the OS.
    pub seed: Option<u64>,
}

/// One local adapter (`/org/bluez/<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSpec {
    /// `hci0`, `hci1`, ...
    pub name: String,
    /// Adapter address.
    pub address: MacAddr,
    /// `Alias` (and `Name`) property.
    pub alias: String,
    /// `Modalias` property (btleplug requires it to parse).
    pub modalias: String,
    /// Initial `Powered`.
    pub powered: bool,
}

/// When a peripheral's `Device1` object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Appear {
    /// Exported when the simulator starts (a device BlueZ already knows).
    Always,
    /// Exported (InterfacesAdded) when discovery starts on its adapter.
    #[default]
    OnDiscovery,
}

/// `AddressType` of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressType {
    /// Public address.
    #[default]
    Public,
    /// Random address.
    Random,
}

impl AddressType {
    /// BlueZ's string.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::Public => "public",
            AddressType::Random => "random",
        }
    }
}

/// A simulated peripheral.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    /// Advertised name (`Name`); `None` leaves the property out, like BlueZ.
    pub name: Option<String>,
    /// Device address.
    pub address: MacAddr,
    /// `AddressType`.
    pub address_type: AddressType,
    /// Name of the adapter that sees it.
    pub adapter: String,
    /// When its object appears.
    pub appear: Appear,
    /// `RSSI`; `None` leaves the property out.
    pub rssi: Option<i16>,
    /// `ManufacturerData` (company id → bytes); empty leaves the property out.
    pub manufacturer_data: BTreeMap<u16, Vec<u8>>,
    /// GATT services, exported on connect.
    pub services: Vec<ServiceSpec>,
    /// Faults active from the start.
    pub faults: FaultSpec,
}

/// A GATT service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Service UUID.
    pub uuid: BleUuid,
    /// `Primary`.
    pub primary: bool,
    /// Characteristics.
    pub characteristics: Vec<CharSpec>,
}

/// A characteristic property flag, limited to BlueZ's flag strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CharFlag {
    /// `read`.
    Read,
    /// `write` (write request, with response).
    Write,
    /// `write-without-response` (write command).
    WriteWithoutResponse,
    /// `notify`.
    Notify,
    /// `indicate`.
    Indicate,
}

impl CharFlag {
    /// BlueZ's string for the flag.
    pub fn as_str(self) -> &'static str {
        match self {
            CharFlag::Read => "read",
            CharFlag::Write => "write",
            CharFlag::WriteWithoutResponse => "write-without-response",
            CharFlag::Notify => "notify",
            CharFlag::Indicate => "indicate",
        }
    }
}

/// A GATT characteristic.
#[derive(Debug, Clone, PartialEq)]
pub struct CharSpec {
    /// Characteristic UUID.
    pub uuid: BleUuid,
    /// Flags (no duplicates).
    pub flags: Vec<CharFlag>,
    /// Initial value (fields are written over it).
    pub value: Vec<u8>,
    /// Engineering values placed inside the value.
    pub fields: Vec<FieldSpec>,
    /// Measurements only while another characteristic of the device holds a value.
    pub enabled_by: Option<EnableRule>,
    /// Descriptors (a CCCD 0x2902 is added for notify/indicate when missing).
    pub descriptors: Vec<DescSpec>,
    /// `ReadValue` fails from the start.
    pub read_error: Option<ReadErrorKind>,
}

impl CharSpec {
    /// Whether the characteristic has `flag`.
    pub fn has(&self, flag: CharFlag) -> bool {
        self.flags.contains(&flag)
    }
}

/// "This characteristic measures only while `characteristic` holds `value`"
/// (the TI SensorTag configuration characteristics).
#[derive(Debug, Clone, PartialEq)]
pub struct EnableRule {
    /// The configuration characteristic (same device).
    pub characteristic: BleUuid,
    /// The value that enables measurements.
    pub value: Vec<u8>,
}

/// A GATT descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct DescSpec {
    /// Descriptor UUID.
    pub uuid: BleUuid,
    /// Value returned by `ReadValue`.
    pub value: Vec<u8>,
}

/// The D-Bus error a failing `ReadValue` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadErrorKind {
    /// `org.bluez.Error.Failed`.
    Failed,
    /// `org.bluez.Error.NotPermitted`.
    NotPermitted,
}

/// Faults of one device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    /// `Connect` fails with `org.bluez.Error.Failed`.
    pub refuse_connect: bool,
    /// Delay between exporting the GATT objects and `ServicesResolved = true`.
    pub resolve_delay: Duration,
    /// Every `ReadValue` of the device fails.
    pub read_error: Option<ReadErrorKind>,
    /// No notifications are sent (`Notifying` stays true).
    pub mute_notifications: bool,
    /// The device is out of range (runtime only, [`crate::Fault::OutOfRange`]).
    pub out_of_range: bool,
}

// ---------------------------------------------------------------- raw mirror

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    adapters: Vec<RawAdapter>,
    #[serde(default)]
    tick_ms: Option<u64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    devices: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdapter {
    name: String,
    address: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    modalias: Option<String>,
    #[serde(default)]
    powered: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    #[serde(default)]
    name: Option<String>,
    address: String,
    #[serde(default)]
    address_type: AddressType,
    #[serde(default)]
    adapter: Option<String>,
    #[serde(default)]
    appear: Appear,
    #[serde(default = "default_rssi")]
    rssi: Option<i16>,
    #[serde(default)]
    manufacturer_data: BTreeMap<u16, RawBytes>,
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    faults: DeviceFaultConfig,
}

fn default_rssi() -> Option<i16> {
    Some(-60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    uuid: String,
    #[serde(default = "yes")]
    primary: bool,
    #[serde(default)]
    characteristics: Vec<RawChar>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChar {
    uuid: String,
    flags: Vec<CharFlag>,
    #[serde(default)]
    value: Option<RawBytes>,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    enabled_by: Option<RawEnable>,
    #[serde(default)]
    descriptors: Vec<RawDesc>,
    #[serde(default)]
    read_error: Option<ReadErrorKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(rename = "type")]
    encoding: Encoding,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    dynamics: Option<Dynamics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnable {
    characteristic: String,
    value: RawBytes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDesc {
    uuid: String,
    #[serde(default)]
    value: Option<RawBytes>,
}

/// Bytes as a list of integers (`[0x01, 2]`) or a hex string (`"01 02"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawBytes {
    List(Vec<u8>),
    Hex(String),
}

impl RawBytes {
    fn resolve(&self) -> Result<Vec<u8>, String> {
        match self {
            RawBytes::List(v) => Ok(v.clone()),
            RawBytes::Hex(s) => {
                let hex: String = s
                    .trim()
                    .trim_start_matches("0x")
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != ':')
                    .collect();
                if !hex.len().is_multiple_of(2) {
                    return Err(format!("hex string {s:?} has an odd number of digits"));
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|b| u8::from_str_radix(b, 16).ok())
                            .ok_or_else(|| format!("{s:?} is not a hex byte string like \"01 0a\""))
                    })
                    .collect()
            }
        }
    }
}

// ---------------------------------------------------------------- resolve

impl SimConfig {
    /// Read and validate a device file.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        SimConfig::from_yaml(&text, &path.display().to_string())
    }

    /// Parse and validate YAML text; `origin` names it in errors.
    pub fn from_yaml(yaml: &str, origin: &str) -> Result<SimConfig, ConfigError> {
        let raw: RawFile = serde_saphyr::from_str(yaml).map_err(|e| ConfigError::Yaml {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        Resolver { origin }.file(raw)
    }

    /// The default adapter `hci0`, powered.
    pub fn default_adapter() -> AdapterSpec {
        AdapterSpec {
            name: "hci0".to_owned(),
            address: MacAddr([0x00, 0x1A, 0x7D, 0xDA, 0x71, 0x10]),
            alias: "ble-sim hci0".to_owned(),
            modalias: DEFAULT_MODALIAS.to_owned(),
            powered: true,
        }
    }
}

struct Resolver<'a> {
    origin: &'a str,
}

impl Resolver<'_> {
    fn err(&self, context: &str, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            context: context.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn file(&self, raw: RawFile) -> Result<SimConfig, ConfigError> {
        let tick = match raw.tick_ms {
            None => DEFAULT_TICK,
            Some(0) => return Err(self.err("file", "tick_ms", "must be at least 1")),
            Some(ms) => Duration::from_millis(ms),
        };
        let mut adapters = Vec::new();
        for a in raw.adapters {
            adapters.push(self.adapter(a, &adapters)?);
        }
        if adapters.is_empty() {
            adapters.push(SimConfig::default_adapter());
        }
        let mut devices: Vec<DeviceSpec> = Vec::new();
        for d in raw.devices {
            let dev = self.device(d, &adapters)?;
            if devices
                .iter()
                .any(|o| o.address == dev.address && o.adapter == dev.adapter)
            {
                return Err(self.err(
                    &format!("device {}", dev.address),
                    "address",
                    format!("is used twice on adapter {}", dev.adapter),
                ));
            }
            devices.push(dev);
        }
        Ok(SimConfig {
            adapters,
            devices,
            tick,
            seed: raw.seed,
        })
    }

    fn adapter(&self, a: RawAdapter, before: &[AdapterSpec]) -> Result<AdapterSpec, ConfigError> {
        let ctx = format!("adapter {}", a.name);
        let valid_name = !a.name.is_empty()
            && a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(self.err(&ctx, "name", "must be letters, digits or '_' (like hci0)"));
        }
        if before.iter().any(|b| b.name == a.name) {
            return Err(self.err(&ctx, "name", "is used twice"));
        }
        let address = a
            .address
            .parse()
            .map_err(|e: crate::error::IdError| self.err(&ctx, "address", e.to_string()))?;
        let modalias = a.modalias.unwrap_or_else(|| DEFAULT_MODALIAS.to_owned());
        if !valid_modalias(&modalias) {
            return Err(self.err(
                &ctx,
                "modalias",
                format!("{modalias:?} does not look like usb:vXXXXpXXXXdXXXX (btleplug parses it)"),
            ));
        }
        Ok(AdapterSpec {
            alias: a.alias.unwrap_or_else(|| format!("ble-sim {}", a.name)),
            name: a.name,
            address,
            modalias,
            powered: a.powered.unwrap_or(true),
        })
    }

    fn device(&self, d: RawDevice, adapters: &[AdapterSpec]) -> Result<DeviceSpec, ConfigError> {
        let address: MacAddr = d.address.parse().map_err(|e: crate::error::IdError| {
            self.err(&format!("device {}", d.address), "address", e.to_string())
        })?;
        let ctx = format!("device {address}");
        let adapter = match d.adapter {
            Some(name) => {
                if !adapters.iter().any(|a| a.name == name) {
                    return Err(self.err(
                        &ctx,
                        "adapter",
                        format!("no adapter named {name:?} is declared"),
                    ));
                }
                name
            }
            None => adapters
                .first()
                .map(|a| a.name.clone())
                .ok_or_else(|| self.err(&ctx, "adapter", "no adapter is declared"))?,
        };
        let mut manufacturer_data = BTreeMap::new();
        for (id, bytes) in d.manufacturer_data {
            let b = bytes
                .resolve()
                .map_err(|r| self.err(&ctx, &format!("manufacturer_data.{id}"), r))?;
            manufacturer_data.insert(id, b);
        }
        let mut services = Vec::new();
        for (i, s) in d.services.into_iter().enumerate() {
            services.push(self.service(&ctx, i, s)?);
        }
        // faults.characteristics: read errors of characteristics of this device
        for (uuid, cf) in &d.faults.characteristics {
            let field = format!("faults.characteristics.{uuid}");
            let u: BleUuid = uuid
                .parse()
                .map_err(|e: crate::error::IdError| self.err(&ctx, &field, e.to_string()))?;
            let c = services
                .iter_mut()
                .flat_map(|s| s.characteristics.iter_mut())
                .find(|c| c.uuid == u)
                .ok_or_else(|| {
                    self.err(
                        &ctx,
                        &field,
                        format!("{u} is not a characteristic of this device"),
                    )
                })?;
            c.read_error = cf.read_error;
        }
        // enabled_by must name a characteristic of this device.
        let all: BTreeSet<&BleUuid> = services
            .iter()
            .flat_map(|s| s.characteristics.iter().map(|c| &c.uuid))
            .collect();
        for s in &services {
            for c in &s.characteristics {
                if let Some(rule) = &c.enabled_by
                    && !all.contains(&rule.characteristic)
                {
                    return Err(self.err(
                        &ctx,
                        &format!("characteristic {}.enabled_by.characteristic", c.uuid),
                        format!(
                            "{} is not a characteristic of this device",
                            rule.characteristic
                        ),
                    ));
                }
            }
        }
        Ok(DeviceSpec {
            name: d.name,
            address,
            address_type: d.address_type,
            adapter,
            appear: d.appear,
            rssi: d.rssi,
            manufacturer_data,
            services,
            faults: d.faults.spec(),
        })
    }

    fn service(&self, ctx: &str, i: usize, s: RawService) -> Result<ServiceSpec, ConfigError> {
        let uuid: BleUuid = s.uuid.parse().map_err(|e: crate::error::IdError| {
            self.err(ctx, &format!("services[{i}].uuid"), e.to_string())
        })?;
        let mut characteristics = Vec::new();
        for (j, c) in s.characteristics.into_iter().enumerate() {
            let field = format!("services[{i}].characteristics[{j}]");
            characteristics.push(self.characteristic(ctx, &field, c)?);
        }
        Ok(ServiceSpec {
            uuid,
            primary: s.primary,
            characteristics,
        })
    }

    fn characteristic(&self, ctx: &str, at: &str, c: RawChar) -> Result<CharSpec, ConfigError> {
        let uuid: BleUuid = c.uuid.parse().map_err(|e: crate::error::IdError| {
            self.err(ctx, &format!("{at}.uuid"), e.to_string())
        })?;
        let at = format!("characteristic {uuid}");
        if c.flags.is_empty() {
            return Err(self.err(ctx, &format!("{at}.flags"), "needs at least one flag"));
        }
        let mut flags = c.flags.clone();
        flags.sort();
        flags.dedup();
        if flags.len() != c.flags.len() {
            return Err(self.err(ctx, &format!("{at}.flags"), "lists a flag twice"));
        }
        let mut value = match &c.value {
            Some(v) => v
                .resolve()
                .map_err(|r| self.err(ctx, &format!("{at}.value"), r))?,
            None => Vec::new(),
        };
        let mut fields = Vec::new();
        for (k, f) in c.fields.into_iter().enumerate() {
            let fat = format!("{at}.fields[{k}]");
            let scale = f.scale.unwrap_or(1.0);
            if !scale.is_finite() || scale == 0.0 {
                return Err(self.err(ctx, &format!("{fat}.scale"), "must be a non-zero number"));
            }
            if let Some(dy) = &f.dynamics {
                let (min, max) = dy.bounds();
                if !(min.is_finite() && max.is_finite() && min <= max) {
                    return Err(self.err(
                        ctx,
                        &format!("{fat}.dynamics"),
                        "needs finite bounds with min <= max",
                    ));
                }
            }
            let initial = f
                .value
                .or_else(|| f.dynamics.as_ref().map(|d| d.bounds().0))
                .unwrap_or(0.0);
            let spec = FieldSpec {
                name: f.name,
                offset: f.offset,
                encoding: f.encoding,
                scale,
                value: initial,
                dynamics: f.dynamics,
            };
            spec.write_into(initial, &mut value);
            fields.push(spec);
        }
        let enabled_by = match c.enabled_by {
            Some(rule) => Some(EnableRule {
                characteristic: rule.characteristic.parse().map_err(
                    |e: crate::error::IdError| {
                        self.err(
                            ctx,
                            &format!("{at}.enabled_by.characteristic"),
                            e.to_string(),
                        )
                    },
                )?,
                value: rule
                    .value
                    .resolve()
                    .map_err(|r| self.err(ctx, &format!("{at}.enabled_by.value"), r))?,
            }),
            None => None,
        };
        let mut descriptors = Vec::new();
        for (k, d) in c.descriptors.into_iter().enumerate() {
            let dat = format!("{at}.descriptors[{k}]");
            descriptors.push(DescSpec {
                uuid: d.uuid.parse().map_err(|e: crate::error::IdError| {
                    self.err(ctx, &format!("{dat}.uuid"), e.to_string())
                })?,
                value: match d.value {
                    Some(v) => v
                        .resolve()
                        .map_err(|r| self.err(ctx, &format!("{dat}.value"), r))?,
                    None => Vec::new(),
                },
            });
        }
        let notifies = flags.contains(&CharFlag::Notify) || flags.contains(&CharFlag::Indicate);
        if notifies && !descriptors.iter().any(|d| d.uuid.short16() == Some(0x2902)) {
            descriptors.insert(
                0,
                DescSpec {
                    uuid: cccd_uuid(),
                    value: vec![0, 0],
                },
            );
        }
        Ok(CharSpec {
            uuid,
            flags,
            value,
            fields,
            enabled_by,
            descriptors,
            read_error: c.read_error,
        })
    }
}

/// The Client Characteristic Configuration descriptor UUID (0x2902).
pub fn cccd_uuid() -> BleUuid {
    BleUuid::from_raw_canonical("00002902-0000-1000-8000-00805f9b34fb")
}

/// `usb:v1D6Bp0246d0542` and the like (`bluetooth:` and `bluez:` sources too).
fn valid_modalias(s: &str) -> bool {
    let Some((source, rest)) = s.split_once(':') else {
        return false;
    };
    if !matches!(source, "usb" | "bluetooth" | "bluez") {
        return false;
    }
    let b = rest.as_bytes();
    b.len() == 15
        && b[0] == b'v'
        && b[5] == b'p'
        && b[10] == b'd'
        && [1..5, 6..10, 11..15]
            .into_iter()
            .all(|r| rest[r].chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LED: &str = r#"
adapters:
  - { name: hci1, address: "00:AA:00:00:00:01" }
  - { name: hci0, address: "00:AA:00:00:00:00" }
tick_ms: 100
devices:
  - name: LED
    address: "aa:bb:cc:dd:ee:01"
    adapter: hci0
    appear: always
    manufacturer_data: { 13: "01 02" }
    services:
      - uuid: "ff10"
        characteristics:
          - uuid: "ff11"
            flags: [read, write, write-without-response]
            value: [0]
          - uuid: "ff12"
            flags: [read, notify]
            fields:
              - { offset: 1, type: u16_le, scale: 0.5, value: 10,
                  dynamics: { ramp: { step: 1, min: 0, max: 20 } } }
            enabled_by: { characteristic: "ff11", value: [1] }
"#;

    #[test]
    fn parses_adapters_devices_and_fields() {
        let c = SimConfig::from_yaml(LED, "led.yaml").unwrap();
        assert_eq!(c.adapters[0].name, "hci1");
        assert_eq!(c.adapters[1].modalias, DEFAULT_MODALIAS);
        assert_eq!(c.tick, Duration::from_millis(100));
        let d = &c.devices[0];
        assert_eq!(d.address.to_string(), "AA:BB:CC:DD:EE:01");
        assert_eq!(d.appear, Appear::Always);
        assert_eq!(d.rssi, Some(-60));
        assert_eq!(d.manufacturer_data[&13], vec![1, 2]);
        let ch = &d.services[0].characteristics[1];
        // value 10 / scale 0.5 = 20 at offset 1, LE.
        assert_eq!(ch.value, vec![0, 20, 0]);
        // A CCCD is added for notify.
        assert_eq!(ch.descriptors[0].uuid.short16(), Some(0x2902));
        assert!(ch.enabled_by.is_some());
    }

    #[test]
    fn fault_block_with_characteristics() {
        let yaml = LED.replace(
            "    appear: always\n",
            "    appear: always\n    faults: { mute_notifications: true, read_error: not_permitted, characteristics: { ff12: { read_error: failed } } }\n",
        );
        let c = SimConfig::from_yaml(&yaml, "x").unwrap();
        let d = &c.devices[0];
        assert!(d.faults.mute_notifications);
        assert_eq!(d.faults.read_error, Some(ReadErrorKind::NotPermitted));
        let chars = &d.services[0].characteristics;
        assert_eq!(chars[0].read_error, None);
        assert_eq!(chars[1].read_error, Some(ReadErrorKind::Failed));

        let bad = yaml.replace("ff12: {", "ff99: {");
        let e = SimConfig::from_yaml(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("faults.characteristics.ff99"), "{e}");
        let bad = yaml.replace("mute_notifications", "mute_notification");
        assert!(SimConfig::from_yaml(&bad, "x").is_err());
    }

    #[test]
    fn errors_name_device_and_field() {
        let bad = LED.replace("\"ff11\", value", "\"ff99\", value");
        let e = SimConfig::from_yaml(&bad, "led.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("led.yaml"), "{e}");
        assert!(e.contains("AA:BB:CC:DD:EE:01"), "{e}");
        assert!(e.contains("enabled_by"), "{e}");

        let bad = LED.replace("adapter: hci0", "adapter: hci7");
        let e = SimConfig::from_yaml(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("hci7"), "{e}");

        let bad = LED.replace("[read, notify]", "[read, notfy]");
        assert!(SimConfig::from_yaml(&bad, "x").is_err());

        let bad = LED.replace("aa:bb:cc:dd:ee:01", "aa:bb:cc");
        let e = SimConfig::from_yaml(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("address"), "{e}");

        let e = SimConfig::from_yaml("devices: [ { address: 1 } ]", "x").unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Yaml { .. } | ConfigError::Invalid { .. }
        ));
    }

    #[test]
    fn modalias_check() {
        assert!(valid_modalias("usb:v1D6Bp0246d0542"));
        assert!(!valid_modalias("usb:1D6B"));
        assert!(!valid_modalias("pci:v1D6Bp0246d0542"));
    }
}
