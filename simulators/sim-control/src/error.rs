//! Error types, one enum per concern.

/// The control server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The address is not `IP:PORT`.
    #[error("control address `{addr}` is not IP:PORT (e.g. 127.0.0.1:0, port 0 = any free port)")]
    Address {
        /// The address as given.
        addr: String,
    },
    /// The listener could not be bound.
    #[error("cannot listen for control requests on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A control request could not be sent or its answer not read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `HOST:PORT` (optionally with `http://`).
    #[error(
        "control address `{addr}` is not HOST:PORT (the `control=` line the simulator printed)"
    )]
    Address {
        /// The address as given.
        addr: String,
    },
    /// No connection to the simulator.
    #[error(
        "cannot connect to the control endpoint {addr}: {source} (is the simulator running with --control?)"
    )]
    Connect {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("control request to {addr} failed: {message}")]
    Http {
        /// The address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// No answer in time.
    #[error("the control endpoint {addr} did not answer within {seconds} s")]
    Timeout {
        /// The address.
        addr: String,
        /// The deadline.
        seconds: u64,
    },
    /// The simulator answered with an error status.
    #[error("the simulator refused the request ({status}): {message}")]
    Refused {
        /// HTTP status code.
        status: u16,
        /// The simulator's message.
        message: String,
    },
    /// A fault document named with `@PATH` could not be read.
    #[error("cannot read the fault document {path}: {message}")]
    ReadDocument {
        /// The path.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// A fault document is not in the expected format.
    #[error("{origin}: {message} (expected {expected})")]
    Document {
        /// The path, or "the fault document" when given inline.
        origin: String,
        /// The parser's message.
        message: String,
        /// Which keys the document may hold.
        expected: String,
    },
}
