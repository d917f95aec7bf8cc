//! The control endpoint shared by `modbus-sim` and `ble-sim`: a small HTTP/1.1
//! server that lets a CI script change a running simulator's faults without
//! Rust, and the client the simulators' `fault` subcommands use to talk to it.
//!
//! Why HTTP on a TCP port rather than a Unix socket: `curl` (or any HTTP
//! client) can drive it from a shell script, it works across container and
//! network-namespace boundaries, port 0 plus the printed bound address keeps
//! parallel tests apart, and both simulators share one shape. It has no
//! authentication: bind it to loopback (`127.0.0.1:0`).
//!
//! This crate is only the transport. The simulators implement
//! [`ControlHandler`] and own the meaning of the paths and bodies; requests
//! and bodies are hostile input, so [`parse_document`] turns a bad body into
//! a 400 answer with the parser's message instead of an error the server
//! would have to handle.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sim_control::{BoxFuture, ControlHandler, ControlRequest, ControlResponse, ControlServer};
//!
//! struct Echo;
//! impl ControlHandler for Echo {
//!     fn handle(&self, req: ControlRequest) -> BoxFuture<'_, ControlResponse> {
//!         Box::pin(async move { ControlResponse::ok(serde_json::json!({ "path": req.path })) })
//!     }
//! }
//!
//! let server = ControlServer::start("127.0.0.1:0", Arc::new(Echo)).await?;
//! let reply = sim_control::send(&server.local_addr().to_string(), "GET", "/faults", None).await?;
//! assert_eq!(reply.status, 200);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod client;
mod error;
mod mode;
mod server;

pub use client::{Reply, read_document, send, send_ok};
pub use error::{ClientError, ControlError};
pub use mode::FaultMode;
pub use server::{
    BODY_LIMIT, BoxFuture, ControlHandler, ControlRequest, ControlResponse, ControlServer,
    parse_document,
};
