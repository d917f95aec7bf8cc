//! The fake edgecore's state and what each of its three methods does to it
//! (docs/kubeedge-dmi.md#rule-mapperregister, docs/kubeedge-dmi.md#rule-reportdevicestatus,
//! docs/kubeedge-dmi.md#rule-reportdevicestates). No I/O: the gRPC layer ([`crate::server`]) takes the lock,
//! calls one of these functions and publishes the events it returns.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use dmi_api::v1beta1 as pb;
use tonic::Status;

use crate::convert::{convert_device, convert_model};
use crate::fixtures::{Fixtures, Key};
use crate::limiter::{LimiterConfig, TokenBucket};
use crate::record::{
    At, Dropped, Event, Method, Registration, Rejection, Report, SkipReason, Skipped, StateReport,
    Violation,
};
use crate::validate::{DropReason, check_twin};
use crate::version::Version;

/// Everything the fake knows and has seen.
#[derive(Debug)]
pub struct State {
    /// The release being played.
    pub version: Version,
    /// edgecore's device and model cache.
    pub fixtures: Fixtures,
    /// The token bucket (`None`: switched off).
    pub limiter: Option<TokenBucket>,
    /// Latency added to every call before it is handled.
    pub latency: Duration,
    /// Latency per method (overrides `latency`).
    pub method_latency: HashMap<Method, Duration>,
    /// protocol -> registered address (the routing table; forgotten on restart <= 1.22).
    pub routes: BTreeMap<String, Vec<u8>>,
    /// Stored MapperInfo records by name, in first-registration order (the sqlite table).
    pub stored_mappers: Vec<pb::MapperInfo>,
    /// Accepted registrations, in order.
    pub registrations: Vec<Registration>,
    /// Accepted twins, in order.
    pub reports: Vec<Report>,
    /// Accepted states, in order.
    pub states: Vec<StateReport>,
    /// Would-crash inputs.
    pub violations: Vec<Violation>,
    /// Twins and states edgecore would drop.
    pub dropped: Vec<Dropped>,
    /// Devices left out of MapperRegister answers.
    pub skipped: Vec<Skipped>,
    /// Limiter rejections.
    pub rejections: Vec<Rejection>,
    /// Calls per method (all calls, including refused ones).
    pub calls: HashMap<Method, u64>,
    /// How many times the server has started listening (1 after the first start).
    pub starts: u64,
}

impl State {
    /// A fresh state.
    pub fn new(version: Version, fixtures: Fixtures, limiter: Option<LimiterConfig>) -> Self {
        Self {
            version,
            fixtures,
            limiter: limiter.map(|c| TokenBucket::new(c, std::time::Instant::now())),
            latency: Duration::ZERO,
            method_latency: HashMap::new(),
            routes: BTreeMap::new(),
            stored_mappers: Vec::new(),
            registrations: Vec::new(),
            reports: Vec::new(),
            states: Vec::new(),
            violations: Vec::new(),
            dropped: Vec::new(),
            skipped: Vec::new(),
            rejections: Vec::new(),
            calls: HashMap::new(),
            starts: 0,
        }
    }

    /// The latency to inject before handling `method`.
    pub fn latency_for(&self, method: Method) -> Duration {
        self.method_latency
            .get(&method)
            .copied()
            .unwrap_or(self.latency)
    }

    /// What a restart does to the routing table: forgotten (<= 1.22), or rebuilt from
    /// every stored MapperInfo (1.23, which reloads them from sqlite; this includes
    /// mappers registered without `withData`).
    pub fn on_restart(&mut self) {
        self.routes.clear();
        if self.version.restores_mappers() {
            for m in &self.stored_mappers {
                if !m.protocol.is_empty() {
                    self.routes.insert(m.protocol.clone(), m.address.clone());
                }
            }
        }
    }

