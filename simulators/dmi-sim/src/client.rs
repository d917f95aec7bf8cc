//! edgecore's client side: driving a mapper's `DeviceMapperService` (docs/kubeedge-dmi.md#rule-edgecore-opens-a-connection-per-call,
//! docs/kubeedge-dmi.md#rule-what-the-fake-edgecore-does).
//!
//! [`MapperClient`] opens a **new connection per call**, covers connect and call with
//! one 10 s deadline (sent as `grpc-timeout` too) and sends the `:authority` grpc-go
//! derives from the registered address ([`Address::grpc_go_authority`]): `@name` for an
//! abstract socket, the percent-encoded path for a file, which no h2 server accepts.
//!
//! The `impl Edgecore` block below does what edgecore does on a device or model event:
//! find the mapper registered for the protocol ("fail to get dmi client of protocol X"
//! otherwise), convert the cached CRD and call.

use std::time::{Duration, Instant};

use dmi_api::transport::{Address, connect};
use dmi_api::v1beta1 as pb;
use dmi_api::v1beta1::device_mapper_service_client::DeviceMapperServiceClient;
use serde_json::{Map, Value as Json};
use tonic::transport::Channel;

use crate::convert::{ConvertError, convert_device, convert_model};
use crate::fixtures::{CrdDevice, Key};
use crate::server::Edgecore;

/// edgecore's deadline for one mapper call (connect included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the mapper failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No mapper is registered for the protocol (edgecore's wording).
    #[error("fail to get dmi client of protocol {0}")]
    NoClient(String),
    /// The registered address is not usable.
    #[error("the registered mapper address {0:?} is not a socket path or @name")]
    BadAddress(String),
    /// The authority grpc-go would send is not a valid one, so tonic cannot send it. A
    /// real edgecore sends it anyway and a stock h2 server resets the stream.
    #[error(
        "edgecore would send :authority {0:?}, which is not a valid authority: a stock h2 server resets the stream (edgecore logs \"Internal: stream terminated by RST_STREAM with error code: PROTOCOL_ERROR\"); serve the mapper on an @name address, or check the server with dmi_sim::probe"
    )]
    InvalidAuthority(String),
    /// The connection could not be opened (grpc-go reports `Unavailable`).
    #[error("cannot connect to the mapper at {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The mapper answered with an error status.
    #[error("the mapper answered {}: {}", .0.code(), .0.message())]
    Call(tonic::Status),
    /// Connect and call did not finish within the deadline.
    #[error("the mapper did not answer within {0:?}")]
    Timeout(Duration),
    /// The cached device or model is unknown.
    #[error("{0} is not in the fake edgecore's cache")]
    NotCached(Key),
    /// The device has no property of that name.
    #[error("device {device} has no property {property:?}")]
    NoProperty {
        /// The device.
        device: Key,
        /// The property.
        property: String,
    },
    /// The cached CRD cannot be converted (edgecore would skip it).
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

impl ClientError {
    /// The gRPC code edgecore's grpc-go client would see.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Call(s) => s.code(),
            Self::Connect { .. } => tonic::Code::Unavailable,
            Self::InvalidAuthority(_) => tonic::Code::Internal,
            Self::Timeout(_) => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Unknown,
        }
    }
}

/// A client of one mapper's `DeviceMapperService`, dialling like edgecore.
#[derive(Debug, Clone)]
pub struct MapperClient {
    address: Address,
    authority: String,
    timeout: Duration,
}

impl MapperClient {
    /// A client for `address`, sending grpc-go's authority for it.
    pub fn new(address: Address) -> Self {
        let authority = address.grpc_go_authority();
        Self {
            address,
            authority,
            timeout: CALL_TIMEOUT,
        }
    }

    /// A client for the bytes of `MapperInfo.address`.
    pub fn from_registered(address: &[u8]) -> Result<Self, ClientError> {
        let text = String::from_utf8_lossy(address);
        Address::parse(&text)
            .map(Self::new)
            .map_err(|_| ClientError::BadAddress(text.into_owned()))
    }

