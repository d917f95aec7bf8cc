//! The operator endpoint (off unless `--http-listen` is given): `/healthz`, `/readyz`,
//! Prometheus `/metrics` and a small JSON device API under `/api/v1`.
//!
//! [`metrics`] is the shared telemetry handle the runtime and MQTT adapter write to,
//! [`api`] the pure routing, [`server`] the listener.

pub mod api;
pub mod metrics;
pub mod server;

pub use api::{Api, Token};
pub use metrics::{DeviceMetrics, ErrorKind, MqttMetrics, ReportPath, Telemetry};
pub use server::{HttpError, HttpServer};
