//! The simulator's D-Bus surface seen by a plain zbus client: object tree,
//! properties, signal order and error names, compared with BlueZ's.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ble_sim::{BleSim, SimConfig};
use common::*;
use futures::StreamExt;
use tokio::time::timeout;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, MessageStream};

const ADAPTER: &str = "org.bluez.Adapter1";
const DEVICE: &str = "org.bluez.Device1";
const SERVICE: &str = "org.bluez.GattService1";
const CHAR: &str = "org.bluez.GattCharacteristic1";
const DESC: &str = "org.bluez.GattDescriptor1";

const SENSOR_PATH: &str = "/org/bluez/hci0/dev_A4_C1_38_1A_49_90";
const LED_PATH: &str = "/org/bluez/hci0/dev_A4_C1_38_00_00_02";
const FLAKY_PATH: &str = "/org/bluez/hci1/dev_A4_C1_38_00_00_03";

async fn setup() -> (BleSim, Connection) {
    init_tracing();
    let sim = BleSim::start(SimConfig::load(&lab_file()).unwrap())
        .await
        .unwrap();
    let conn = zbus::connection::Builder::address(sim.bus_address())
        .unwrap()
        .build()
        .await
        .unwrap();
    (sim, conn)
}

async fn call<B>(
    conn: &Connection,
    path: &str,
    iface: &str,
    method: &str,
    body: &B,
) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    timeout(
        Duration::from_secs(10),
        conn.call_method(Some("org.bluez"), path, Some(iface), method, body),
    )
    .await
    .expect("method call timed out")
}

fn error_name(r: zbus::Result<zbus::Message>) -> (String, String) {
    match r {
        Err(zbus::Error::MethodError(name, msg, _)) => (name.to_string(), msg.unwrap_or_default()),
        other => panic!("expected a D-Bus error, got {other:?}"),
    }
}

async fn managed(
    conn: &Connection,
) -> HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedValue>>> {
    let reply = call(
        conn,
        "/",
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
        &(),
    )
    .await
    .unwrap();
    reply.body().deserialize().unwrap()
}

async fn introspect(conn: &Connection, path: &str) -> String {
    let reply = call(
        conn,
        path,
        "org.freedesktop.DBus.Introspectable",
        "Introspect",
        &(),
    )
    .await
    .unwrap();
    reply.body().deserialize().unwrap()
}

/// Signals from org.bluez, rendered as short strings in arrival order.
async fn signal_stream(conn: &Connection) -> MessageStream {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.bluez")
        .unwrap()
        .build();
    MessageStream::for_match_rule(rule, conn, Some(256))
        .await
        .unwrap()
}

