//! The fake API server over plain HTTP/1.1: CRUD, list, watch, bookmarks, timeouts,
//! expiry and in-stream 410.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube_api_sim::{FakeApi, Kind};
use serde_json::{Value as Json, json};

const WAIT: Duration = Duration::from_secs(10);
const CM: &str = "/api/v1/namespaces/default/configmaps";
const DEV: &str = "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices";

async fn send(
    api: &FakeApi,
    method: &str,
    path: &str,
    body: Option<(&str, Json)>,
) -> hyper::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x");
    let req = match body {
        Some((ct, v)) => b
            .header("content-type", ct)
            .body(Full::new(Bytes::from(v.to_string())).boxed())
            .unwrap(),
        None => b.body(Empty::<Bytes>::new().boxed()).unwrap(),
    };
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap()
}

async fn call(api: &FakeApi, method: &str, path: &str, body: Option<(&str, Json)>) -> (u16, Json) {
    let r = send(api, method, path, body).await;
    let code = r.status().as_u16();
    let bytes = tokio::time::timeout(WAIT, r.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

/// Reads newline-delimited JSON events from a watch response.
struct Events {
    body: Incoming,
    buf: Vec<u8>,
}

impl Events {
    async fn open(api: &FakeApi, path: &str) -> Self {
        let r = send(api, "GET", path, None).await;
        assert_eq!(r.status().as_u16(), 200);
        Self {
            body: r.into_body(),
            buf: Vec::new(),
        }
    }

    /// The next event, or None when the stream ended.
    async fn next(&mut self) -> Option<Json> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame()).await.unwrap();
            match frame {
                None => return None,
                Some(f) => {
                    if let Ok(data) = f.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event that is not a bookmark.
    async fn next_change(&mut self) -> Option<Json> {
        loop {
            let e = self.next().await?;
            if e["type"] != "BOOKMARK" {
                return Some(e);
            }
        }
    }
}

fn cm(name: &str, text: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"deviceProfile.json": text}})
}

#[tokio::test]
async fn crud_and_list_carry_resource_versions() {
    let api = FakeApi::start().await.unwrap();
    let (code, created) = call(&api, "POST", CM, Some(("application/json", cm("a", "{}")))).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["resourceVersion"], "1");
    assert_eq!(created["metadata"]["namespace"], "default");
    let (code, _) = call(&api, "POST", CM, Some(("application/json", cm("a", "{}")))).await;
    assert_eq!(code, 409);

    let (code, got) = call(&api, "GET", &format!("{CM}/a"), None).await;
    assert_eq!(
        (code, got["data"]["deviceProfile.json"].as_str()),
        (200, Some("{}"))
    );
    let (code, st) = call(&api, "GET", &format!("{CM}/nope"), None).await;
    assert_eq!(
        (code, st["kind"].as_str(), st["code"].as_u64()),
        (404, Some("Status"), Some(404))
    );

    let patch = json!({"data": {"deviceProfile.json": "{\"x\":1}", "other": "y"}});
    let (code, patched) = call(
        &api,
        "PATCH",
        &format!("{CM}/a"),
        Some(("application/merge-patch+json", patch)),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(patched["metadata"]["resourceVersion"], "2");
    assert_eq!(patched["data"]["other"], "y");

    // Strategic merge patches are refused; PUT replaces the object.
    let (code, st) = call(
        &api,
        "PATCH",
        &format!("{CM}/a"),
        Some(("application/strategic-merge-patch+json", json!({}))),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let (code, replaced) = call(
        &api,
        "PUT",
        &format!("{CM}/a"),
        Some(("application/json", cm("a", "[]"))),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(replaced["data"], json!({"deviceProfile.json": "[]"}));
    assert_eq!(replaced["metadata"]["resourceVersion"], "3");

    call(&api, "POST", CM, Some(("application/json", cm("b", "{}")))).await;
    let (code, list) = call(&api, "GET", CM, None).await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["metadata"]["resourceVersion"], "4");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, one) = call(
        &api,
        "GET",
        &format!("{CM}?fieldSelector=metadata.name%3Db"),
        None,
    )
    .await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert_eq!(one["items"][0]["metadata"]["name"], "b");
    // Cluster-wide list and other kinds.
    let (_, all) = call(&api, "GET", "/api/v1/configmaps", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (_, devs) = call(&api, "GET", DEV, None).await;
    assert_eq!(devs["kind"], "DeviceList");
    assert_eq!(devs["items"].as_array().unwrap().len(), 0);

    let (code, _) = call(&api, "DELETE", &format!("{CM}/a"), None).await;
    assert_eq!(code, 200);
    assert!(api.get(Kind::ConfigMap, "default", "a").is_none());
    assert_eq!(api.resource_version(), 5);
}

#[tokio::test]
async fn watch_streams_history_and_live_events_with_bookmarks() {
    let api = FakeApi::start().await.unwrap();
    api.set_bookmark_interval(Duration::from_millis(50));
    api.create(
        Kind::Device,
        "default",
        json!({"metadata": {"name": "d1"}, "spec": {}}),
    )
    .unwrap();
    api.create(
        Kind::Device,
        "default",
        json!({"metadata": {"name": "d2"}, "spec": {}}),
    )
    .unwrap();
    // From version 1: the replay holds d2 only.
    let mut w = Events::open(
        &api,
        &format!("{DEV}?watch=true&resourceVersion=1&allowWatchBookmarks=true"),
    )
    .await;
    let e = w.next_change().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("d2"))
    );
    api.patch(
        Kind::Device,
        "default",
        "d1",
        &json!({"spec": {"nodeName": "n"}}),
    )
    .unwrap();
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["spec"]["nodeName"], "n");
    assert_eq!(e["object"]["metadata"]["resourceVersion"], "3");
    // Other kinds are not in this stream.
    api.create(Kind::ConfigMap, "default", cm("c", "{}"))
        .unwrap();
    api.delete(Kind::Device, "default", "d2").unwrap();
    let e = w.next_change().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("d2"))
    );
    // Bookmarks carry apiVersion, kind and the latest version.
    let b = loop {
        let e = w.next().await.unwrap();
        if e["type"] == "BOOKMARK" {
            break e;
        }
    };
    assert_eq!(b["object"]["apiVersion"], "devices.kubeedge.io/v1beta1");
    assert_eq!(b["object"]["kind"], "Device");
    assert_eq!(b["object"]["metadata"]["resourceVersion"], "5");

    // A watch by name sees only that object.
    let mut named = Events::open(
        &api,
        &format!("{CM}?watch=1&resourceVersion=0&fieldSelector=metadata.name%3Dc"),
    )
    .await;
    let e = named.next_change().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("c"))
    );
}

