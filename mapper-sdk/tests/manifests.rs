//! Every manifest in `deploy/` parses into k8s-openapi types without losing a field
//! (a typo would be dropped by the typed parse and show up in the round trip), and the
//! Deployments have what a mapper needs.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use mapper_sdk::config::{CommonArgs, ProfileSetting, Settings, parse_config};
use mapper_sdk::kube_source::{KubeConnection, KubeWatch};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[derive(Default)]
struct Manifests {
    deployments: Vec<(String, Deployment)>,
    config_maps: Vec<ConfigMap>,
    accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
}

/// Parses `doc` as `T` and checks that serialising it back gives the same document.
fn typed<T: DeserializeOwned + Serialize>(file: &str, doc: &Json) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: {} does not parse: {e}", doc["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back, doc,
        "{file}: a field was lost in the typed round trip"
    );
    t
}

fn load() -> Manifests {
    let mut m = Manifests::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Json> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{file}: invalid YAML: {e}"));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            match doc["kind"].as_str().unwrap_or("") {
                "Deployment" => m.deployments.push((file.clone(), typed(&file, &doc))),
                "ConfigMap" => m.config_maps.push(typed(&file, &doc)),
                "ServiceAccount" => m.accounts.push(typed(&file, &doc)),
                "ClusterRole" => m.roles.push(typed(&file, &doc)),
                "ClusterRoleBinding" => m.bindings.push(typed(&file, &doc)),
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    m
}

#[test]
fn every_manifest_parses_into_k8s_openapi_types() {
    let m = load();
    assert!(m.deployments.len() >= 3);
    for (file, d) in &m.deployments {
        let spec = d.spec.as_ref().unwrap();
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        let selector = spec.selector.match_labels.as_ref().unwrap();
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{file}: selector"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.host_network,
            Some(true),
            "{file}: the broker is on the host"
        );
        assert!(
            pod.node_selector.as_ref().is_some_and(|n| !n.is_empty()),
            "{file}: nodeSelector"
        );
        let account = pod.service_account_name.as_deref().unwrap();
        assert!(
            m.accounts
                .iter()
                .any(|a| a.metadata.name.as_deref() == Some(account)),
            "{file}: service account {account} is defined"
        );
        let c = &pod.containers[0];
        // One image name everywhere (README, Dockerfile, manifests).
        let image = c.image.as_deref().unwrap_or_default();
        let mapper = if file.contains("ble") {
            "ble-mapper"
        } else {
            "modbus-mapper"
        };
        assert!(
            image.starts_with(&format!("kubeedge-rust-mappers/{mapper}:")),
            "{file}: image {image}"
        );
        let tag = image.rsplit(':').next().unwrap_or_default();
        let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
        assert!(
            dockerfile.contains(&format!("-t kubeedge-rust-mappers/{mapper}:{tag}")),
            "{file}: the Dockerfile does not build {image}"
        );
        // Privileged only where a device needs it: serial lines (RTU, and DMI, whose
        // devices are not known in advance) and the HCI adapter (BLE).
        let privileged = c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
        let needs = file.contains("rtu") || file.contains("ble") || file.contains("dmi");
        assert!(
            !needs || privileged,
            "{file}: privileged for serial lines and HCI"
        );
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        assert!(
            limits.is_some_and(|l| l.contains_key("memory")),
            "{file}: a memory limit"
        );
        let mounts = c.volume_mounts.as_ref().unwrap();
        let volumes = pod.volumes.as_ref().unwrap();
        for mount in mounts {
            assert!(
                volumes.iter().any(|v| v.name == mount.name),
                "{file}: volume {}",
                mount.name
            );
        }
        let env = c.env.as_ref().unwrap();
        assert!(
            env.iter().any(|e| e.name == "NODE_NAME"),
            "{file}: NODE_NAME"
        );
        assert!(
            env.iter()
                .any(|e| e.name == "NO_COLOR" && e.value.as_deref() == Some("1")),
            "{file}: NO_COLOR=1"
        );
        // The operator endpoint on the host's loopback, probed there by kubelet.
        let port = if file.contains("modbus") { 8089 } else { 8090 };
        let args = c.args.as_ref().unwrap();
        let at = args
            .iter()
            .position(|a| a == "--http-listen")
            .unwrap_or_else(|| panic!("{file}: --http-listen"));
        assert_eq!(
            args.get(at + 1).map(String::as_str),
            Some(format!("127.0.0.1:{port}").as_str()),
            "{file}: http port"
        );
        for (probe, path) in [
            (c.liveness_probe.as_ref(), "/healthz"),
            (c.readiness_probe.as_ref(), "/readyz"),
        ] {
            let get = probe
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{file}: {path} probe"));
            assert_eq!(get.path.as_deref(), Some(path), "{file}");
            assert_eq!(get.host.as_deref(), Some("127.0.0.1"), "{file}: {path}");
            assert_eq!(
                get.port,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port),
                "{file}: {path}"
            );
        }
        // The args parse as the binary's flags.
        let listen = mapper_sdk::config::parse_listen(&args[at + 1]).unwrap();
        assert_eq!(listen.port(), u16::try_from(port).unwrap());
        if file.contains("dmi") {
            // DMI era: edgecore's socket directory from the host.
            let mount = mounts
                .iter()
                .find(|v| v.mount_path == "/etc/kubeedge")
                .unwrap_or_else(|| panic!("{file}: /etc/kubeedge is mounted"));
            let vol = volumes.iter().find(|v| v.name == mount.name).unwrap();
            assert_eq!(
                vol.host_path.as_ref().map(|h| h.path.as_str()),
                Some("/etc/kubeedge"),
                "{file}: the host's /etc/kubeedge"
            );
        }
        for v in volumes {
            let device = v
                .host_path
                .as_ref()
                .is_some_and(|h| h.type_.as_deref() == Some("CharDevice"));
            assert!(
                !device || file.contains("rtu"),
                "{file}: a device mount keeps the pod from starting on nodes without it (only the RTU variant mounts one)"
            );
        }
        if file.contains("devices") || file.contains("dmi") {
            continue;
        }
        // ConfigMap era: the node's profile ConfigMap at /opt/kubeedge/.
        let mount = mounts
            .iter()
            .find(|v| v.mount_path == "/opt/kubeedge/")
            .unwrap();
        let vol = volumes.iter().find(|v| v.name == mount.name).unwrap();
        let cm = vol.config_map.as_ref().unwrap();
        assert!(
            cm.name.starts_with("device-profile-config-"),
            "{file}: {}",
            cm.name
        );
        assert_eq!(
            cm.optional,
            Some(true),
            "{file}: the pod must start before cloudcore creates the profile ConfigMap"
        );
        if file.contains("ble") {
            assert!(
                mounts.iter().any(|v| v.mount_path.contains("dbus")),
                "{file}: the D-Bus socket"
            );
        }
    }
}

