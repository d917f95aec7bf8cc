//! The D-Bus objects, named and shaped like BlueZ's.
//!
//! Each object is a thin view: it holds the shared [`Core`] and its indices,
//! reads properties from the core on demand and forwards methods to it.
//! zbus supplies `org.freedesktop.DBus.Properties` (Get/GetAll/Set),
//! `Introspectable` (with child nodes, which btleplug uses to discover
//! services) and, through the `ObjectManager` at `/`, GetManagedObjects and
//! the InterfacesAdded/InterfacesRemoved signals.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::fdo;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, interface};

use crate::core::{Core, WriteKind};
use crate::error::BluezError;

type Options = HashMap<String, OwnedValue>;

fn no_such_property(name: &str) -> fdo::Error {
    fdo::Error::InvalidArgs(format!("No such property '{name}'"))
}

/// The `offset` option (BlueZ documents uint16; btleplug sends uint64).
fn option_offset(options: &Options) -> Result<usize, BluezError> {
    let Some(v) = options.get("offset") else {
        return Ok(0);
    };
    let n: Option<u64> = match &**v {
        Value::U16(n) => Some(u64::from(*n)),
        Value::U32(n) => Some(u64::from(*n)),
        Value::U64(n) => Some(*n),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| BluezError::InvalidArguments("Invalid arguments in method call".to_owned()))
}

/// The `type` option of WriteValue.
fn option_write_kind(options: &Options) -> Result<Option<WriteKind>, BluezError> {
    let Some(v) = options.get("type") else {
        return Ok(None);
    };
    match &**v {
        Value::Str(s) => match s.as_str() {
            "request" => Ok(Some(WriteKind::Request)),
            "command" => Ok(Some(WriteKind::Command)),
            "reliable" => Ok(Some(WriteKind::Reliable)),
            _ => Err(BluezError::InvalidArguments(
                "Invalid arguments in method call".to_owned(),
            )),
        },
        _ => Err(BluezError::InvalidArguments(
            "Invalid arguments in method call".to_owned(),
        )),
    }
}

// ---------------------------------------------------------------- adapter

/// `org.bluez.Adapter1` at `/org/bluez/hciN`.
pub(crate) struct AdapterIface {
    core: Arc<Core>,
    a: usize,
}

impl AdapterIface {
    pub fn new(core: Arc<Core>, a: usize) -> Self {
        AdapterIface { core, a }
    }
}

