//! [`BleDriver`]: the `mapper_sdk` driver for BLE GATT devices, generic over the stack
//! ([`GattConnector`]), and [`BleDevice`], one connected device.
//!
//! On every (re)connect the device subscribes to the characteristics that should push
//! (see [`crate::config::NotifyMode`]); notifications reach the SDK through
//! [`Device::next_push`], which throttles them to the property's collect cycle. Value
//! changes of characteristics that are not subscribed are ignored: BlueZ reports every
//! read as a value change too, and counting those would report each read twice. For a
//! subscribed characteristic the echo of our own read (same bytes, within
//! [`ECHO_WINDOW`]) is dropped once for the same reason.
//!
//! A lost connection (a disconnect event, or a request failing while the stack says the
//! device is not connected) is [`DriverError::Link`]: the SDK reports the device offline,
//! drops the handle and connects again with backoff. A characteristic that is missing, a
//! byte range outside the value, or a value that cannot be encoded is
//! [`DriverError::Invalid`] for that property only; the other properties keep working.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use mapper_sdk::driver::{
    ConfigError, ConfigWarning, Device, DeviceSpec, Driver, DriverError, PropertySpec,
};
use mapper_sdk::model::{DeviceId, PropertyName, Value};
use mapper_sdk::profile::{PropertyDef, ProtocolDef};
use tracing::{debug, info, trace, warn};
use uuid::Uuid;

use crate::btle::BtleplugConnector;
use crate::config::{self, BleProtocol, BleVisitor, NotifyMode, WriteType};
use crate::convert;
use crate::link::{GattConnector, GattLink, LinkError, LinkEvent, Target};

/// How long after a read its echo (the same bytes as a value change) is dropped.
pub const ECHO_WINDOW: Duration = Duration::from_secs(2);

/// The BLE driver. `BleDriver::default()` uses btleplug (BlueZ over D-Bus); the D-Bus
/// connection and the adapter are opened lazily, on the first connect, and shared by every
/// device of this driver.
#[derive(Debug, Clone)]
pub struct BleDriver<C: GattConnector = BtleplugConnector> {
    connector: C,
}

impl Default for BleDriver<BtleplugConnector> {
    fn default() -> Self {
        Self::new(BtleplugConnector::default())
    }
}

impl<C: GattConnector> BleDriver<C> {
    /// A driver on this stack.
    pub fn new(connector: C) -> Self {
        Self { connector }
    }

    /// The stack.
    pub fn connector(&self) -> &C {
        &self.connector
    }
}

impl<C: GattConnector> Driver for BleDriver<C> {
    type Protocol = BleProtocol;
    type Visitor = BleVisitor;
    type Device = BleDevice<C::Link>;

    fn name(&self) -> &'static str {
        "ble"
    }

    fn dmi_protocol(&self) -> &'static str {
        "bluetooth"
    }

    fn handles(&self, protocol: &ProtocolDef) -> bool {
        config::handles_kind(&protocol.kind)
    }

    fn parse_protocol(&self, protocol: &ProtocolDef) -> Result<BleProtocol, ConfigError> {
        config::parse_protocol(protocol)
    }

    fn parse_visitor(
        &self,
        property: &PropertyDef,
        _protocol: &BleProtocol,
    ) -> Result<BleVisitor, ConfigError> {
        config::parse_visitor(property)
    }

    fn parse_protocol_noting(
        &self,
        protocol: &ProtocolDef,
    ) -> Result<(BleProtocol, Vec<ConfigWarning>), ConfigError> {
        let p = config::parse_protocol(protocol)?;
        Ok((p, config::protocol_unknown_keys(protocol)))
    }

    fn parse_visitor_noting(
        &self,
        property: &PropertyDef,
        _protocol: &BleProtocol,
    ) -> Result<(BleVisitor, Vec<ConfigWarning>), ConfigError> {
        let v = config::parse_visitor(property)?;
        Ok((v, config::visitor_unknown_keys(property)))
    }

    async fn connect(&self, spec: &DeviceSpec<Self>) -> Result<BleDevice<C::Link>, DriverError> {
        let target = Target {
            mac: spec.protocol.mac,
            adapter: spec.protocol.adapter.clone(),
            timeout: spec.protocol.connect_timeout,
        };
        let link = self.connector.connect(&target).await?;
        BleDevice::start(spec.id().clone(), link, &spec.properties).await
    }
}

