//! Profile sources that read from the Kubernetes API (or edgecore's MetaServer), behind
//! the `kube` cargo feature.
//!
//! Two shapes, both feeding the same `watch::Sender<Option<ProfileText>>` that
//! [`crate::run`] consumes, so resolve, bind and the restart-only-what-changed diff are
//! the file source's:
//!
//! - [`KubeWatch::ConfigMap`]: the device-profile ConfigMap
//!   (`device-profile-config-<node>`,
//!   docs/kubeedge-contract.md#rule-the-configmap-name-key-and-mount) watched by name; each version is
//!   sent as the ConfigMap resource itself (resolve reads its `deviceProfile.json`).
//! - [`KubeWatch::Devices`]: v1beta1 Devices (those whose `spec.nodeName` is this node)
//!   and DeviceModels, re-serialised as one JSON `List` after every change.
//!
//! Objects are read as [`DynamicObject`]s, so no CRD structs are needed and a malformed
//! object never fails a whole list: resolve reports it by name and the others run.
//! `status`, `resourceVersion` and `managedFields` are dropped before rendering, so
//! edgecore's status reports do not make the mapper re-apply its profile.
//!
//! Settings (config file `mapper:` keys; flags exist in builds with the feature):
//!
//! | Key | Flag / env | Meaning |
//! |---|---|---|
//! | `source` | `--source` / `MAPPER_SOURCE` | `file` (default), `configmap` or `devices` |
//! | `metaServer` | `--meta-server` / `META_SERVER` | plain-HTTP endpoint, e.g. `http://127.0.0.1:10550` |
//! | `kubeconfig` | `--kubeconfig` | a kubeconfig file (when no `metaServer`) |
//! | `configMapName` | `--configmap-name` | default `device-profile-config-<nodeName>` |
//! | `namespace` | | the ConfigMap's namespace (default `default`); for `devices`, unset watches all namespaces |
//! | `nodeName` | `--node-name` / `NODE_NAME` | only Devices with this `spec.nodeName` |
//!
//! With neither `metaServer` nor `kubeconfig`, the service account is used inside a
//! cluster (`KUBERNETES_SERVICE_HOST` set) and [`DEFAULT_META_SERVER`] elsewhere.
//!
//! Watch errors never end the source: they are logged, backed off (kube's default
//! backoff) and the watch resumes, re-listing when the server says 410 Gone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, TypeMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use serde_json::{Value as Json, json};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::source::{Fingerprint, ProfileText};

/// edgecore's MetaServer, the default API endpoint on an edge node.
pub const DEFAULT_META_SERVER: &str = "http://127.0.0.1:10550";

/// How to reach the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeConnection {
    /// In-cluster service account when `KUBERNETES_SERVICE_HOST` is set, else the
    /// MetaServer at [`DEFAULT_META_SERVER`].
    Default,
    /// The pod's service account.
    InCluster,
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// A plain-HTTP endpoint without credentials, e.g. edgecore's MetaServer.
    MetaServer(String),
}

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeWatch {
    /// The device-profile ConfigMap of this name.
    ConfigMap {
        /// Usually `device-profile-config-<node>`.
        name: String,
    },
    /// v1beta1 Devices bound to this node and all DeviceModels.
    Devices,
}

/// Settings of a kube profile source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    /// How to reach the API.
    pub connection: KubeConnection,
    /// What to watch.
    pub watch: KubeWatch,
    /// The namespace (the ConfigMap's; for Devices, `None` watches all namespaces).
    pub namespace: Option<String>,
    /// Only Devices whose `spec.nodeName` is this (`None`: every Device).
    pub node_name: Option<String>,
}

/// A connection problem.
#[derive(Debug, Error)]
pub enum KubeSourceError {
    /// The endpoint or kubeconfig is unusable.
    #[error("kubernetes connection: {0}")]
    Config(String),
}

/// Builds a kube [`Client`] for `connection`.
pub async fn client(connection: &KubeConnection) -> Result<Client, KubeSourceError> {
    let err = |e: &dyn std::fmt::Display| KubeSourceError::Config(e.to_string());
    let config = match connection {
        KubeConnection::Default => {
            if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
                Config::incluster().map_err(|e| err(&e))?
            } else {
                meta_server(DEFAULT_META_SERVER)?
            }
        }
        KubeConnection::InCluster => Config::incluster().map_err(|e| err(&e))?,
        KubeConnection::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                KubeSourceError::Config(format!("kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    KubeSourceError::Config(format!("kubeconfig {}: {e}", path.display()))
                })?
        }
        KubeConnection::MetaServer(url) => meta_server(url)?,
    };
    Client::try_from(config).map_err(|e| err(&e))
}

