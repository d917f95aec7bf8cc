//! KubeEdge device mapper for devices that expose JSON over HTTP (meters, relays,
//! gateways): each property is a value in a JSON document the device serves, read with
//! GET and written with PUT, POST or PATCH.
//!
//! This crate is also the worked example of writing a mapper on `mapper-sdk`
//! (`docs/writing-a-mapper.md` walks through it). It uses only the SDK's public API and
//! keeps the pure parts apart from the I/O:
//!
//! - [`config`]: typed, validated protocol and visitor configs;
//! - [`pointer`]: RFC 6901 JSON pointers;
//! - [`template`]: write bodies (`${value}` templates);
//! - [`reply`]: what a status, a transport failure or a document means as a value or a
//!   `DriverError`;
//! - [`client`]: the HTTP client (hyper, rustls with ring, keep-alive, bounded replies);
//! - [`driver`]: [`HttpDriver`] and [`HttpDevice`], the SDK's `Driver` and `Device`.

pub mod client;
pub mod config;
pub mod driver;
pub mod pointer;
pub mod reply;
pub mod template;

pub use config::{HttpProtocol, HttpVisitor};
pub use driver::{HttpDevice, HttpDriver, PROTOCOL};
