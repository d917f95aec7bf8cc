//! The mapper end to end in this process: a real mosquitto (from mapper_sdk::testing) and a
//! peer playing edgecore. Fails with an install hint when mosquitto is missing, unless
//! MAPPER_TESTS_ALLOW_SKIP=1.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use mapper_sdk::config::ProfileSetting;
use mapper_sdk::testing::{InProcessMapper, Mosquitto, TwinPeer, test_settings};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_reported_and_desired_values_written() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let profile = include_str!("profile.json").to_owned();
    let settings = test_settings(
        &broker,
        "{{project-name}}-test",
        ProfileSetting::Inline(profile),
    );
    let mapper = InProcessMapper::start({{crate_name}}::ProtoDriver, settings);
    let reported = |want: &'static str| {
        move |p: &TwinPeer| p.last_actual("device-1", "level").as_deref() == Some(want)
    };
    assert!(
        peer.wait(WAIT, reported("0")).await,
        "the first reading is reported"
    );
    assert!(peer.wait_subscribed("device-1", WAIT).await);
    peer.send_delta("device-1", &[("level", "42")]).await;
    assert!(
        peer.wait(WAIT, reported("42")).await,
        "the desired value is written and read back"
    );
    mapper.stop().await;
}
