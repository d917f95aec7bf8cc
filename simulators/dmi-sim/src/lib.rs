//! A fake KubeEdge edgecore for DMI v1beta1 tests (contract `kubeedge-dmi.md` §7).
//!
//! This first part holds the pure pieces: the release modes ([`version`]), edgecore's
//! device and model cache as CRD fixtures ([`fixtures`]), the CRD -> DMI conversion
//! edgecore performs ([`convert`]), its twin validation ([`validate`]), its token bucket
//! ([`limiter`]), the records a test inspects ([`record`]), the state machine of the
//! three DeviceManagerService methods ([`state`]) and proto3 JSON rendering ([`json`]).

pub mod convert;
pub mod fixtures;
pub mod json;
pub mod limiter;
pub mod record;
pub mod state;
pub mod validate;
pub mod version;

pub use fixtures::{Fixtures, Key};
pub use version::Version;