#[interface(name = "org.bluez.Adapter1")]
impl AdapterIface {
    async fn start_discovery(
        &self,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BluezError> {
        self.core.start_discovery(conn, self.a).await
    }

    async fn stop_discovery(
        &self,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BluezError> {
        self.core.stop_discovery(conn, self.a).await
    }

    async fn set_discovery_filter(&self, properties: Options) -> Result<(), BluezError> {
        const KNOWN: [&str; 7] = [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ];
        if let Some(k) = properties.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            tracing::debug!(key = %k, "unknown discovery filter key");
            return Err(BluezError::InvalidArguments(
                "Invalid arguments in method call".to_owned(),
            ));
        }
        if let Some(t) = properties.get("Transport") {
            let ok = matches!(&**t, Value::Str(s) if matches!(s.as_str(), "auto" | "bredr" | "le"));
            if !ok {
                return Err(BluezError::InvalidArguments(
                    "Invalid arguments in method call".to_owned(),
                ));
            }
        }
        tracing::debug!(keys = ?properties.keys().collect::<Vec<_>>(), "discovery filter set");
        Ok(())
    }

    async fn get_discovery_filters(&self) -> Vec<String> {
        [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    async fn remove_device(
        &self,
        device: OwnedObjectPath,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BluezError> {
        let d = {
            let st = self.core.state();
            st.devices
                .iter()
                .position(|d| d.adapter == self.a && d.exported && d.path == device)
        };
        match d {
            Some(d) => self.core.remove_device(conn, d).await,
            None => Err(BluezError::DoesNotExist("Does Not Exist".to_owned())),
        }
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.core.state().adapters[self.a].spec.address.to_string()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".to_owned()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.core.state().adapters[self.a].spec.alias.clone()
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.core.state().adapters[self.a].spec.alias.clone()
    }

    #[zbus(property)]
    fn class(&self) -> u32 {
        0
    }

    #[zbus(property)]
    fn powered(&self) -> bool {
        self.core.state().adapters[self.a].powered
    }

    #[zbus(property)]
    async fn set_powered(
        &self,
        value: bool,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::Result<()> {
        let stop = {
            let mut st = self.core.state();
            let ad = &mut st.adapters[self.a];
            ad.powered = value;
            !value && ad.discovering
        };
        if stop {
            let _ = self.core.stop_discovery(conn, self.a).await;
        }
        tracing::info!(adapter = self.a, powered = value, "adapter power set");
        Ok(())
    }

    #[zbus(property)]
    fn discoverable(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn pairable(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn discovering(&self) -> bool {
        self.core.state().adapters[self.a].discovering
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        Vec::new()
    }

    #[zbus(property)]
    fn modalias(&self) -> String {
        self.core.state().adapters[self.a].spec.modalias.clone()
    }
}

// ---------------------------------------------------------------- device

/// `org.bluez.Device1` at `/org/bluez/hciN/dev_AA_BB_CC_DD_EE_FF`.
pub(crate) struct DeviceIface {
    core: Arc<Core>,
    d: usize,
}

impl DeviceIface {
    pub fn new(core: Arc<Core>, d: usize) -> Self {
        DeviceIface { core, d }
    }
}

#[interface(name = "org.bluez.Device1")]
impl DeviceIface {
    async fn connect(&self, #[zbus(connection)] conn: &Connection) -> Result<(), BluezError> {
        self.core.connect(conn, self.d).await
    }

    async fn disconnect(&self, #[zbus(connection)] conn: &Connection) -> Result<(), BluezError> {
        self.core
            .disconnect(conn, self.d, "client request")
            .await
            .map(|_| ())
    }

    async fn pair(&self) -> Result<(), BluezError> {
        Err(BluezError::NotSupported(
            "Operation is not supported".to_owned(),
        ))
    }

    async fn cancel_pairing(&self) -> Result<(), BluezError> {
        Err(BluezError::DoesNotExist("Does Not Exist".to_owned()))
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.core.state().devices[self.d].spec.address.to_string()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        self.core.state().devices[self.d]
            .spec
            .address_type
            .as_str()
            .to_owned()
    }

    #[zbus(property)]
    fn name(&self) -> fdo::Result<String> {
        self.core.state().devices[self.d]
            .spec
            .name
            .clone()
            .ok_or_else(|| no_such_property("Name"))
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        let st = self.core.state();
        let spec = &st.devices[self.d].spec;
        spec.name
            .clone()
            .unwrap_or_else(|| spec.address.to_string().replace(':', "-"))
    }

    #[zbus(property)]
    fn adapter(&self) -> OwnedObjectPath {
        let st = self.core.state();
        st.adapters[st.devices[self.d].adapter].path.clone()
    }

    #[zbus(property)]
    fn paired(&self) -> bool {
        self.core.state().devices[self.d].paired
    }

    #[zbus(property)]
    fn bonded(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn connected(&self) -> bool {
        self.core.state().devices[self.d].connected
    }

    #[zbus(property)]
    fn services_resolved(&self) -> bool {
        self.core.state().devices[self.d].resolved
    }

    #[zbus(property)]
    fn trusted(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn blocked(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn legacy_pairing(&self) -> bool {
        false
    }

    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> fdo::Result<i16> {
        self.core.state().devices[self.d]
            .spec
            .rssi
            .ok_or_else(|| no_such_property("RSSI"))
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        let st = self.core.state();
        let mut v: Vec<String> = st.devices[self.d]
            .spec
            .services
            .iter()
            .map(|s| s.uuid.to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    #[zbus(property)]
    fn manufacturer_data(&self) -> fdo::Result<HashMap<u16, OwnedValue>> {
        let st = self.core.state();
        let md = &st.devices[self.d].spec.manufacturer_data;
        if md.is_empty() {
            return Err(no_such_property("ManufacturerData"));
        }
        md.iter()
            .map(|(k, v)| {
                OwnedValue::try_from(Value::from(v.clone()))
                    .map(|ov| (*k, ov))
                    .map_err(|e| fdo::Error::Failed(e.to_string()))
            })
            .collect()
    }
}

// ---------------------------------------------------------------- GATT

/// `org.bluez.GattService1` at `.../serviceXXXX`.
pub(crate) struct ServiceIface {
    core: Arc<Core>,
    d: usize,
    s: usize,
}

impl ServiceIface {
    pub fn new(core: Arc<Core>, d: usize, s: usize) -> Self {
        ServiceIface { core, d, s }
    }
}

#[interface(name = "org.bluez.GattService1")]
impl ServiceIface {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.core.state().devices[self.d].services[self.s]
            .uuid
            .to_string()
    }

    #[zbus(property)]
    fn primary(&self) -> bool {
        self.core.state().devices[self.d].services[self.s].primary
    }

    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        self.core.state().devices[self.d].path.clone()
    }

    #[zbus(property)]
    fn includes(&self) -> Vec<OwnedObjectPath> {
        Vec::new()
    }

    #[zbus(property)]
    fn handle(&self) -> u16 {
        self.core.state().devices[self.d].services[self.s].handle
    }
}

/// `org.bluez.GattCharacteristic1` at `.../serviceXXXX/charYYYY`.
pub(crate) struct CharIface {
    core: Arc<Core>,
    d: usize,
    c: usize,
}

impl CharIface {
    pub fn new(core: Arc<Core>, d: usize, c: usize) -> Self {
        CharIface { core, d, c }
    }
}

#[interface(name = "org.bluez.GattCharacteristic1")]
impl CharIface {
    async fn read_value(
        &self,
        options: Options,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<u8>, BluezError> {
        let offset = option_offset(&options)?;
        self.core.read_char(conn, self.d, self.c, offset).await
    }

    async fn write_value(&self, value: Vec<u8>, options: Options) -> Result<(), BluezError> {
        let offset = option_offset(&options)?;
        let kind = option_write_kind(&options)?;
        self.core.write_char(self.d, self.c, value, kind, offset)
    }

    async fn start_notify(&self, #[zbus(connection)] conn: &Connection) -> Result<(), BluezError> {
        self.core.set_notify(conn, self.d, self.c, true).await
    }

    async fn stop_notify(&self, #[zbus(connection)] conn: &Connection) -> Result<(), BluezError> {
        self.core.set_notify(conn, self.d, self.c, false).await
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.core.state().devices[self.d].chars[self.c]
            .uuid
            .to_string()
    }

    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        let st = self.core.state();
        let dev = &st.devices[self.d];
        dev.services[dev.chars[self.c].service].path.clone()
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.core.state().devices[self.d].measured(self.c)
    }

    #[zbus(property)]
    fn notifying(&self) -> bool {
        self.core.state().devices[self.d].chars[self.c].notifying
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.core.state().devices[self.d].chars[self.c]
            .flags
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect()
    }

    #[zbus(property, name = "MTU")]
    fn mtu(&self) -> u16 {
        247
    }

    #[zbus(property)]
    fn handle(&self) -> u16 {
        self.core.state().devices[self.d].chars[self.c].handle
    }
}

/// `org.bluez.GattDescriptor1` at `.../charYYYY/descZZZZ`.
pub(crate) struct DescIface {
    core: Arc<Core>,
    d: usize,
    x: usize,
}

impl DescIface {
    pub fn new(core: Arc<Core>, d: usize, x: usize) -> Self {
        DescIface { core, d, x }
    }
}

#[interface(name = "org.bluez.GattDescriptor1")]
impl DescIface {
    async fn read_value(&self, options: Options) -> Result<Vec<u8>, BluezError> {
        let offset = option_offset(&options)?;
        self.core.read_desc(self.d, self.x, offset)
    }

    async fn write_value(&self, value: Vec<u8>, options: Options) -> Result<(), BluezError> {
        let _ = option_offset(&options)?;
        self.core.write_desc(self.d, self.x, value)
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.core.state().devices[self.d].descs[self.x]
            .uuid
            .to_string()
    }

    #[zbus(property)]
    fn characteristic(&self) -> OwnedObjectPath {
        let st = self.core.state();
        let dev = &st.devices[self.d];
        dev.chars[dev.descs[self.x].chr].path.clone()
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.core.state().devices[self.d].descs[self.x]
            .value
            .clone()
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        let st = self.core.state();
        if st.devices[self.d].descs[self.x].uuid.short16() == Some(0x2902) {
            vec!["read".to_owned()]
        } else {
            vec!["read".to_owned(), "write".to_owned()]
        }
    }

    #[zbus(property)]
    fn handle(&self) -> u16 {
        self.core.state().devices[self.d].descs[self.x].handle
    }
}
