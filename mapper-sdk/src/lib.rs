//! `mapper-sdk`: everything a KubeEdge device mapper needs that does not depend on the
//! device protocol.
//!
//! A protocol mapper implements [`driver::Driver`] and [`driver::Device`] and calls
//! [`run`]; the SDK parses device profiles in every KubeEdge format ([`profile`]), runs
//! one worker per device with per-property schedules and reconnects ([`runtime`]), and
//! speaks KubeEdge's MQTT twin contract to edgecore ([`twin`]).

pub mod driver;
pub mod model;
pub mod profile;
