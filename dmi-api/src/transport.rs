//! Unix-socket transport for DMI, both directions.
//!
//! An address is what `MapperInfo.address` carries: an absolute socket path, or `@name`
//! for a Linux abstract socket. Why a mapper serves on an abstract name: edgecore dials
//! the registered address as its gRPC target, so grpc-go sends the address as the HTTP/2
//! `:authority`; a path (`/etc/kubeedge/x.sock`, or `%2Fetc...` in newer grpc-go) is not a
//! valid authority and the h2 server under tonic resets the stream, while `@name` is
//! valid and Go's unix dialer reaches the abstract namespace.
//!
//! [`connect`] opens one client channel; [`Listener`] binds either kind and yields
//! accepted streams, refusing peers whose uid is not allowed (abstract sockets have no
//! file permissions).

use std::io;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint};

/// Where a DMI socket lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Linux abstract socket name (written `@name`; the name excludes the `@`).
    Abstract(String),
    /// A socket file.
    Path(PathBuf),
}

/// Why an address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// Empty.
    #[error("the socket address is empty")]
    Empty,
    /// An abstract name with characters grpc-go would mangle in the authority.
    #[error(
        "abstract socket name {0:?} must not contain '/', '%', ':' or spaces (edgecore sends it as the HTTP/2 authority)"
    )]
    BadAbstractName(String),
    /// `unix://` prefixes break edgecore's dialer.
    #[error(
        "socket address {0:?} must not start with unix:// (edgecore dials the address as given); write the path or @name"
    )]
    Scheme(String),
}

impl Address {
    /// Parses `@name` or a path.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.starts_with("unix:") {
            return Err(AddressError::Scheme(text.to_owned()));
        }
        if let Some(name) = text.strip_prefix('@') {
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| matches!(c, '/' | '%' | ':') || c.is_whitespace() || c.is_control())
            {
                return Err(AddressError::BadAbstractName(text.to_owned()));
            }
            return Ok(Self::Abstract(name.to_owned()));
        }
        Ok(Self::Path(PathBuf::from(text)))
    }

    /// The text form (`@name` or the path), as sent in `MapperInfo.address`.
    pub fn to_text(&self) -> String {
        match self {
            Self::Abstract(n) => format!("@{n}"),
            Self::Path(p) => p.display().to_string(),
        }
    }

    /// The `:authority` grpc-go derives from this address as a dial target: the text
    /// itself for an abstract name; the percent-encoded path for a file (grpc-go 1.63+,
    /// KubeEdge 1.18+), which no h2 server accepts.
    pub fn grpc_go_authority(&self) -> String {
        match self {
            Self::Abstract(n) => format!("@{n}"),
            Self::Path(p) => p.display().to_string().replace('/', "%2F"),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Opens a raw stream to an address.
pub async fn dial(address: &Address) -> io::Result<UnixStream> {
    match address {
        Address::Path(p) => UnixStream::connect(p).await,
        Address::Abstract(name) => dial_abstract(name),
    }
}

#[cfg(target_os = "linux")]
fn dial_abstract(name: &str) -> io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    // A Unix-socket connect completes at once (or fails), so the blocking call is fine.
    let std = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

#[cfg(not(target_os = "linux"))]
fn dial_abstract(_name: &str) -> io::Result<UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// A gRPC channel over one new connection to `address`. `authority` is the HTTP/2
/// `:authority` to send (any valid one; edgecore's grpc-go server ignores it).
pub async fn connect(
    address: &Address,
    authority: &str,
) -> Result<Channel, tonic::transport::Error> {
    let uri = format!("http://{authority}");
    let endpoint = Endpoint::from_shared(uri)?;
    let address = address.clone();
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let address = address.clone();
            async move { dial(&address).await.map(TokioIo::new) }
        }))
        .await
}

/// A bound DMI server socket.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    address: Address,
    allowed_uids: Option<Vec<u32>>,
}

impl Listener {
    /// Binds `address`. A stale socket file is removed first (after checking nothing
    /// answers on it); the parent directory must exist.
    pub async fn bind(address: &Address) -> io::Result<Self> {
        let inner = match address {
            Address::Path(p) => bind_path(p).await?,
            Address::Abstract(name) => bind_abstract(name)?,
        };
        Ok(Self {
            inner,
            address: address.clone(),
            allowed_uids: None,
        })
    }