#[tokio::test]
async fn timeouts_expiry_and_in_stream_410() {
    let api = FakeApi::start().await.unwrap();
    api.create(Kind::ConfigMap, "default", cm("a", "{}"))
        .unwrap();
    // timeoutSeconds ends the stream.
    let mut w = Events::open(
        &api,
        &format!("{CM}?watch=true&resourceVersion=1&timeoutSeconds=1"),
    )
    .await;
    assert!(w.next_change().await.is_none());

    // expire_watches ends open streams quietly; the same version can be resumed.
    let mut w = Events::open(&api, &format!("{CM}?watch=true&resourceVersion=1")).await;
    let mut w2 = Events::open(&api, &format!("{CM}?watch=true&resourceVersion=1")).await;
    api.expire_watches();
    assert!(w.next_change().await.is_none());
    assert!(w2.next_change().await.is_none());
    let mut w = Events::open(&api, &format!("{CM}?watch=true&resourceVersion=1")).await;
    api.patch(
        Kind::ConfigMap,
        "default",
        "a",
        &json!({"data": {"k": "v"}}),
    )
    .unwrap();
    assert_eq!(w.next_change().await.unwrap()["type"], "MODIFIED");

    // force_410: open streams end with an in-stream 410 (HTTP 200) ...
    api.force_410();
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w.next_change().await.is_none());
    // ... and resuming from an old version does the same; from the list's version works.
    let mut old = Events::open(&api, &format!("{CM}?watch=true&resourceVersion=1")).await;
    assert_eq!(old.next_change().await.unwrap()["object"]["code"], 410);
    let (_, list) = call(&api, "GET", CM, None).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut fresh = Events::open(&api, &format!("{CM}?watch=true&resourceVersion={rv}")).await;
    api.delete(Kind::ConfigMap, "default", "a").unwrap();
    assert_eq!(fresh.next_change().await.unwrap()["type"], "DELETED");

    // Frozen streams deliver nothing; the change is visible to a re-list.
    api.freeze_watches(true);
    api.create(Kind::ConfigMap, "default", cm("b", "{}"))
        .unwrap();
    api.force_410();
    assert_eq!(fresh.next_change().await.unwrap()["type"], "ERROR");
    api.freeze_watches(false);
    let (_, list) = call(&api, "GET", CM, None).await;
    assert_eq!(list["items"][0]["metadata"]["name"], "b");
}