fn meta_server(url: &str) -> Result<Config, KubeSourceError> {
    let uri = url.parse().map_err(|e| {
        KubeSourceError::Config(format!(
            "{url:?} is not a URL ({e}); use e.g. {DEFAULT_META_SERVER}"
        ))
    })?;
    Ok(Config::new(uri))
}

/// The API resource of v1beta1 Devices.
pub fn device_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "devices.kubeedge.io",
        "v1beta1",
        "Device",
    ))
}

/// The API resource of v1beta1 DeviceModels.
pub fn device_model_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "devices.kubeedge.io",
        "v1beta1",
        "DeviceModel",
    ))
}

/// The API resource of ConfigMaps.
pub fn config_map_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
}

type Key = (String, String);

/// One watched collection: the objects as of the last complete list plus later events.
struct Cache {
    resource: ApiResource,
    live: BTreeMap<Key, Json>,
    init: Option<BTreeMap<Key, Json>>,
    ready: bool,
}

impl Cache {
    fn new(resource: ApiResource) -> Self {
        Self {
            resource,
            live: BTreeMap::new(),
            init: None,
            ready: false,
        }
    }

    /// Applies one watcher event; true when the visible contents may have changed.
    fn apply(&mut self, event: Event<DynamicObject>) -> bool {
        match event {
            Event::Init => {
                self.init = Some(BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                let (k, v) = self.entry(obj);
                self.init.get_or_insert_with(BTreeMap::new).insert(k, v);
                false
            }
            Event::InitDone => {
                if let Some(fresh) = self.init.take() {
                    self.live = fresh;
                }
                self.ready = true;
                true
            }
            Event::Apply(obj) => {
                let (k, v) = self.entry(obj);
                self.live.insert(k, v);
                true
            }
            Event::Delete(obj) => {
                let (k, _) = self.entry(obj);
                self.live.remove(&k);
                true
            }
        }
    }

    /// The object as rendered: with its type, without status and volatile metadata.
    fn entry(&self, mut obj: DynamicObject) -> (Key, Json) {
        obj.types = Some(TypeMeta {
            api_version: self.resource.api_version.clone(),
            kind: self.resource.kind.clone(),
        });
        obj.metadata.resource_version = None;
        obj.metadata.managed_fields = None;
        obj.metadata.generation = None;
        let key = (
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default(),
        );
        let mut v = serde_json::to_value(&obj).unwrap_or(Json::Null);
        if let Json::Object(m) = &mut v {
            m.remove("status");
        }
        (key, v)
    }
}

/// The profile text sent when the watched ConfigMap does not exist: no devices.
pub const EMPTY_PROFILE: &str = r#"{"deviceInstances":[],"deviceModels":[],"protocols":[]}"#;

/// Whether a Device belongs to `node`. A Device whose spec cannot be read is kept, so
/// that resolve reports it by name.
fn on_node(device: &Json, node: Option<&str>) -> bool {
    let Some(node) = node else { return true };
    match device.get("spec") {
        Some(Json::Object(spec)) => match spec.get("nodeName") {
            Some(Json::String(n)) => n == node,
            Some(Json::Null) | None => false,
            Some(_) => true,
        },
        _ => true,
    }
}

/// Renders the profile text from the caches (pure).
fn render(watch: &KubeWatch, caches: &[Cache], node: Option<&str>) -> String {
    match watch {
        KubeWatch::ConfigMap { .. } => caches
            .first()
            .and_then(|c| c.live.values().next())
            .map_or_else(|| EMPTY_PROFILE.to_owned(), Json::to_string),
        KubeWatch::Devices => {
            let mut items: Vec<Json> = Vec::new();
            for c in caches {
                let devices = c.resource.kind == "Device";
                items.extend(
                    c.live
                        .values()
                        .filter(|v| !devices || on_node(v, node))
                        .cloned(),
                );
            }
            json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
        }
    }
}

/// A running kube profile source.
pub struct KubeSource {
    client: Client,
    settings: KubeSettings,
}

impl KubeSource {
    /// A source reading through `client`.
    pub fn new(client: Client, settings: KubeSettings) -> Self {
        Self { client, settings }
    }

    fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        match &self.settings.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// Watches until `cancel`, sending each new profile text on `tx`. Never ends on a
    /// watch error.
    pub async fn watch(self, tx: watch::Sender<Option<ProfileText>>, cancel: CancellationToken) {
        let (resources, config) = match &self.settings.watch {
            KubeWatch::ConfigMap { name } => (
                vec![config_map_resource()],
                watcher::Config::default().fields(&format!("metadata.name={name}")),
            ),
            KubeWatch::Devices => (
                vec![device_model_resource(), device_resource()],
                watcher::Config::default(),
            ),
        };
        let mut streams: Vec<BoxStream<'static, (usize, _)>> = Vec::new();
        let mut caches = Vec::new();
        for (i, r) in resources.into_iter().enumerate() {
            let s = watcher::watcher(self.api(&r), config.clone())
                .default_backoff()
                .map(move |ev| (i, ev))
                .boxed();
            streams.push(s);
            caches.push(Cache::new(r));
        }
        let mut events = futures_util::stream::select_all(streams);
        let node = self.settings.node_name.clone();
        let mut last: Option<Fingerprint> = None;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return,
                next = events.next() => next,
            };
            let Some((i, ev)) = next else {
                warn!("the kubernetes watch ended; stopping the kube profile source");
                return;
            };
            let changed = match ev {
                Ok(ev) => caches.get_mut(i).is_some_and(|c| c.apply(ev)),
                Err(e) => {
                    let kind = caches.get(i).map_or("", |c| c.resource.kind.as_str());
                    warn!(kind, error = %e, "kubernetes watch failed; retrying with backoff");
                    false
                }
            };
            if !changed || !caches.iter().all(|c| c.ready) {
                continue;
            }
            let text = render(&self.settings.watch, &caches, node.as_deref());
            let print = Fingerprint::of(&text);
            if last != Some(print) {
                info!(bytes = text.len(), "profile changed in the kubernetes API");
                last = Some(print);
                if tx.send(Some(ProfileText::from(text))).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn obj(name: &str, spec: Json) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"},
            "spec": spec,
            "status": {"twins": []},
        }))
        .unwrap()
    }

    #[test]
    fn caches_swap_on_init_done_and_render_a_filtered_list() {
        let mut models = Cache::new(device_model_resource());
        let mut devices = Cache::new(device_resource());
        assert!(!models.apply(Event::Init));
        models.apply(Event::InitApply(obj("m", json!({}))));
        assert!(models.apply(Event::InitDone));
        devices.apply(Event::Init);
        devices.apply(Event::InitApply(obj("a", json!({"nodeName": "n1"}))));
        devices.apply(Event::InitApply(obj("b", json!({"nodeName": "n2"}))));
        devices.apply(Event::InitApply(obj("bad", json!("garbage"))));
        devices.apply(Event::InitDone);
        let caches = vec![models, devices];
        let text = render(&KubeWatch::Devices, &caches, Some("n1"));
        let v: Json = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["m", "a", "bad"]);
        let a = &v["items"][1];
        assert_eq!(a["apiVersion"], "devices.kubeedge.io/v1beta1");
        assert_eq!(a["kind"], "Device");
        assert!(a.get("status").is_none());
        assert!(a["metadata"].get("resourceVersion").is_none());
        // The malformed Device is an error for itself only, named by resolve.
        let r = crate::profile::resolve(&text, &crate::profile::ResolveOptions::default());
        assert!(
            r.errors.iter().any(|e| e.to_string().contains("bad")),
            "{:?}",
            r.errors
        );

        // A re-list replaces everything at InitDone, dropping objects deleted meanwhile.
        let mut caches = caches;
        let d = &mut caches[1];
        d.apply(Event::Init);
        d.apply(Event::InitApply(obj("c", json!({"nodeName": "n1"}))));
        assert_eq!(
            d.live.len(),
            3,
            "old contents stay until the list is complete"
        );
        d.apply(Event::InitDone);
        assert_eq!(
            d.live.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        d.apply(Event::Delete(obj("c", json!({}))));
        assert!(d.live.is_empty());
    }

    #[test]
    fn a_missing_config_map_is_an_empty_profile() {
        let caches = vec![Cache::new(config_map_resource())];
        let w = KubeWatch::ConfigMap { name: "x".into() };
        assert_eq!(render(&w, &caches, None), EMPTY_PROFILE);
        let r = crate::profile::resolve(EMPTY_PROFILE, &crate::profile::ResolveOptions::default());
        assert!(r.devices.is_empty() && r.errors.is_empty() && r.format.is_some());
    }

    #[test]
    fn meta_server_urls_are_checked() {
        assert!(meta_server(DEFAULT_META_SERVER).is_ok());
        assert!(meta_server("not a url").is_err());
    }
}