/// One connected BLE device.
#[derive(Debug)]
pub struct BleDevice<L: GattLink> {
    id: DeviceId,
    link: L,
    /// Subscribed characteristic -> the properties its notifications feed.
    pushes: HashMap<Uuid, Vec<PropertySpec<BleVisitor>>>,
    /// Converted notifications not yet handed to the SDK.
    queue: VecDeque<(PropertyName, Result<Value, DriverError>)>,
    /// The last read of each subscribed characteristic, to drop its echo.
    echoes: HashMap<Uuid, (Vec<u8>, Instant)>,
    /// The last bytes written to characteristics that cannot be read.
    written: HashMap<Uuid, Vec<u8>>,
    lost: bool,
}

impl<L: GattLink> BleDevice<L> {
    /// Wraps a fresh connection: checks the properties' characteristics and subscribes.
    pub async fn start(
        id: DeviceId,
        mut link: L,
        properties: &[PropertySpec<BleVisitor>],
    ) -> Result<Self, DriverError> {
        let mut pushes: HashMap<Uuid, Vec<PropertySpec<BleVisitor>>> = HashMap::new();
        for p in properties {
            let uuid = p.visitor.characteristic;
            let Some(flags) = link.characteristic(&uuid) else {
                warn!(device = %id, property = %p.def.name, characteristic = %uuid,
                    "characteristic not found on the device; this property will fail until the profile is fixed");
                continue;
            };
            let subscribe = match p.visitor.notify {
                NotifyMode::Off => false,
                NotifyMode::Auto => flags.can_push(),
                NotifyMode::On => {
                    if !flags.can_push() {
                        warn!(device = %id, property = %p.def.name, characteristic = %uuid,
                            "notify is set but the characteristic cannot notify; polling it instead");
                    }
                    flags.can_push()
                }
            };
            if subscribe {
                pushes.entry(uuid).or_default().push(p.clone());
            }
        }
        let mut failed = Vec::new();
        for uuid in pushes.keys() {
            match link.subscribe(uuid).await {
                Ok(()) => debug!(device = %id, characteristic = %uuid, "subscribed"),
                Err(e @ LinkError::Disconnected(_)) => {
                    link.disconnect().await;
                    return Err(e.into());
                }
                Err(e) => {
                    warn!(device = %id, characteristic = %uuid, error = %e,
                        "cannot subscribe; polling instead");
                    failed.push(*uuid);
                }
            }
        }
        for uuid in failed {
            pushes.remove(&uuid);
        }
        info!(device = %id, subscribed = pushes.len(), "connected");
        Ok(Self {
            id,
            link,
            pushes,
            queue: VecDeque::new(),
            echoes: HashMap::new(),
            written: HashMap::new(),
            lost: false,
        })
    }

    /// The stack's connection (for tests and diagnostics).
    pub fn link(&self) -> &L {
        &self.link
    }

    /// The characteristics this device is subscribed to.
    pub fn subscribed(&self) -> impl Iterator<Item = &Uuid> {
        self.pushes.keys()
    }

    async fn read_raw(&mut self, uuid: Uuid) -> Result<Vec<u8>, DriverError> {
        let flags = self
            .link
            .characteristic(&uuid)
            .ok_or(LinkError::NoCharacteristic(uuid))?;
        if !flags.read {
            // Write-only characteristics read back as what was last written.
            return self.written.get(&uuid).cloned().ok_or_else(|| {
                DriverError::Refused(format!(
                    "characteristic {uuid} cannot be read (no read flag) and nothing was written to it yet"
                ))
            });
        }
        let raw = self.link.read(&uuid).await?;
        trace!(device = %self.id, characteristic = %uuid, len = raw.len(), "read");
        if self.pushes.contains_key(&uuid) {
            self.echoes.insert(uuid, (raw.clone(), Instant::now()));
        }
        Ok(raw)
    }

    fn on_value(&mut self, uuid: Uuid, bytes: &[u8]) {
        let Some(specs) = self.pushes.get(&uuid) else {
            // Not subscribed: the echo of a read, already counted by `read`.
            trace!(device = %self.id, characteristic = %uuid, "value change ignored (not subscribed)");
            return;
        };
        if let Some((echo, at)) = self.echoes.get(&uuid)
            && echo.as_slice() == bytes
            && at.elapsed() < ECHO_WINDOW
        {
            self.echoes.remove(&uuid);
            trace!(device = %self.id, characteristic = %uuid, "echo of a read ignored");
            return;
        }
        for p in specs {
            let v = convert::decode(bytes, &p.visitor, p.def.data_type).map_err(DriverError::from);
            self.queue.push_back((p.def.name.clone(), v));
        }
    }
}

