//! A trivial mapper (`DeviceMapperService`) for the client and probe tests: it records
//! every request and answers OK.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dmi_api::transport::{Address, Listener};
use dmi_api::v1beta1 as pb;
use dmi_api::v1beta1::device_mapper_service_server::{
    DeviceMapperService, DeviceMapperServiceServer,
};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

/// One request the mapper got.
#[derive(Debug, Clone)]
pub enum Got {
    Register(pb::Device),
    Update(pb::Device),
    Remove(String, String),
    CreateModel(pb::DeviceModel),
    UpdateModel(pb::DeviceModel),
    RemoveModel(String, String),
    Get(String, String),
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Got>>>);

impl Recorder {
    fn push(&self, g: Got) {
        self.0.lock().unwrap().push(g);
    }
}

#[tonic::async_trait]
impl DeviceMapperService for Recorder {
    async fn register_device(
        &self,
        r: Request<pb::RegisterDeviceRequest>,
    ) -> Result<Response<pb::RegisterDeviceResponse>, Status> {
        let d = r.into_inner().device.unwrap_or_default();
        let resp = pb::RegisterDeviceResponse {
            device_name: d.name.clone(),
            device_namespace: d.namespace.clone(),
        };
        self.push(Got::Register(d));
        Ok(Response::new(resp))
    }
    async fn remove_device(
        &self,
        r: Request<pb::RemoveDeviceRequest>,
    ) -> Result<Response<pb::RemoveDeviceResponse>, Status> {
        let r = r.into_inner();
        self.push(Got::Remove(r.device_namespace, r.device_name));
        Ok(Response::new(pb::RemoveDeviceResponse {}))
    }
    async fn update_device(
        &self,
        r: Request<pb::UpdateDeviceRequest>,
    ) -> Result<Response<pb::UpdateDeviceResponse>, Status> {
        self.push(Got::Update(r.into_inner().device.unwrap_or_default()));
        Ok(Response::new(pb::UpdateDeviceResponse {}))
    }
    async fn create_device_model(
        &self,
        r: Request<pb::CreateDeviceModelRequest>,
    ) -> Result<Response<pb::CreateDeviceModelResponse>, Status> {
        let m = r.into_inner().model.unwrap_or_default();
        let resp = pb::CreateDeviceModelResponse {
            device_model_name: m.name.clone(),
            device_model_namespace: m.namespace.clone(),
        };
        self.push(Got::CreateModel(m));
        Ok(Response::new(resp))
    }
    async fn remove_device_model(
        &self,
        r: Request<pb::RemoveDeviceModelRequest>,
    ) -> Result<Response<pb::RemoveDeviceModelResponse>, Status> {
        let r = r.into_inner();
        self.push(Got::RemoveModel(r.model_namespace, r.model_name));
        Ok(Response::new(pb::RemoveDeviceModelResponse {}))
    }
    async fn update_device_model(
        &self,
        r: Request<pb::UpdateDeviceModelRequest>,
    ) -> Result<Response<pb::UpdateDeviceModelResponse>, Status> {
        self.push(Got::UpdateModel(r.into_inner().model.unwrap_or_default()));
        Ok(Response::new(pb::UpdateDeviceModelResponse {}))
    }
    async fn get_device(
        &self,
        r: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::GetDeviceResponse>, Status> {
        let r = r.into_inner();
        self.push(Got::Get(r.device_namespace, r.device_name));
        Ok(Response::new(pb::GetDeviceResponse { device: None }))
    }
}

/// A running trivial mapper.
pub struct Mapper {
    pub address: Address,
    got: Recorder,
    task: JoinHandle<()>,
}

impl Mapper {
    /// Serves on `address`.
    pub async fn start(address: Address) -> Self {
        let listener = Listener::bind(&address).await.unwrap();
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            let next = l.accept(&mut |_| {}).await;
            Some((next, l))
        });
        let got = Recorder::default();
        let svc = DeviceMapperServiceServer::new(got.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        });
        Self { address, got, task }
    }

    /// Serves on a fresh abstract name.
    pub async fn start_abstract() -> Self {
        Self::start(abstract_address()).await
    }

    /// What it got so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.0.lock().unwrap().clone()
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `@dmi-sim-test-<pid>-<n>`.
pub fn abstract_address() -> Address {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    Address::parse(&format!("@dmi-sim-test-{}-{n}", std::process::id())).unwrap()
}
