//! MQTT over TLS against mosquitto: the broker is verified against the configured CA
//! (under `servername` when given) and the mapper authenticates with a client certificate.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mapper_sdk::config::{ProfileSetting, Settings};
use mapper_sdk::model::Value;
use mapper_sdk::mqtt::{MqttSettings, TlsSettings};
use mapper_sdk::profile::ResolveOptions;
use mapper_sdk::runtime::RuntimeOptions;
use mapper_sdk::testing::{MemoryDriver, MemoryState, Mosquitto, TwinPeer, free_port};
use tokio::sync::oneshot;

const PROFILE: &str = r#"{"deviceInstances":[{"id":"dev1","protocol":"p","model":"m",
 "propertyVisitors":[{"propertyName":"t","collectCycle":100000000,"visitorConfig":{}}]}],
 "deviceModels":[{"name":"m","properties":[{"name":"t","dataType":"int"}]}],
 "protocols":[{"name":"p","protocol":"memory"}]}"#;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for DNS name `broker.test` only, and a client certificate.
fn make_pki(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:broker.test\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

async fn reaches_broker(tls_port: u16, peer: &TwinPeer, tls: TlsSettings, name: &str) -> bool {
    let state = MemoryState::default();
    state.set("dev1", "t", Value::Int(7));
    let mut mqtt = MqttSettings::from_url(&format!("ssl://127.0.0.1:{tls_port}"), name).unwrap();
    mqtt.tls = Some(tls);
    let settings = Settings {
        mqtt,
        profile: ProfileSetting::Inline(PROFILE.into()),
        resolve: ResolveOptions::default(),
        runtime: RuntimeOptions::default(),
        about: mapper_sdk::about::About::SDK,
        http: None,
    };
    peer.clear();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(mapper_sdk::run(MemoryDriver::new(state), settings, async {
        let _ = rx.await;
    }));
    let ok = peer
        .wait(Duration::from_secs(4), |p| {
            p.last_actual("dev1", "t").as_deref() == Some("7")
        })
        .await;
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_broker_and_presents_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_pki(d, "other-ca"); // an unrelated CA; its server and client files are replaced next
    make_pki(d, "ca");
    let tls_port = free_port();
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
        d.display()
    );
    let Some(broker) = Mosquitto::start_with(extra) else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let p = |f: &str| Some(d.join(f));
    let good = TlsSettings {
        ca_cert: p("ca.pem"),
        client_cert: p("client.pem"),
        private_key: p("client.key"),
        server_name: Some("broker.test".into()),
    };
    assert!(
        reaches_broker(tls_port, &peer, good.clone(), "tls-good").await,
        "mutual TLS with the right CA and name"
    );
    // The certificate names broker.test, not 127.0.0.1: without servername it must fail.
    let no_name = TlsSettings {
        server_name: None,
        ..good.clone()
    };
    assert!(
        !reaches_broker(tls_port, &peer, no_name, "tls-noname").await,
        "host name must be verified"
    );
    // A CA that did not sign the broker's certificate must fail.
    let wrong_ca = TlsSettings {
        ca_cert: p("other-ca.pem"),
        ..good.clone()
    };
    assert!(
        !reaches_broker(tls_port, &peer, wrong_ca, "tls-wrongca").await,
        "broker must be verified"
    );
    // No client certificate: the broker refuses.
    let no_cert = TlsSettings {
        client_cert: None,
        private_key: None,
        ..good
    };
    assert!(
        !reaches_broker(tls_port, &peer, no_cert, "tls-nocert").await,
        "client certificate required"
    );
}