impl<L: GattLink> Device for BleDevice<L> {
    type Visitor = BleVisitor;

    async fn read(&mut self, p: &PropertySpec<BleVisitor>) -> Result<Value, DriverError> {
        let raw = self.read_raw(p.visitor.characteristic).await?;
        Ok(convert::decode(&raw, &p.visitor, p.def.data_type)?)
    }

    /// Reads each characteristic once per batch, even when several properties use it.
    async fn read_many(
        &mut self,
        properties: &[&PropertySpec<BleVisitor>],
    ) -> Vec<Result<Value, DriverError>> {
        let mut raws: HashMap<Uuid, Result<Vec<u8>, DriverError>> = HashMap::new();
        let mut out = Vec::with_capacity(properties.len());
        for p in properties {
            let uuid = p.visitor.characteristic;
            let raw = match raws.get(&uuid) {
                Some(r) => r.clone(),
                None => {
                    let r = self.read_raw(uuid).await;
                    raws.insert(uuid, r.clone());
                    r
                }
            };
            if let Err(e) = &raw
                && e.is_link()
            {
                out.push(Err(e.clone()));
                while out.len() < properties.len() {
                    out.push(Err(DriverError::Link(
                        "link lost earlier in this batch".into(),
                    )));
                }
                break;
            }
            out.push(raw.and_then(|raw| {
                convert::decode(&raw, &p.visitor, p.def.data_type).map_err(DriverError::from)
            }));
        }
        out
    }

    async fn write(
        &mut self,
        p: &PropertySpec<BleVisitor>,
        value: &Value,
    ) -> Result<(), DriverError> {
        let uuid = p.visitor.characteristic;
        let flags = self
            .link
            .characteristic(&uuid)
            .ok_or(LinkError::NoCharacteristic(uuid))?;
        let bytes = convert::encode(value, &p.visitor, p.def.data_type)?;
        let with_response = match p.visitor.write_type {
            WriteType::Request => true,
            WriteType::Command => false,
            WriteType::Auto => flags.write || !flags.write_without_response,
        };
        self.link.write(&uuid, &bytes, with_response).await?;
        debug!(device = %self.id, property = %p.def.name, characteristic = %uuid,
            len = bytes.len(), with_response, "written");
        self.written.insert(uuid, bytes);
        Ok(())
    }