    /// Accept only peers with one of these uids (checked with `SO_PEERCRED`).
    pub fn allow_uids(mut self, uids: Vec<u32>) -> Self {
        self.allowed_uids = Some(uids);
        self
    }

    /// The bound address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Accepts the next allowed connection; refused peers are closed and reported
    /// through `on_refused` (their uid, or `None` when it could not be read).
    pub async fn accept(&self, on_refused: &mut impl FnMut(Option<u32>)) -> io::Result<UnixStream> {
        loop {
            let (stream, _) = self.inner.accept().await?;
            let Some(allowed) = &self.allowed_uids else {
                return Ok(stream);
            };
            match stream.peer_cred() {
                Ok(cred) if allowed.contains(&cred.uid()) => return Ok(stream),
                Ok(cred) => on_refused(Some(cred.uid())),
                Err(_) => on_refused(None),
            }
        }
    }

    /// Polls for the next allowed connection (for building a stream of connections).
    pub fn poll_accept_allowed(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Result<UnixStream, Option<u32>>>> {
        match self.inner.poll_accept(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok((stream, _))) => {
                let Some(allowed) = &self.allowed_uids else {
                    return Poll::Ready(Ok(Ok(stream)));
                };
                Poll::Ready(Ok(match stream.peer_cred() {
                    Ok(cred) if allowed.contains(&cred.uid()) => Ok(stream),
                    Ok(cred) => Err(Some(cred.uid())),
                    Err(_) => Err(None),
                }))
            }
        }
    }
}

async fn bind_path(path: &Path) -> io::Result<UnixListener> {
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        tokio::fs::remove_file(path).await?;
    }
    UnixListener::bind(path)
}

#[cfg(target_os = "linux")]
fn bind_abstract(name: &str) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let std = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    std.set_nonblocking(true)?;
    UnixListener::from_std(std)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_name: &str) -> io::Result<UnixListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Address::parse("@kubeedge.modbus-mapper").unwrap(),
            Address::Abstract("kubeedge.modbus-mapper".into())
        );
        assert_eq!(
            Address::parse("/etc/kubeedge/dmi.sock").unwrap(),
            Address::Path("/etc/kubeedge/dmi.sock".into())
        );
        assert!(Address::parse("").is_err());
        assert!(Address::parse("@").is_err());
        assert!(Address::parse("@a/b").is_err());
        assert!(Address::parse("@a:b").is_err());
        assert!(Address::parse("unix:///etc/kubeedge/dmi.sock").is_err());
        assert_eq!(Address::parse("@x").unwrap().to_text(), "@x");
        assert_eq!(
            Address::parse("/etc/x.sock").unwrap().grpc_go_authority(),
            "%2Fetc%2Fx.sock"
        );
    }

    #[tokio::test]
    async fn abstract_and_path_sockets_accept_and_filter_uids() {
        let name = format!("@dmi-api-test-{}", std::process::id());
        let addr = Address::parse(&name).unwrap();
        let l = Listener::bind(&addr).await.unwrap();
        let c = tokio::spawn(async move { dial(&addr).await.map(|_| ()) });
        let mut refused = Vec::new();
        l.accept(&mut |u| refused.push(u)).await.unwrap();
        c.await.unwrap().unwrap();

        let dir = std::env::temp_dir().join(format!("dmi-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        std::fs::write(&path, b"stale").unwrap();
        let addr = Address::Path(path.clone());
        let me = nix_uid();
        let l = Listener::bind(&addr)
            .await
            .unwrap()
            .allow_uids(vec![me.wrapping_add(1)]);
        let a2 = addr.clone();
        let c = tokio::spawn(async move {
            let _first = dial(&a2).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            l.accept(&mut |u| refused.push(u)),
        )
        .await;
        assert!(r.is_err(), "a peer with another uid must not be accepted");
        assert_eq!(refused, vec![Some(me)]);
        c.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn nix_uid() -> u32 {
        use std::os::unix::fs::MetadataExt as _;
        // The uid of files this process creates is its own.
        let p = std::env::temp_dir().join(format!("dmi-api-uid-{}", std::process::id()));
        std::fs::write(&p, b"").unwrap();
        let uid = std::fs::metadata(&p).unwrap().uid();
        std::fs::remove_file(&p).unwrap();
        uid
    }
}