    fn take_token(
        &mut self,
        method: Method,
        name: &str,
        events: &mut Vec<Event>,
    ) -> Result<(), Status> {
        let Some(bucket) = self.limiter.as_mut() else {
            return Ok(());
        };
        if bucket.try_take(std::time::Instant::now()) {
            return Ok(());
        }
        let r = Rejection {
            at: At::now(),
            method,
            name: name.to_owned(),
        };
        self.rejections.push(r.clone());
        events.push(Event::Rejected(r));
        Err(Status::unknown(format!(
            "fail to {} because of too many request: {name}",
            method.limiter_op()
        )))
    }

    /// Whether edgecore's twin module knows the device (1.15: by name only).
    pub fn knows_device(&self, namespace: &str, name: &str) -> bool {
        if self.version.has_namespaces() {
            self.fixtures
                .devices
                .contains_key(&Key::new(namespace, name))
        } else {
            self.fixtures.devices.keys().any(|k| k.name == name)
        }
    }

    /// Converts one cached device and its model for this version.
    pub fn convert(&self, key: &Key) -> Result<(pb::Device, pb::DeviceModel), SkipReason> {
        let device = self
            .fixtures
            .devices
            .get(key)
            .ok_or_else(|| SkipReason::NoDevice(key.clone()))?;
        let model_key = device.model_key();
        let model = self
            .fixtures
            .models
            .get(&model_key)
            .ok_or(SkipReason::NoModel(model_key))?;
        let d = convert_device(device, Some(model), self.version)?;
        let m = convert_model(model, self.version).map_err(SkipReason::Convert)?;
        Ok((d, m))
    }

    /// `MapperRegister` (docs/kubeedge-dmi.md#rule-mapperregister).
    pub fn mapper_register(
        &mut self,
        req: pb::MapperRegisterRequest,
        events: &mut Vec<Event>,
    ) -> Result<pb::MapperRegisterResponse, Status> {
        let name = req
            .mapper
            .as_ref()
            .map_or("", |m| m.name.as_str())
            .to_owned();
        self.take_token(Method::MapperRegister, &name, events)?;
        let Some(mapper) = req.mapper else {
            self.violations.push(Violation::MissingMapper);
            events.push(Event::Violation(Violation::MissingMapper));
            return Err(Status::internal(
                "MapperRegisterRequest has no mapper: a real edgecore would crash (nil dereference); always send MapperInfo",
            ));
        };
        if mapper.protocol.is_empty() {
            return Err(Status::unknown(format!(
                "mapper {:?} has an empty protocol: set MapperInfo.protocol to the protocolName the devices use",
                mapper.name
            )));
        }
        match self
            .stored_mappers
            .iter_mut()
            .find(|m| m.name == mapper.name)
        {
            Some(m) => *m = mapper.clone(),
            None => self.stored_mappers.push(mapper.clone()),
        }
        let mut reg = Registration {
            at: At::now(),
            with_data: req.with_data,
            mapper: mapper.clone(),
            address_recorded: false,
            devices: Vec::new(),
            models: Vec::new(),
        };
        let mut resp = pb::MapperRegisterResponse::default();
        if req.with_data {
            let keys: Vec<Key> = self
                .fixtures
                .devices_of(&mapper.protocol)
                .map(|d| d.key.clone())
                .collect();
            for key in keys {
                match self.convert(&key) {
                    Ok((d, m)) => {
                        reg.models.push(
                            self.fixtures
                                .devices
                                .get(&key)
                                .map_or_else(|| key.clone(), |d| d.model_key()),
                        );
                        reg.devices.push(key);
                        resp.device_list.push(d);
                        resp.model_list.push(m);
                    }
                    Err(reason) => {
                        let s = Skipped {
                            at: At::now(),
                            device: key,
                            reason,
                        };
                        self.skipped.push(s.clone());
                        events.push(Event::Skipped(s));
                    }
                }
            }
            self.routes
                .insert(mapper.protocol.clone(), mapper.address.clone());
            reg.address_recorded = true;
        }
        self.registrations.push(reg.clone());
        events.push(Event::Registered(reg));
        Ok(resp)
    }