fn render(msg: &zbus::Message) -> String {
    let h = msg.header();
    let member = h.member().map(|m| m.to_string()).unwrap_or_default();
    let path = h.path().map(|p| p.to_string()).unwrap_or_default();
    match member.as_str() {
        "PropertiesChanged" => {
            let (iface, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                msg.body().deserialize().unwrap();
            let mut keys: Vec<String> = changed
                .iter()
                .map(|(k, v)| match &**v {
                    Value::Bool(b) => format!("{k}={b}"),
                    _ => k.clone(),
                })
                .collect();
            keys.sort();
            format!("changed {} {} {}", short(&path), iface, keys.join(","))
        }
        "InterfacesAdded" => {
            let (p, ifaces): (
                OwnedObjectPath,
                HashMap<String, HashMap<String, OwnedValue>>,
            ) = msg.body().deserialize().unwrap();
            let mut names: Vec<_> = ifaces.keys().cloned().collect();
            names.sort();
            format!("added {} {}", short(p.as_str()), names.join(","))
        }
        "InterfacesRemoved" => {
            let (p, ifaces): (OwnedObjectPath, Vec<String>) = msg.body().deserialize().unwrap();
            format!("removed {} {}", short(p.as_str()), ifaces.join(","))
        }
        other => format!("{other} {path}"),
    }
}

fn short(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// Collect rendered signals until one contains `last` (with a deadline).
async fn collect_until(stream: &mut MessageStream, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    timeout(Duration::from_secs(10), async {
        loop {
            let msg = stream.next().await.unwrap().unwrap();
            let r = render(&msg);
            let done = r.contains(last);
            seen.push(r);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no signal containing {last:?}; saw {seen:?}"));
    seen
}

#[tokio::test]
async fn object_tree_has_bluez_names_and_required_properties() {
    let (sim, conn) = setup().await;
    let objs = managed(&conn).await;
    for (name, path) in [("hci1", "/org/bluez/hci1"), ("hci0", "/org/bluez/hci0")] {
        let a = &objs[&OwnedObjectPath::try_from(path).unwrap()][ADAPTER];
        for prop in [
            "Address",
            "AddressType",
            "Name",
            "Alias",
            "Modalias",
            "Powered",
            "Discovering",
        ] {
            assert!(a.contains_key(prop), "{name} lacks {prop}");
        }
        let modalias: String = a["Modalias"].try_clone().unwrap().try_into().unwrap();
        assert_eq!(modalias, "usb:v1D6Bp0246d0542");
    }
    let led = &objs[&OwnedObjectPath::try_from(LED_PATH).unwrap()][DEVICE];
    for prop in [
        "Address",
        "AddressType",
        "Name",
        "Alias",
        "Paired",
        "Connected",
        "ServicesResolved",
        "Trusted",
        "Blocked",
        "LegacyPairing",
        "RSSI",
        "UUIDs",
        "Adapter",
    ] {
        assert!(led.contains_key(prop), "device lacks {prop}");
    }
    // Optional properties are left out, as BlueZ does.
    assert!(!led.contains_key("ManufacturerData"));
    // On-discovery devices and GATT objects are absent before scan/connect.
    assert!(!objs.keys().any(|p| p.as_str().starts_with(SENSOR_PATH)));
    assert!(!objs.keys().any(|p| p.as_str().contains("/service")));
    let xml = introspect(&conn, "/org/bluez").await;
    assert!(
        xml.contains(r#"node name="hci0""#) && xml.contains(r#"node name="hci1""#),
        "{xml}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn connect_exports_gatt_before_services_resolved_and_disconnect_reverses_it() {
    let (sim, conn) = setup().await;
    let mut signals = signal_stream(&conn).await;
    call(&conn, LED_PATH, DEVICE, "Connect", &()).await.unwrap();
    let seen = collect_until(&mut signals, "ServicesResolved=true").await;
    assert_eq!(
        seen,
        vec![
            "changed dev_A4_C1_38_00_00_02 org.bluez.Device1 Connected=true",
            "added service000a org.bluez.GattService1",
            "added char000b org.bluez.GattCharacteristic1",
            "changed dev_A4_C1_38_00_00_02 org.bluez.Device1 ServicesResolved=true",
        ]
    );
    // GATT objects with their properties in GetManagedObjects and introspection.
    let objs = managed(&conn).await;
    let svc =
        &objs[&OwnedObjectPath::try_from(format!("{LED_PATH}/service000a")).unwrap()][SERVICE];
    for p in ["UUID", "Primary", "Device"] {
        assert!(svc.contains_key(p), "service lacks {p}");
    }
    let chr = &objs
        [&OwnedObjectPath::try_from(format!("{LED_PATH}/service000a/char000b")).unwrap()][CHAR];
    for p in ["UUID", "Service", "Value", "Notifying", "Flags"] {
        assert!(chr.contains_key(p), "characteristic lacks {p}");
    }
    let flags: Vec<String> = chr["Flags"].try_clone().unwrap().try_into().unwrap();
    assert_eq!(flags, vec!["read", "write", "write-without-response"]);
    assert!(
        introspect(&conn, LED_PATH)
            .await
            .contains(r#"node name="service000a""#)
    );

    call(&conn, LED_PATH, DEVICE, "Disconnect", &())
        .await
        .unwrap();
    let seen = collect_until(&mut signals, "removed service000a").await;
    assert_eq!(
        seen,
        vec![
            "changed dev_A4_C1_38_00_00_02 org.bluez.Device1 ServicesResolved=false",
            "changed dev_A4_C1_38_00_00_02 org.bluez.Device1 Connected=false",
            "removed char000b org.bluez.GattCharacteristic1",
            "removed service000a org.bluez.GattService1",
        ]
    );
    assert!(
        !managed(&conn)
            .await
            .keys()
            .any(|p| p.as_str().contains("/service"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn discovery_adds_devices_and_remove_device_removes_them() {
    let (sim, conn) = setup().await;
    let mut signals = signal_stream(&conn).await;
    assert!(!sim.is_exported(SENSOR).unwrap());
    call(&conn, "/org/bluez/hci0", ADAPTER, "StartDiscovery", &())
        .await
        .unwrap();
    let seen = collect_until(&mut signals, "added dev_A4_C1_38_1A_49_90").await;
    assert_eq!(
        seen,
        vec![
            "changed hci0 org.bluez.Adapter1 Discovering=true",
            "added dev_A4_C1_38_1A_49_90 org.bluez.Device1",
        ]
    );
    let objs = managed(&conn).await;
    let dev = &objs[&OwnedObjectPath::try_from(SENSOR_PATH).unwrap()][DEVICE];
    assert!(dev.contains_key("ManufacturerData"));
    call(&conn, "/org/bluez/hci0", ADAPTER, "StopDiscovery", &())
        .await
        .unwrap();
    let (name, msg) =
        error_name(call(&conn, "/org/bluez/hci0", ADAPTER, "StopDiscovery", &()).await);
    assert_eq!(
        (name.as_str(), msg.as_str()),
        ("org.bluez.Error.Failed", "No discovery started")
    );

    let p = OwnedObjectPath::try_from(SENSOR_PATH).unwrap();
    call(
        &conn,
        "/org/bluez/hci0",
        ADAPTER,
        "RemoveDevice",
        &(p.clone(),),
    )
    .await
    .unwrap();
    collect_until(
        &mut signals,
        "removed dev_A4_C1_38_1A_49_90 org.bluez.Device1",
    )
    .await;
    let (name, _) =
        error_name(call(&conn, "/org/bluez/hci0", ADAPTER, "RemoveDevice", &(p,)).await);
    assert_eq!(name, "org.bluez.Error.DoesNotExist");
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_carry_bluez_names() {
    let (sim, conn) = setup().await;
    let no_opts: HashMap<String, Value<'_>> = HashMap::new();
    // Refused connect (fault from the file).
    let (name, _) = error_name(call(&conn, FLAKY_PATH, DEVICE, "Connect", &()).await);
    assert_eq!(name, "org.bluez.Error.Failed");
    // Adapter: unknown discovery filter key; powered off adapter cannot scan.
    let mut filter: HashMap<String, Value<'_>> = HashMap::new();
    filter.insert("Bogus".into(), Value::from(1u32));
    let (name, _) = error_name(
        call(
            &conn,
            "/org/bluez/hci0",
            ADAPTER,
            "SetDiscoveryFilter",
            &(filter,),
        )
        .await,
    );
    assert_eq!(name, "org.bluez.Error.InvalidArguments");
    call(
        &conn,
        "/org/bluez/hci1",
        "org.freedesktop.DBus.Properties",
        "Set",
        &(ADAPTER, "Powered", Value::from(false)),
    )
    .await
    .unwrap();
    let (name, _) =
        error_name(call(&conn, "/org/bluez/hci1", ADAPTER, "StartDiscovery", &()).await);
    assert_eq!(name, "org.bluez.Error.NotReady");

    call(&conn, LED_PATH, DEVICE, "Connect", &()).await.unwrap();
    let ch = format!("{LED_PATH}/service000a/char000b");
    // No notify flag.
    let (name, _) = error_name(call(&conn, &ch, CHAR, "StartNotify", &()).await);
    assert_eq!(name, "org.bluez.Error.NotSupported");
    // Unknown write type.
    let mut opts: HashMap<String, Value<'_>> = HashMap::new();
    opts.insert("type".into(), Value::from("sideways"));
    let (name, _) = error_name(call(&conn, &ch, CHAR, "WriteValue", &(vec![1u8], opts)).await);
    assert_eq!(name, "org.bluez.Error.InvalidArguments");
    // Offset past the end.
    let mut opts: HashMap<String, Value<'_>> = HashMap::new();
    opts.insert("offset".into(), Value::from(9u16));
    let (name, _) = error_name(call(&conn, &ch, CHAR, "ReadValue", &(opts,)).await);
    assert_eq!(name, "org.bluez.Error.InvalidOffset");
    call(&conn, LED_PATH, DEVICE, "Disconnect", &())
        .await
        .unwrap();

    // The sensor's config characteristic has no write-without-response; the
    // CCCD is managed by StartNotify and cannot be written.
    call(&conn, "/org/bluez/hci0", ADAPTER, "StartDiscovery", &())
        .await
        .unwrap();
    call(&conn, SENSOR_PATH, DEVICE, "Connect", &())
        .await
        .unwrap();
    let conf = format!("{SENSOR_PATH}/service000a/char000e");
    let mut opts: HashMap<String, Value<'_>> = HashMap::new();
    opts.insert("type".into(), Value::from("command"));
    let (name, _) = error_name(call(&conn, &conf, CHAR, "WriteValue", &(vec![1u8], opts)).await);
    assert_eq!(name, "org.bluez.Error.NotPermitted");
    let data = format!("{SENSOR_PATH}/service000a/char000b");
    // StopNotify without a session: the exact message btleplug matches on.
    let (name, msg) = error_name(call(&conn, &data, CHAR, "StopNotify", &()).await);
    assert_eq!(
        (name.as_str(), msg.as_str()),
        ("org.bluez.Error.Failed", "No notify session started")
    );
    let cccd = format!("{SENSOR_PATH}/service000a/char000b/desc000d");
    let (name, _) = error_name(
        call(
            &conn,
            &cccd,
            DESC,
            "WriteValue",
            &(vec![1u8, 0], no_opts.clone()),
        )
        .await,
    );
    assert_eq!(name, "org.bluez.Error.NotPermitted");
    call(&conn, SENSOR_PATH, DEVICE, "Disconnect", &())
        .await
        .unwrap();
    // Reads on a disconnected device: the objects are gone.
    let r = call(&conn, &conf, CHAR, "ReadValue", &(no_opts,)).await;
    assert!(r.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn reads_echo_value_and_notifications_follow_notifying() {
    let (sim, conn) = setup().await;
    call(&conn, "/org/bluez/hci0", ADAPTER, "StartDiscovery", &())
        .await
        .unwrap();
    call(&conn, SENSOR_PATH, DEVICE, "Connect", &())
        .await
        .unwrap();
    let mut signals = signal_stream(&conn).await;
    let data = format!("{SENSOR_PATH}/service000a/char000b");
    let conf = format!("{SENSOR_PATH}/service000a/char000e");
    let no_opts: HashMap<String, Value<'_>> = HashMap::new();

    // A read without StartNotify still produces a Value change.
    let reply = call(&conn, &conf, CHAR, "ReadValue", &(no_opts.clone(),))
        .await
        .unwrap();
    let v: Vec<u8> = reply.body().deserialize().unwrap();
    assert_eq!(v, vec![0]);
    collect_until(&mut signals, "char000e org.bluez.GattCharacteristic1 Value").await;

    // Enable the sensor, subscribe: Notifying=true, then Value changes per tick.
    let mut opts: HashMap<String, Value<'_>> = HashMap::new();
    opts.insert("type".into(), Value::from("request"));
    call(&conn, &conf, CHAR, "WriteValue", &(vec![1u8], opts))
        .await
        .unwrap();
    assert_eq!(sim.writes(SENSOR, TEMP_CONF).unwrap(), vec![vec![1]]);
    call(&conn, &data, CHAR, "StartNotify", &()).await.unwrap();
    collect_until(
        &mut signals,
        "char000b org.bluez.GattCharacteristic1 Notifying=true",
    )
    .await;
    sim.tick().await;
    collect_until(&mut signals, "char000b org.bluez.GattCharacteristic1 Value").await;
    // The CCCD reflects the subscription.
    let cccd = format!("{SENSOR_PATH}/service000a/char000b/desc000d");
    let reply = call(&conn, &cccd, DESC, "ReadValue", &(no_opts.clone(),))
        .await
        .unwrap();
    let v: Vec<u8> = reply.body().deserialize().unwrap();
    assert_eq!(v, vec![1, 0]);
    call(&conn, &data, CHAR, "StopNotify", &()).await.unwrap();
    collect_until(
        &mut signals,
        "char000b org.bluez.GattCharacteristic1 Notifying=false",
    )
    .await;
    sim.shutdown().await;
}

#[test]
fn shipped_device_files_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("devices");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let c = SimConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.devices.is_empty(), "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 3);
    let tag = SimConfig::load(&dir.join("sensortag.yaml")).unwrap();
    let d = &tag.devices[0];
    let uuids: Vec<String> = d
        .services
        .iter()
        .flat_map(|s| s.characteristics.iter().map(|c| c.uuid.to_string()))
        .collect();
    assert!(uuids.contains(&TEMP_DATA.to_owned()));
    assert!(uuids.contains(&HUM_DATA.to_owned()));
    assert!(uuids.contains(&HUM_CONF.to_owned()));
}
