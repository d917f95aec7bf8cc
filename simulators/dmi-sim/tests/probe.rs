//! The raw HTTP/2 `:authority` probe against a stock tonic mapper: `@name` on an
//! abstract socket is answered; a path authority (what edgecore sends for a socket
//! file) is reset by h2. This is the trap of
//! docs/kubeedge-dmi.md#quirk-edgecore-sends-a-socket-path-as-the-authority, kept as a test.

#![allow(clippy::unwrap_used)]

mod common;

use common::Mapper;
use dmi_api::transport::Address;
use dmi_sim::probe::{ProbeOutcome, probe_authority};

#[tokio::test]
async fn abstract_name_authority_is_answered() {
    let mapper = Mapper::start_abstract().await;
    let authority = mapper.address.grpc_go_authority();
    assert!(authority.starts_with('@'));
    let out = probe_authority(&mapper.address, &authority).await.unwrap();
    assert_eq!(
        out,
        ProbeOutcome::Answered {
            status: Some(200),
            trailers: true
        }
    );
    assert!(out.accepted());
    assert_eq!(mapper.got().len(), 1, "the request must reach the service");
}

#[tokio::test]
async fn path_authorities_are_reset_by_stock_h2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sock");
    let mapper = Mapper::start(Address::Path(path.clone())).await;
    let raw = path.display().to_string();
    for authority in [raw.clone(), mapper.address.grpc_go_authority()] {
        let out = probe_authority(&mapper.address, &authority).await.unwrap();
        assert_eq!(
            out,
            ProbeOutcome::Reset { error_code: 1 },
            "authority {authority:?}"
        );
    }
    // The socket is not the problem: a valid authority on the same file is answered.
    assert!(
        probe_authority(&mapper.address, "localhost")
            .await
            .unwrap()
            .accepted()
    );
    // And the same invalid authority on an abstract socket is reset too.
    let abs = Mapper::start_abstract().await;
    let out = probe_authority(&abs.address, "/etc/kubeedge/x.sock")
        .await
        .unwrap();
    assert_eq!(out, ProbeOutcome::Reset { error_code: 1 });
    assert!(abs.got().is_empty());
}