    fn drop_item(
        &mut self,
        device: &str,
        property: Option<&str>,
        reason: DropReason,
        events: &mut Vec<Event>,
    ) {
        let d = Dropped {
            at: At::now(),
            device: device.to_owned(),
            property: property.map(str::to_owned),
            reason,
        };
        self.dropped.push(d.clone());
        events.push(Event::Dropped(d));
    }

    fn device_label(&self, namespace: &str, name: &str) -> String {
        if self.version.has_namespaces() {
            format!("{namespace}/{name}")
        } else {
            name.to_owned()
        }
    }

    /// `ReportDeviceStatus` (docs/kubeedge-dmi.md#rule-reportdevicestatus).
    pub fn report_device_status(
        &mut self,
        req: pb::ReportDeviceStatusRequest,
        events: &mut Vec<Event>,
    ) -> Result<pb::ReportDeviceStatusResponse, Status> {
        self.take_token(Method::ReportDeviceStatus, &req.device_name, events)?;
        let Some(status) = req.reported_device else {
            if !self.version.has_namespaces() {
                let v = Violation::MissingReportedDevice {
                    device: req.device_name.clone(),
                };
                self.violations.push(v.clone());
                events.push(Event::Violation(v));
            }
            return Err(Status::unknown(
                "ReportDeviceStatusRequest does not have twin data",
            ));
        };
        if status.twins.is_empty() {
            return Err(Status::unknown(
                "ReportDeviceStatusRequest does not have twin data",
            ));
        }
        let mut crash = Vec::new();
        for t in &status.twins {
            if t.observed_desired.is_none() {
                crash.push(Violation::MissingObservedDesired {
                    device: req.device_name.clone(),
                    property: t.property_name.clone(),
                });
            }
            if t.reported.is_none() {
                crash.push(Violation::MissingReported {
                    device: req.device_name.clone(),
                    property: t.property_name.clone(),
                });
            }
        }
        if !crash.is_empty() {
            let text = crash
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            for v in crash {
                self.violations.push(v.clone());
                events.push(Event::Violation(v));
            }
            return Err(Status::internal(format!(
                "{text}: always send both observedDesired and reported, even empty"
            )));
        }
        let namespace = if self.version.has_namespaces() {
            req.device_namespace.clone()
        } else {
            String::new()
        };
        let label = self.device_label(&namespace, &req.device_name);
        let device_problem = if self.version.has_namespaces() && namespace.is_empty() {
            Some(DropReason::NoNamespace(req.device_name.clone()))
        } else if !self.knows_device(&namespace, &req.device_name) {
            Some(DropReason::UnknownDevice(label.clone()))
        } else {
            None
        };
        let device = Key::new(namespace, req.device_name.clone());
        for t in status.twins {
            let reported = t.reported.map(|r| r.value).unwrap_or_default();
            let observed = t.observed_desired.map(|o| o.value).unwrap_or_default();
            let problem = device_problem
                .clone()
                .or_else(|| check_twin(&t.property_name, &reported, &observed));
            if let Some(reason) = problem {
                self.drop_item(&label, Some(&t.property_name), reason, events);
                continue;
            }
            let r = Report {
                at: At::now(),
                device: device.clone(),
                property: t.property_name,
                reported,
                observed_desired: observed,
            };
            self.reports.push(r.clone());
            events.push(Event::Reported(r));
        }
        Ok(pb::ReportDeviceStatusResponse {})
    }