    /// Sends another `:authority` (it must be a valid one: tonic refuses to send others;
    /// use [`crate::probe`] for invalid ones).
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into();
        self
    }

    /// Another deadline than edgecore's 10 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The mapper's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The `:authority` sent.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Runs one call on a new connection within the deadline.
    async fn call<T, F>(
        &self,
        call: impl FnOnce(DeviceMapperServiceClient<Channel>, Duration) -> F,
    ) -> Result<T, ClientError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = Instant::now();
        if tonic::transport::Endpoint::from_shared(format!("http://{}", self.authority)).is_err() {
            return Err(ClientError::InvalidAuthority(self.authority.clone()));
        }
        let run = async {
            let channel = connect(&self.address, &self.authority)
                .await
                .map_err(|source| ClientError::Connect {
                    address: self.address.to_text(),
                    source,
                })?;
            let client = DeviceMapperServiceClient::new(channel);
            let left = self.timeout.saturating_sub(start.elapsed());
            call(client, left)
                .await
                .map(tonic::Response::into_inner)
                .map_err(ClientError::Call)
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// `RegisterDevice`.
    pub async fn register_device(
        &self,
        device: pb::Device,
    ) -> Result<pb::RegisterDeviceResponse, ClientError> {
        self.call(|mut c, left| async move {
            c.register_device(timed(
                pb::RegisterDeviceRequest {
                    device: Some(device),
                },
                left,
            ))
            .await
        })
        .await
    }

    /// `UpdateDevice`.
    pub async fn update_device(&self, device: pb::Device) -> Result<(), ClientError> {
        self.call(|mut c, left| async move {
            c.update_device(timed(
                pb::UpdateDeviceRequest {
                    device: Some(device),
                },
                left,
            ))
            .await
        })
        .await
        .map(drop)
    }

    /// `RemoveDevice`.
    pub async fn remove_device(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        let req = pb::RemoveDeviceRequest {
            device_name: name.to_owned(),
            device_namespace: namespace.to_owned(),
        };
        self.call(|mut c, left| async move { c.remove_device(timed(req, left)).await })
            .await
            .map(drop)
    }

    /// `CreateDeviceModel`.
    pub async fn create_device_model(
        &self,
        model: pb::DeviceModel,
    ) -> Result<pb::CreateDeviceModelResponse, ClientError> {
        self.call(|mut c, left| async move {
            c.create_device_model(timed(
                pb::CreateDeviceModelRequest { model: Some(model) },
                left,
            ))
            .await
        })
        .await
    }

    /// `UpdateDeviceModel`.
    pub async fn update_device_model(&self, model: pb::DeviceModel) -> Result<(), ClientError> {
        self.call(|mut c, left| async move {
            c.update_device_model(timed(
                pb::UpdateDeviceModelRequest { model: Some(model) },
                left,
            ))
            .await
        })
        .await
        .map(drop)
    }

    /// `RemoveDeviceModel`.
    pub async fn remove_device_model(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        let req = pb::RemoveDeviceModelRequest {
            model_name: name.to_owned(),
            model_namespace: namespace.to_owned(),
        };
        self.call(|mut c, left| async move { c.remove_device_model(timed(req, left)).await })
            .await
            .map(drop)
    }

    /// `GetDevice`.
    pub async fn get_device(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<pb::GetDeviceResponse, ClientError> {
        let req = pb::GetDeviceRequest {
            device_name: name.to_owned(),
            device_namespace: namespace.to_owned(),
        };
        self.call(|mut c, left| async move { c.get_device(timed(req, left)).await })
            .await
    }
}

/// A request carrying the remaining deadline (grpc-go sends it as `grpc-timeout`).
fn timed<T>(message: T, left: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(left);
    req
}

/// A field of a JSON object for writing, found as Go's decoder would (exact name first,
/// then ignoring ASCII case); created when absent.
fn field_mut<'a>(obj: &'a mut Map<String, Json>, name: &str) -> &'a mut Json {
    let key = if obj.contains_key(name) {
        name.to_owned()
    } else {
        obj.keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    };
    obj.entry(key).or_insert_with(|| Json::Object(Map::new()))
}

/// `device` with `spec.properties[name == property].desired.value` set to `value`.
pub fn with_desired(
    device: &CrdDevice,
    property: &str,
    value: &str,
) -> Result<CrdDevice, ClientError> {
    let no_property = || ClientError::NoProperty {
        device: device.key.clone(),
        property: property.to_owned(),
    };
    let mut out = device.clone();
    let props = out
        .doc
        .as_object_mut()
        .map(|d| field_mut(d, "spec"))
        .and_then(Json::as_object_mut)
        .map(|s| field_mut(s, "properties"))
        .and_then(Json::as_array_mut)
        .ok_or_else(no_property)?;
    let prop = props
        .iter_mut()
        .filter_map(Json::as_object_mut)
        .find(|p| {
            let name = p.get("name").or_else(|| {
                p.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("name"))
                    .map(|(_, v)| v)
            });
            name.and_then(Json::as_str) == Some(property)
        })
        .ok_or_else(no_property)?;
    let desired = field_mut(prop, "desired");
    if !desired.is_object() {
        *desired = Json::Object(Map::new());
    }
    if let Some(d) = desired.as_object_mut() {
        *field_mut(d, "value") = Json::String(value.to_owned());
    }
    Ok(out)
}

/// edgecore's side of the life-cycle calls: route by protocol, convert the cached CRD,
/// call the mapper.
impl Edgecore {
    /// The client edgecore has for `protocol` (from the registered address).
    pub fn mapper_client(&self, protocol: &str) -> Result<MapperClient, ClientError> {
        let address = self
            .route(protocol)
            .ok_or_else(|| ClientError::NoClient(protocol.to_owned()))?;
        MapperClient::from_registered(&address)
    }

