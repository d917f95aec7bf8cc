//! `mapper-sdk`: everything a KubeEdge device mapper needs that does not depend on the
//! device protocol.
//!
//! A protocol mapper implements [`driver::Driver`] and [`driver::Device`] and hands the
//! driver to [`main_with`] (or [`run`] in tests). The SDK parses device profiles in every
//! KubeEdge format ([`profile`]), runs one worker per device with per-property schedules,
//! reconnects and device states ([`runtime`]), watches the mounted profile ([`source`])
//! or, with the `kube` feature, the Kubernetes API (`kube_source`),
//! and speaks KubeEdge's MQTT twin contract to edgecore ([`twin`], [`mqtt`]).

pub mod about;
pub mod app;
pub mod buffer;
pub mod buffer_file;
pub mod check;
pub mod config;
pub mod ctl;
#[cfg(feature = "dmi")]
pub mod dmi;
#[cfg(feature = "dmi")]
pub mod dmi_config;
pub mod driver;
pub mod excerpt;
pub mod http;
#[cfg(feature = "kube")]
pub mod kube_source;
pub mod logging;
pub mod model;
pub mod mqtt;
pub mod profile;
pub mod runtime;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;
pub mod twin;

pub use about::About;
pub use app::{load, main, main_with, run};
