//! KubeEdge DMI v1beta1 for Rust: the generated gRPC types and services
//! ([`v1beta1`]), the `configData` value wrappers ([`value`]) and the Unix-socket
//! transport both sides need ([`transport`]).
//!
//! The schema is our own `.proto` (`proto/dmi_v1beta1.proto`), written from the field
//! numbers edgecore 1.15-1.23 uses on the wire
//! (docs/kubeedge-dmi.md#rule-two-services-in-package-v1beta1) and compiled at build time
//! with protox, so no `protoc` is needed. Both the mapper SDK (client of edgecore, server of
//! `DeviceMapperService`) and the fake edgecore `dmi-sim` (the other way round) use it.
//!
//! ```
//! use dmi_api::v1beta1::{MapperInfo, MapperRegisterRequest};
//! let req = MapperRegisterRequest {
//!     with_data: true,
//!     mapper: Some(MapperInfo {
//!         name: "rust-mapper-modbus".into(),
//!         protocol: "modbus".into(),
//!         address: b"@kubeedge.modbus-mapper".to_vec(),
//!         ..Default::default()
//!     }),
//! };
//! assert_eq!(req.mapper.map(|m| m.protocol), Some("modbus".to_owned()));
//! ```

pub mod transport;
pub mod value;

/// The generated messages and services of package `v1beta1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

/// The full gRPC name of the service edgecore serves.
pub const MANAGER_SERVICE: &str = "v1beta1.DeviceManagerService";
/// The full gRPC name of the service a mapper serves.
pub const MAPPER_SERVICE: &str = "v1beta1.DeviceMapperService";