    /// The cached device converted as edgecore sends it, with its protocol name.
    pub fn device(&self, key: &Key) -> Result<(pb::Device, String), ClientError> {
        self.with_state(|s| {
            let d = s
                .fixtures
                .devices
                .get(key)
                .ok_or_else(|| ClientError::NotCached(key.clone()))?;
            let model = s.fixtures.models.get(&d.model_key());
            let pb = convert_device(d, model, s.version)?;
            Ok((pb, d.protocol_name().to_owned()))
        })
    }

    /// The cached model converted as edgecore sends it, with its protocol.
    pub fn model(&self, key: &Key) -> Result<(pb::DeviceModel, String), ClientError> {
        self.with_state(|s| {
            let m = s
                .fixtures
                .models
                .get(key)
                .ok_or_else(|| ClientError::NotCached(key.clone()))?;
            Ok((convert_model(m, s.version)?, m.protocol().to_owned()))
        })
    }

    /// Sets a desired value in the cached device (as a CRD edit would) and returns the
    /// device as edgecore would now send it.
    pub fn set_desired(
        &self,
        key: &Key,
        property: &str,
        value: &str,
    ) -> Result<pb::Device, ClientError> {
        self.with_state(|s| {
            let d = s
                .fixtures
                .devices
                .get(key)
                .ok_or_else(|| ClientError::NotCached(key.clone()))?;
            let changed = with_desired(d, property, value)?;
            s.fixtures.devices.insert(key.clone(), changed);
            Ok::<(), ClientError>(())
        })?;
        self.device(key).map(|(d, _)| d)
    }

    /// Adds (or replaces) cached resources, as the cloud sending new CRDs would.
    pub fn add_fixtures(&self, fixtures: crate::Fixtures) {
        self.with_state(|s| s.fixtures.merge(fixtures));
    }

    /// `RegisterDevice` of a cached device to the mapper of its protocol.
    pub async fn register_device(
        &self,
        key: &Key,
    ) -> Result<pb::RegisterDeviceResponse, ClientError> {
        let (device, protocol) = self.device(key)?;
        self.mapper_client(&protocol)?.register_device(device).await
    }

    /// `UpdateDevice` of a cached device (after [`Edgecore::set_desired`], say).
    pub async fn update_device(&self, key: &Key) -> Result<(), ClientError> {
        let (device, protocol) = self.device(key)?;
        self.mapper_client(&protocol)?.update_device(device).await
    }

    /// Deletes a cached device and sends `RemoveDevice` (no namespace in 1.15 mode).
    pub async fn remove_device(&self, key: &Key) -> Result<(), ClientError> {
        let (protocol, namespace) = self.with_state(|s| {
            let d = s
                .fixtures
                .devices
                .remove(key)
                .ok_or_else(|| ClientError::NotCached(key.clone()))?;
            let ns = if s.version.has_namespaces() {
                key.namespace.clone()
            } else {
                String::new()
            };
            Ok::<_, ClientError>((d.protocol_name().to_owned(), ns))
        })?;
        self.mapper_client(&protocol)?
            .remove_device(&namespace, &key.name)
            .await
    }

    /// `CreateDeviceModel` of a cached model to the mapper of its protocol.
    pub async fn create_device_model(
        &self,
        key: &Key,
    ) -> Result<pb::CreateDeviceModelResponse, ClientError> {
        let (model, protocol) = self.model(key)?;
        self.mapper_client(&protocol)?
            .create_device_model(model)
            .await
    }

    /// `UpdateDeviceModel` of a cached model.
    pub async fn update_device_model(&self, key: &Key) -> Result<(), ClientError> {
        let (model, protocol) = self.model(key)?;
        self.mapper_client(&protocol)?
            .update_device_model(model)
            .await
    }

    /// Deletes a cached model and sends `RemoveDeviceModel`.
    pub async fn remove_device_model(&self, key: &Key) -> Result<(), ClientError> {
        let (protocol, namespace) = self.with_state(|s| {
            let m = s
                .fixtures
                .models
                .remove(key)
                .ok_or_else(|| ClientError::NotCached(key.clone()))?;
            let ns = if s.version.has_namespaces() {
                key.namespace.clone()
            } else {
                String::new()
            };
            Ok::<_, ClientError>((m.protocol().to_owned(), ns))
        })?;
        self.mapper_client(&protocol)?
            .remove_device_model(&namespace, &key.name)
            .await
    }

    /// `GetDevice` of a device from the mapper of `protocol`.
    pub async fn get_device(
        &self,
        protocol: &str,
        key: &Key,
    ) -> Result<pb::GetDeviceResponse, ClientError> {
        self.mapper_client(protocol)?
            .get_device(&key.namespace, &key.name)
            .await
    }
}