    async fn next_push(&mut self) -> Option<(PropertyName, Result<Value, DriverError>)> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            if self.lost {
                return None;
            }
            // Cancel-safe: `next_event` is, and everything after it runs without awaiting.
            match self.link.next_event().await {
                Some(LinkEvent::Value(uuid, bytes)) => self.on_value(uuid, &bytes),
                Some(LinkEvent::Disconnected) | None => {
                    info!(device = %self.id, "link lost");
                    self.lost = true;
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) {
        if !self.lost {
            self.link.disconnect().await;
        }
        debug!(device = %self.id, "disconnected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MacAddr;
    use crate::fake::{FakeBle, FakeChar, flags};
    use mapper_sdk::profile::ResolveOptions;
    use serde_json::{Value as Json, json};

    const MAC: MacAddr = MacAddr([0xA4, 0xC1, 0x38, 0x00, 0x00, 0x01]);

    fn short(n: u16) -> Uuid {
        config::parse_uuid(&format!("{n:04x}")).unwrap()
    }

    /// A v1alpha2 profile with one device and `props`: (name, dataType, visitorConfig).
    fn profile(props: &[(&str, &str, Json)]) -> String {
        let visitors: Vec<Json> = props
            .iter()
            .map(|(n, _, v)| {
                json!({"name": n, "propertyName": n, "modelName": "m", "protocol": "bluetooth",
                       "collectCycle": 1_000_000_000i64, "visitorConfig": v})
            })
            .collect();
        let model: Vec<Json> = props
            .iter()
            .map(|(n, t, _)| json!({"name": n, "dataType": t, "accessMode": "ReadWrite"}))
            .collect();
        let twins: Vec<Json> = props
            .iter()
            .map(|(n, _, _)| json!({"propertyName": n}))
            .collect();
        json!({
            "deviceInstances": [{"id": "tag", "name": "tag", "protocol": "bluetooth-tag", "model": "m",
                                 "twins": twins, "propertyVisitors": visitors}],
            "deviceModels": [{"name": "m", "properties": model}],
            "protocols": [{"name": "bluetooth-tag", "protocol": "bluetooth",
                           "protocolConfig": {"macAddress": MAC.to_string()}, "protocolCommonConfig": null}]
        })
        .to_string()
    }

    fn spec(
        driver: &BleDriver<FakeBle>,
        props: &[(&str, &str, Json)],
    ) -> DeviceSpec<BleDriver<FakeBle>> {
        let mut loaded = mapper_sdk::load(driver, &profile(props), &ResolveOptions::default());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.devices.remove(0)
    }

    fn prop<'a>(
        spec: &'a DeviceSpec<BleDriver<FakeBle>>,
        name: &str,
    ) -> &'a PropertySpec<BleVisitor> {
        spec.properties
            .iter()
            .find(|p| p.def.name.as_str() == name)
            .unwrap()
    }

    /// A sensor: temperature (read, notify), humidity (read), switch (read, write), a
    /// write-only command characteristic and a write-without-response one.
    fn stack() -> FakeBle {
        let fake = FakeBle::default();
        fake.add(
            MAC,
            [
                (
                    short(0xaa01),
                    FakeChar::new(flags(&["read", "notify"]), &[0xC0, 0x0C, 0x00, 0x0D]),
                ),
                (
                    short(0xaa03),
                    FakeChar::new(flags(&["read"]), &[0x0C, 0x80]),
                ),
                (
                    short(0xaa02),
                    FakeChar::new(flags(&["read", "write"]), &[0]),
                ),
                (short(0xaa04), FakeChar::new(flags(&["write"]), &[])),
                (
                    short(0xaa05),
                    FakeChar::new(flags(&["read", "write-without-response"]), &[0, 0]),
                ),
            ],
        );
        fake
    }

    fn temperature() -> (&'static str, &'static str, Json) {
        (
            "temperature",
            "float",
            json!({"characteristicUUID": "aa01", "dataConverter": {"startIndex": 1, "endIndex": 0,
                   "shiftRight": 2, "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}]}}),
        )
    }

    fn switch() -> (&'static str, &'static str, Json) {
        (
            "switch",
            "string",
            json!({"characteristicUUID": "aa02", "dataWrite": {"ON": "AQ==", "OFF": [0]}}),
        )
    }

    /// Polls `next_push` until it yields or `limit` passes (`None`: nothing came).
    async fn push_within<L: GattLink>(
        dev: &mut BleDevice<L>,
        limit: Duration,
    ) -> Option<Option<(PropertyName, Result<Value, DriverError>)>> {
        tokio::time::timeout(limit, dev.next_push()).await.ok()
    }

    #[tokio::test]
    async fn reads_convert_and_bad_visitors_fail_alone() {
        let driver = BleDriver::new(stack());
        let spec = spec(
            &driver,
            &[
                temperature(),
                ("humidity", "int", json!({"characteristicUUID": "aa03"})),
                ("missing", "int", json!({"characteristicUUID": "beef"})),
                (
                    "outside",
                    "int",
                    json!({"characteristicUUID": "aa03", "dataConverter": {"startIndex": 2, "endIndex": 3}}),
                ),
            ],
        );
        let mut dev = driver.connect(&spec).await.unwrap();
        let refs: Vec<_> = spec.properties.iter().collect();
        let out = dev.read_many(&refs).await;
        assert_eq!(out[0], Ok(Value::Float(25.5)));
        assert_eq!(
            out[1],
            Ok(Value::Int(3200)),
            "big-endian (docs/kubeedge-contract.md#bug-the-dataconverter-concatenates-decimal-text)"
        );
        assert!(
            matches!(&out[2], Err(DriverError::Invalid(m)) if m.contains("not found")),
            "{:?}",
            out[2]
        );
        assert!(
            matches!(&out[3], Err(DriverError::Invalid(m)) if m.contains("outside the 2-byte value")),
            "{:?}",
            out[3]
        );
        // aa03 was read once for two properties.
        assert_eq!(driver.connector().with(MAC, |p| p.reads).unwrap(), 2);
    }

    #[tokio::test]
    async fn notifications_are_pushed_and_read_echoes_are_not() {
        let fake = stack();
        let driver = BleDriver::new(fake.clone());
        let spec = spec(
            &driver,
            &[
                temperature(),
                ("humidity", "int", json!({"characteristicUUID": "aa03"})),
            ],
        );
        let mut dev = driver.connect(&spec).await.unwrap();
        assert_eq!(dev.subscribed().collect::<Vec<_>>(), vec![&short(0xaa01)]);
        assert_eq!(
            fake.with(MAC, |p| p.subscriptions.clone()).unwrap(),
            vec![short(0xaa01)]
        );

        // Reads of both are echoed by the stack (as BlueZ does); neither comes back as a push.
        assert_eq!(
            dev.read(prop(&spec, "temperature")).await,
            Ok(Value::Float(25.5))
        );
        assert_eq!(
            dev.read(prop(&spec, "humidity")).await,
            Ok(Value::Int(3200))
        );
        assert!(
            push_within(&mut dev, Duration::from_millis(100))
                .await
                .is_none()
        );

        // A real notification is pushed, converted.
        assert!(fake.notify(MAC, short(0xaa01), &[0x00, 0x0D]));
        let (name, v) = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(name.as_str(), "temperature");
        assert_eq!(v, Ok(Value::Float(26.0)));
        // A bad notification is an error for that property, not a lost link.
        assert!(fake.notify(MAC, short(0xaa01), &[0x01]));
        let (_, v) = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(v, Err(DriverError::Invalid(_))));
        // Value changes of characteristics that are not subscribed are ignored.
        assert!(fake.notify(MAC, short(0xaa03), &[0, 1]));
        assert!(
            push_within(&mut dev, Duration::from_millis(100))
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn next_push_is_cancel_safe() {
        let fake = stack();
        let driver = BleDriver::new(fake.clone());
        let spec = spec(&driver, &[temperature()]);
        let mut dev = driver.connect(&spec).await.unwrap();
        for _ in 0..3 {
            // Started and dropped while nothing is there.
            assert!(
                push_within(&mut dev, Duration::from_millis(10))
                    .await
                    .is_none()
            );
        }
        fake.notify(MAC, short(0xaa01), &[0x00, 0x0D]);
        fake.notify(MAC, short(0xaa01), &[0x20, 0x0D]);
        let a = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        let b = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.1, Ok(Value::Float(26.0)));
        assert_eq!(b.1, Ok(Value::Float(26.25)));
    }

    #[tokio::test]
    async fn notify_modes() {
        let fake = stack();
        let driver = BleDriver::new(fake.clone());
        let spec = spec(
            &driver,
            &[
                (
                    "t-off",
                    "int",
                    json!({"characteristicUUID": "aa01", "notify": false}),
                ),
                (
                    "h-on",
                    "int",
                    json!({"characteristicUUID": "aa03", "notify": true}),
                ),
            ],
        );
        let dev = driver.connect(&spec).await.unwrap();
        assert_eq!(dev.subscribed().count(), 0);
        assert!(fake.with(MAC, |p| p.subscriptions.is_empty()).unwrap());

        let spec2 = self::spec(
            &driver,
            &[
                ("a", "int", json!({"characteristicUUID": "aa01"})),
                (
                    "b",
                    "float",
                    json!({"characteristicUUID": "aa01", "notify": "auto"}),
                ),
            ],
        );
        let mut dev = driver.connect(&spec2).await.unwrap();
        // One subscription feeds both properties.
        assert_eq!(fake.with(MAC, |p| p.subscriptions.len()).unwrap(), 1);
        fake.notify(MAC, short(0xaa01), &[0, 7]);
        let a = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        let b = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.0.as_str(), a.1), ("a", Ok(Value::Int(7))));
        assert_eq!((b.0.as_str(), b.1), ("b", Ok(Value::Float(7.0))));
    }

    #[tokio::test]
    async fn writes_map_through_data_write_or_the_typed_encoding() {
        let fake = stack();
        let driver = BleDriver::new(fake.clone());
        let spec = spec(
            &driver,
            &[
                switch(),
                (
                    "command",
                    "int",
                    json!({"characteristicUUID": "aa04", "writeEncoding": "uint16le"}),
                ),
                (
                    "level",
                    "float",
                    json!({"characteristicUUID": "aa05", "writeEncoding": "int16be",
                    "dataConverter": {"orderOfOperations": [{"operationType": "Divide", "operationValue": 10}]}}),
                ),
                ("plain", "int", json!({"characteristicUUID": "aa02"})),
            ],
        );
        let mut dev = driver.connect(&spec).await.unwrap();
        let sw = prop(&spec, "switch");
        dev.write(sw, &Value::String("ON".into())).await.unwrap();
        assert_eq!(
            dev.read(sw).await,
            Ok(Value::String("ON".into())),
            "read back through dataWrite"
        );
        dev.write(sw, &Value::String("off".into())).await.unwrap();
        let err = dev
            .write(sw, &Value::String("BLINK".into()))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DriverError::Invalid("\"BLINK\" is not one of the dataWrite values (ON, OFF); set writeEncoding to write other values".into())
        );

        let cmd = prop(&spec, "command");
        assert!(
            matches!(dev.read(cmd).await, Err(DriverError::Refused(_))),
            "nothing written yet"
        );
        dev.write(cmd, &Value::Int(0x0102)).await.unwrap();
        assert_eq!(
            dev.read(cmd).await,
            Ok(Value::Int(0x0201)),
            "write-only: the last written bytes"
        );
        let too_big = dev.write(cmd, &Value::Int(70_000)).await.unwrap_err();
        assert!(matches!(too_big, DriverError::Invalid(_)));

        dev.write(prop(&spec, "level"), &Value::Float(-1.5))
            .await
            .unwrap();
        let no_encoding = dev
            .write(prop(&spec, "plain"), &Value::Int(1))
            .await
            .unwrap_err();
        assert!(matches!(no_encoding, DriverError::Invalid(m) if m.contains("writeEncoding")));

        let writes = fake.with(MAC, |p| p.writes.clone()).unwrap();
        assert_eq!(
            writes,
            vec![
                (short(0xaa02), vec![1], true),
                (short(0xaa02), vec![0], true),
                (short(0xaa04), vec![0x02, 0x01], true),
                (short(0xaa05), vec![0xFF, 0xF1], false),
            ]
        );
    }

    #[tokio::test]
    async fn link_loss_ends_pushes_and_reconnect_resubscribes() {
        let fake = stack();
        let driver = BleDriver::new(fake.clone());
        let spec = spec(
            &driver,
            &[
                temperature(),
                ("humidity", "int", json!({"characteristicUUID": "aa03"})),
            ],
        );
        let mut dev = driver.connect(&spec).await.unwrap();
        fake.drop_link(MAC);
        assert_eq!(
            push_within(&mut dev, Duration::from_secs(1)).await,
            Some(None)
        );
        let r = dev.read(prop(&spec, "humidity")).await;
        assert!(matches!(r, Err(DriverError::Link(_))), "{r:?}");
        let refs: Vec<_> = spec.properties.iter().collect();
        let out = dev.read_many(&refs).await;
        assert!(
            out.iter().all(|r| matches!(r, Err(DriverError::Link(_)))),
            "{out:?}"
        );
        dev.close().await;
        drop(dev);

        let mut dev = driver.connect(&spec).await.unwrap();
        assert_eq!(
            fake.with(MAC, |p| (p.connects, p.subscriptions.len()))
                .unwrap(),
            (2, 2)
        );
        fake.notify(MAC, short(0xaa01), &[0x00, 0x0D]);
        let (_, v) = push_within(&mut dev, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, Ok(Value::Float(26.0)));
    }

    #[tokio::test]
    async fn connect_errors_are_link_errors() {
        let fake = FakeBle::default();
        let driver = BleDriver::new(fake.clone());
        let spec = spec(&driver, &[temperature()]);
        assert!(
            matches!(driver.connect(&spec).await, Err(DriverError::Link(m)) if m.contains("A4:C1:38:00:00:01 not found"))
        );
        fake.add(MAC, []);
        fake.with(MAC, |p| {
            p.refuse_connect = Some(LinkError::Disconnected(
                "le-connection-abort-by-local".into(),
            ))
        });
        assert!(matches!(
            driver.connect(&spec).await,
            Err(DriverError::Link(_))
        ));
        fake.with(MAC, |p| p.refuse_connect = None);
        // Connected, but the characteristic is missing: the device still connects.
        let mut dev = driver.connect(&spec).await.unwrap();
        assert!(matches!(
            dev.read(&spec.properties[0]).await,
            Err(DriverError::Invalid(_))
        ));
        dev.close().await;
        assert_eq!(fake.with(MAC, |p| p.disconnects).unwrap(), 1);
    }

    #[test]
    fn handles_bluetooth_only() {
        let driver = BleDriver::new(FakeBle::default());
        let def = |kind: &str| ProtocolDef {
            kind: kind.into(),
            config: Json::Null.into(),
            common: Json::Null.into(),
        };
        assert!(driver.handles(&def("bluetooth")));
        assert!(driver.handles(&def("BLE")));
        assert!(!driver.handles(&def("modbus")));
        assert_eq!(driver.name(), "ble");
    }
}