    /// `ReportDeviceStates` (docs/kubeedge-dmi.md#rule-reportdevicestates); `Unimplemented`
    /// before 1.18.
    pub fn report_device_states(
        &mut self,
        req: pb::ReportDeviceStatesRequest,
        events: &mut Vec<Event>,
    ) -> Result<pb::ReportDeviceStatesResponse, Status> {
        if !self.version.has_report_states() {
            return Err(Status::unimplemented(
                "method ReportDeviceStates not implemented",
            ));
        }
        self.take_token(Method::ReportDeviceStates, &req.device_name, events)?;
        if req.device_name.is_empty() || req.state.is_empty() {
            return Err(Status::unknown(format!(
                "ReportDeviceStatesRequest needs deviceName and state (got deviceName {:?}, state {:?})",
                req.device_name, req.state
            )));
        }
        let label = self.device_label(&req.device_namespace, &req.device_name);
        let state = req.state.to_lowercase();
        let accepted = self.version.accepted_states();
        let problem = if req.device_namespace.is_empty() {
            Some(DropReason::NoNamespace(req.device_name.clone()))
        } else if !self.knows_device(&req.device_namespace, &req.device_name) {
            Some(DropReason::UnknownDevice(label.clone()))
        } else if !accepted.contains(&state.as_str()) {
            Some(DropReason::BadState {
                state: req.state.clone(),
                accepted,
            })
        } else {
            None
        };
        if let Some(reason) = problem {
            self.drop_item(&label, None, reason, events);
        } else {
            let s = StateReport {
                at: At::now(),
                device: Key::new(req.device_namespace, req.device_name),
                state,
            };
            self.states.push(s.clone());
            events.push(Event::State(s));
        }
        Ok(pb::ReportDeviceStatesResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FX: &str = "apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m, namespace: ns}
spec: {protocol: modbus, properties: [{name: t, type: INT, accessMode: ReadOnly}]}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d, namespace: ns}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: modbus}
  properties: [{name: t}]
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: bad, namespace: ns}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: modbus, configData: {nested: {a: 1}}}
";

    fn state(version: Version, limiter: Option<LimiterConfig>) -> State {
        State::new(version, Fixtures::from_yaml(FX).unwrap(), limiter)
    }

    fn register(with_data: bool) -> pb::MapperRegisterRequest {
        pb::MapperRegisterRequest {
            with_data,
            mapper: Some(pb::MapperInfo {
                name: "m1".into(),
                protocol: "modbus".into(),
                address: b"@x".to_vec(),
                ..Default::default()
            }),
        }
    }

    fn twin(name: &str, value: &str) -> pb::Twin {
        pb::Twin {
            property_name: name.into(),
            observed_desired: Some(pb::TwinProperty::default()),
            reported: Some(pb::TwinProperty {
                value: value.into(),
                ..Default::default()
            }),
        }
    }

    fn report(ns: &str, name: &str, twins: Vec<pb::Twin>) -> pb::ReportDeviceStatusRequest {
        pb::ReportDeviceStatusRequest {
            device_name: name.into(),
            device_namespace: ns.into(),
            reported_device: Some(pb::DeviceStatus {
                twins,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn register_returns_index_aligned_lists_and_skips_unconvertible_devices() {
        let mut s = state(Version::V1_23, None);
        let mut ev = Vec::new();
        let resp = s.mapper_register(register(true), &mut ev).unwrap();
        assert_eq!(resp.device_list.len(), 1);
        assert_eq!(resp.model_list.len(), 1);
        assert_eq!(resp.model_list[0].name, "m");
        assert_eq!(s.skipped.len(), 1);
        assert_eq!(s.skipped[0].device, Key::new("ns", "bad"));
        assert_eq!(s.routes.get("modbus"), Some(&b"@x".to_vec()));

        let mut s = state(Version::V1_23, None);
        let resp = s.mapper_register(register(false), &mut ev).unwrap();
        assert!(resp.device_list.is_empty());
        assert!(
            s.routes.is_empty(),
            "withData=false must not route (docs/kubeedge-dmi.md#quirk-withdata-false-does-not-route)"
        );
        assert!(!s.registrations[0].address_recorded);
        // 1.23 restores stored mappers after a restart, older releases forget them.
        s.on_restart();
        assert!(s.routes.contains_key("modbus"));
        let mut old = state(Version::V1_22, None);
        old.mapper_register(register(true), &mut ev).unwrap();
        old.on_restart();
        assert!(old.routes.is_empty());
    }

    #[test]
    fn register_errors_and_violations() {
        let mut s = state(Version::V1_23, None);
        let mut ev = Vec::new();
        let mut req = register(true);
        req.mapper = None;
        assert!(s.mapper_register(req, &mut ev).is_err());
        assert_eq!(s.violations, vec![Violation::MissingMapper]);
        let mut req = register(true);
        if let Some(m) = req.mapper.as_mut() {
            m.protocol.clear();
        }
        assert!(s.mapper_register(req, &mut ev).is_err());
        assert!(s.registrations.is_empty());
    }

    #[test]
    fn limiter_answers_unknown_with_edgecore_wording_after_the_burst() {
        let cfg = LimiterConfig {
            interval: Duration::from_secs(3600),
            burst: 2,
        };
        let mut s = state(Version::V1_23, Some(cfg));
        let mut ev = Vec::new();
        assert!(s.mapper_register(register(true), &mut ev).is_ok());
        assert!(
            s.report_device_status(report("ns", "d", vec![twin("t", "1")]), &mut ev)
                .is_ok()
        );
        let err = s
            .report_device_status(report("ns", "d", vec![twin("t", "2")]), &mut ev)
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown);
        assert_eq!(
            err.message(),
            "fail to report device status because of too many request: d"
        );
        assert_eq!(s.rejections.len(), 1);
        assert_eq!(s.reports.len(), 1);
    }

    #[test]
    fn reports_are_validated_like_edgecore() {
        let mut s = state(Version::V1_23, None);
        let mut ev = Vec::new();
        let ok = s.report_device_status(
            report(
                "ns",
                "d",
                vec![
                    twin("t", "61.5"),
                    twin("t", "1.5e+06"),
                    twin("bad key", "1"),
                ],
            ),
            &mut ev,
        );
        assert!(ok.is_ok());
        assert_eq!(s.reports.len(), 1);
        assert_eq!(s.reports[0].reported, "61.5");
        assert_eq!(s.dropped.len(), 2);
        s.report_device_status(report("ns", "nope", vec![twin("t", "1")]), &mut ev)
            .unwrap();
        assert!(matches!(s.dropped[2].reason, DropReason::UnknownDevice(_)));
        s.report_device_status(report("", "d", vec![twin("t", "1")]), &mut ev)
            .unwrap();
        assert!(matches!(s.dropped[3].reason, DropReason::NoNamespace(_)));
        assert!(
            s.report_device_status(report("ns", "d", vec![]), &mut ev)
                .is_err()
        );
        let mut no_reported = twin("t", "1");
        no_reported.reported = None;
        assert!(
            s.report_device_status(report("ns", "d", vec![no_reported]), &mut ev)
                .is_err()
        );
        assert!(matches!(s.violations[0], Violation::MissingReported { .. }));
        // 1.15: no namespaces, devices known by name.
        let mut old = state(Version::V1_15, None);
        old.report_device_status(report("", "d", vec![twin("t", "1")]), &mut ev)
            .unwrap();
        assert_eq!(old.reports[0].device, Key::new("", "d"));
    }

    #[test]
    fn states_by_version() {
        let mut ev = Vec::new();
        for v in [Version::V1_15, Version::V1_16, Version::V1_17] {
            let mut s = state(v, None);
            let req = pb::ReportDeviceStatesRequest {
                device_name: "d".into(),
                device_namespace: "ns".into(),
                state: "online".into(),
            };
            let err = s.report_device_states(req, &mut ev).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unimplemented, "{v}");
        }
        let mut s = state(Version::V1_18, None);
        let req = |state: &str| pb::ReportDeviceStatesRequest {
            device_name: "d".into(),
            device_namespace: "ns".into(),
            state: state.into(),
        };
        s.report_device_states(req("ONLINE"), &mut ev).unwrap();
        s.report_device_states(req("disconnected"), &mut ev)
            .unwrap();
        assert!(s.report_device_states(req(""), &mut ev).is_err());
        assert_eq!(s.states.len(), 1);
        assert_eq!(s.states[0].state, "online");
        assert!(matches!(s.dropped[0].reason, DropReason::BadState { .. }));
    }
}