#[test]
fn rbac_grants_read_access_to_configmaps_devices_and_models() {
    let m = load();
    let role = &m.roles[0];
    let rules = role.rules.as_ref().unwrap();
    for (group, resource) in [
        ("", "configmaps"),
        ("devices.kubeedge.io", "devices"),
        ("devices.kubeedge.io", "devicemodels"),
    ] {
        let rule = rules
            .iter()
            .find(|r| {
                r.api_groups
                    .as_ref()
                    .is_some_and(|g| g.iter().any(|g| g == group))
                    && r.resources
                        .as_ref()
                        .is_some_and(|x| x.iter().any(|x| x == resource))
            })
            .unwrap_or_else(|| panic!("no rule for {resource}"));
        for verb in ["get", "list", "watch"] {
            assert!(rule.verbs.iter().any(|v| v == verb), "{resource}: {verb}");
        }
        assert!(
            rule.verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "read-only"
        );
    }
    let b = &m.bindings[0];
    assert_eq!(b.role_ref.name, role.metadata.name.clone().unwrap());
    let subject = &b.subjects.as_ref().unwrap()[0];
    assert!(
        m.accounts
            .iter()
            .any(|a| a.metadata.name.as_ref() == Some(&subject.name)
                && a.metadata.namespace == subject.namespace)
    );
}

#[test]
fn the_devices_deployment_config_selects_the_meta_server_source() {
    let m = load();
    let cm = m
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("modbus-mapper-config"))
        .unwrap();
    let text = &cm.data.as_ref().unwrap()["config.yaml"];
    let file = parse_config(text, Path::new("config.yaml")).unwrap();
    let args = CommonArgs {
        node_name: Some("edge-node-1".into()),
        ..CommonArgs::default()
    };
    let s = Settings::merge(&args, file, "modbus", None).unwrap();
    let ProfileSetting::Kube(k) = s.profile else {
        panic!("not a kube source: {:?}", s.profile);
    };
    assert_eq!(k.watch, KubeWatch::Devices);
    assert_eq!(
        k.connection,
        KubeConnection::MetaServer("http://127.0.0.1:10550".into())
    );
    assert_eq!(k.node_name.as_deref(), Some("edge-node-1"));
}

#[cfg(feature = "dmi")]
#[test]
fn the_dmi_deployments_configs_select_the_dmi_source() {
    let m = load();
    for (name, protocol) in [
        ("modbus-mapper-dmi-config", "modbus"),
        ("ble-mapper-dmi-config", "bluetooth"),
    ] {
        let cm = m
            .config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("ConfigMap {name}"));
        let text = &cm.data.as_ref().unwrap()["config.yaml"];
        let file = parse_config(text, Path::new("config.yaml")).unwrap();
        let s = Settings::merge(&CommonArgs::default(), file, "x", None).unwrap();
        let ProfileSetting::Dmi(d) = s.profile else {
            panic!("{name}: not the dmi source: {:?}", s.profile);
        };
        assert_eq!(d.protocols, vec![protocol.to_owned()], "{name}");
        assert_eq!(
            d.edgecore_socket_file(),
            Path::new("/etc/kubeedge/dmi.sock"),
            "{name}"
        );
        // The registered address must be reachable by edgecore: an abstract name.
        assert!(
            d.listen.as_deref().is_none_or(|l| l.starts_with('@')),
            "{name}"
        );
        assert_eq!(
            s.resolve.topic_scheme,
            mapper_sdk::profile::TopicScheme::NamespaceNameIfSet
        );
    }
}

#[test]
fn the_dockerfile_builds_workspace_mappers() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    assert!(
        text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    assert!(text.contains("cargo build --release --locked -p"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (mapper, dir) in [
        ("modbus-mapper", "mappers/modbus"),
        ("ble-mapper", "mappers/ble"),
    ] {
        let toml = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
        assert!(
            toml.contains(&format!("name = \"{mapper}\"")),
            "{dir} builds {mapper}"
        );
    }
    assert!(text.contains("ARG MAPPER=modbus-mapper"));
}
