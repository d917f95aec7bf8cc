//! The mapper's `DeviceMapperService`: edgecore's life-cycle calls. Every handler only
//! updates the store (a short, lock-held, in-memory step) and wakes the renderer, so it
//! answers within milliseconds; devices are started and stopped by the runtime after.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use dmi_api::v1beta1::device_mapper_service_server::DeviceMapperService;
use dmi_api::v1beta1::{
    CreateDeviceModelRequest, CreateDeviceModelResponse, DeviceStatus, GetDeviceRequest,
    GetDeviceResponse, RegisterDeviceRequest, RegisterDeviceResponse, RemoveDeviceModelRequest,
    RemoveDeviceModelResponse, RemoveDeviceRequest, RemoveDeviceResponse, Twin, TwinProperty,
    UpdateDeviceModelRequest, UpdateDeviceModelResponse, UpdateDeviceRequest, UpdateDeviceResponse,
};

use super::Shared;
use super::convert::{Key, key_text};
use super::store::Change;
use crate::model::DeviceId;

/// The service edgecore calls.
#[derive(Clone)]
pub struct MapperService {
    pub(super) shared: Arc<Shared>,
}

impl MapperService {
    fn upsert(
        &self,
        what: &str,
        device: Option<dmi_api::v1beta1::Device>,
    ) -> Result<(String, String), Status> {
        let device = device.ok_or_else(|| {
            Status::invalid_argument(format!(
                "{what}: the request carries no device (field device)"
            ))
        })?;
        let key: Key = (device.namespace.clone(), device.name.clone());
        let result = self.shared.lock_store().upsert_device(device);
        match result {
            Ok(Change::Changed) => {
                info!(device = %key_text(&key), call = what, "device from edgecore");
                self.shared.changed.notify_one();
            }
            Ok(Change::None) => {
                tracing::debug!(device = %key_text(&key), call = what, "identical device; nothing to do");
            }
            Err(e) => {
                warn!(call = what, "{e}");
                return Err(Status::invalid_argument(e.to_string()));
            }
        }
        Ok(key)
    }
}

#[tonic::async_trait]
impl DeviceMapperService for MapperService {
    async fn register_device(
        &self,
        request: Request<RegisterDeviceRequest>,
    ) -> Result<Response<RegisterDeviceResponse>, Status> {
        let (ns, name) = self.upsert("RegisterDevice", request.into_inner().device)?;
        Ok(Response::new(RegisterDeviceResponse {
            device_name: name,
            device_namespace: ns,
        }))
    }

    async fn remove_device(
        &self,
        request: Request<RemoveDeviceRequest>,
    ) -> Result<Response<RemoveDeviceResponse>, Status> {
        let r = request.into_inner();
        let key = (r.device_namespace, r.device_name);
        if self.shared.lock_store().remove_device(&key) == Change::Changed {
            info!(device = %key_text(&key), "device removed by edgecore");
            self.shared.changed.notify_one();
        }
        // Unknown devices are fine: an error would leave a ghost in edgecore's cache.
        Ok(Response::new(RemoveDeviceResponse {}))
    }

    async fn update_device(
        &self,
        request: Request<UpdateDeviceRequest>,
    ) -> Result<Response<UpdateDeviceResponse>, Status> {
        self.upsert("UpdateDevice", request.into_inner().device)?;
        Ok(Response::new(UpdateDeviceResponse {}))
    }

    async fn create_device_model(
        &self,
        request: Request<CreateDeviceModelRequest>,
    ) -> Result<Response<CreateDeviceModelResponse>, Status> {
        let model = request.into_inner().model.ok_or_else(|| {
            Status::invalid_argument(
                "CreateDeviceModel: the request carries no model (field model)",
            )
        })?;
        let (ns, name) = (model.namespace.clone(), model.name.clone());
        if self.shared.lock_store().upsert_model(model) == Change::Changed {
            self.shared.changed.notify_one();
        }
        Ok(Response::new(CreateDeviceModelResponse {
            device_model_name: name,
            device_model_namespace: ns,
        }))
    }

    async fn remove_device_model(
        &self,
        request: Request<RemoveDeviceModelRequest>,
    ) -> Result<Response<RemoveDeviceModelResponse>, Status> {
        let r = request.into_inner();
        self.shared
            .lock_store()
            .remove_model(&(r.model_namespace, r.model_name));
        Ok(Response::new(RemoveDeviceModelResponse {}))
    }

    async fn update_device_model(
        &self,
        request: Request<UpdateDeviceModelRequest>,
    ) -> Result<Response<UpdateDeviceModelResponse>, Status> {
        let model = request.into_inner().model.ok_or_else(|| {
            Status::invalid_argument(
                "UpdateDeviceModel: the request carries no model (field model)",
            )
        })?;
        if self.shared.lock_store().upsert_model(model) == Change::Changed {
            self.shared.changed.notify_one();
        }
        Ok(Response::new(UpdateDeviceModelResponse {}))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<GetDeviceResponse>, Status> {
        let r = request.into_inner();
        let key = (r.device_namespace, r.device_name);
        let Some(mut device) = self.shared.lock_store().device(&key).cloned() else {
            return Err(Status::not_found(format!(
                "device {} is not known to this mapper",
                key_text(&key)
            )));
        };
        let id = DeviceId(key_text(&key));
        let latest = self.shared.latest_values(&id);
        let desired = |name: &str| {
            device
                .spec
                .as_ref()
                .and_then(|s| s.properties.iter().find(|p| p.name == name))
                .and_then(|p| p.desired.as_ref())
                .map(|d| d.value.clone())
                .unwrap_or_default()
        };
        let twins = latest
            .into_iter()
            .map(|(name, value)| Twin {
                observed_desired: Some(TwinProperty {
                    value: desired(&name),
                    ..Default::default()
                }),
                reported: Some(TwinProperty {
                    value,
                    ..Default::default()
                }),
                property_name: name,
            })
            .collect();
        let status = device.status.get_or_insert_with(DeviceStatus::default);
        status.twins = twins;
        Ok(Response::new(GetDeviceResponse {
            device: Some(device),
        }))
    }
}
