//! A fake KubeEdge edgecore for DMI v1beta1 tests (docs/kubeedge-dmi.md#rule-what-the-fake-edgecore-does).
//!
//! [`server::Edgecore`] serves edgecore's `DeviceManagerService` on a socket file,
//! [`client::MapperClient`] drives a mapper's `DeviceMapperService` the way edgecore
//! does, and [`probe`] checks which HTTP/2 `:authority` a mapper's server accepts.
//!
//! The pure pieces: the release modes ([`version`]), edgecore's
//! device and model cache as CRD fixtures ([`fixtures`]), the CRD -> DMI conversion
//! edgecore performs ([`convert`]), its twin validation ([`validate`]), its token bucket
//! ([`limiter`]), the records a test inspects ([`record`]), the state machine of the
//! three DeviceManagerService methods ([`state`]) and proto3 JSON rendering ([`json`]).

pub mod client;
mod conn;
pub mod convert;
pub mod fixtures;
pub mod json;
pub mod limiter;
pub mod probe;
pub mod record;
pub mod server;
pub mod state;
pub mod validate;
pub mod version;

pub use client::MapperClient;
pub use fixtures::{Fixtures, Key};
pub use server::Edgecore;
pub use version::Version;
