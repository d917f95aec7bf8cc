//! What edgecore has told this mapper: devices and models keyed by `(namespace, name)`.
//! Pure. Every life-cycle call is an idempotent upsert; a device whose model is not
//! known yet is parked until the model arrives; a removed model stays in use (as a copy)
//! by the devices that run on it; a device missing from a registration list is removed
//! only after it was missing from several lists in a row. [`Store::render`] gives the
//! whole state as a v1beta1 `List` for the profile resolver.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value as Json, json};

use dmi_api::v1beta1::{Device, DeviceModel};

use super::convert::{
    ConvertError, Key, device_key, device_resource, key_text, model_key, model_ref, model_resource,
    protocol_of,
};

/// What an upsert changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the same content was known already.
    None,
    /// The state the devices run on changed.
    Changed,
}

#[derive(Debug, Clone)]
struct Entry {
    device: Device,
    resource: Json,
    protocol: String,
    model: Option<DeviceModel>,
    absent: u32,
}

/// How a device's reports go to edgecore, from its spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportMeta {
    /// The device's namespace (empty on 1.15).
    pub namespace: String,
    /// The device's name.
    pub name: String,
    /// Desired values of the spec, by property.
    pub desired: BTreeMap<String, String>,
    /// `status.reportToCloud` (state heartbeats).
    pub state_to_cloud: bool,
    /// `status.reportCycle`.
    pub state_cycle: Option<Duration>,
}

/// Outcome of reconciling with a registration list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSummary {
    /// Devices added or changed.
    pub upserted: usize,
    /// Devices removed after repeated absence.
    pub removed: Vec<String>,
    /// Devices absent from this list but kept for now.
    pub absent: Vec<String>,
    /// Devices that could not be used.
    pub errors: Vec<String>,
}

/// The devices and models edgecore sent.
#[derive(Debug, Default)]
pub struct Store {
    devices: BTreeMap<Key, Entry>,
    models: BTreeMap<Key, DeviceModel>,
    generation: u64,
    remove_after: u32,
}

impl Store {
    /// A store that removes devices after `remove_after` registration lists without them
    /// (at least 1).
    pub fn new(remove_after: u32) -> Self {
        Self {
            remove_after: remove_after.max(1),
            ..Self::default()
        }
    }

    /// Increases on every change of what [`render`](Self::render) returns.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn bump(&mut self) -> Change {
        self.generation += 1;
        Change::Changed
    }

    /// Adds or replaces a device. An identical device is no change. A device that does
    /// not convert keeps its previous version (if any) and returns the error.
    pub fn upsert_device(&mut self, device: Device) -> Result<Change, ConvertError> {
        let key = device_key(&device);
        if let Some(e) = self.devices.get_mut(&key) {
            e.absent = 0;
            if e.device == device {
                // A model that arrived meanwhile is picked up by upsert_model.
                return Ok(Change::None);
            }
        }
        let resource = device_resource(&device)?;
        let model = model_ref(&device).and_then(|mk| {
            self.models.get(&mk).cloned().or_else(|| {
                // Keep the copy a running device had, if it still names the same model.
                self.devices
                    .get(&key)
                    .filter(|e| model_ref(&e.device).as_ref() == Some(&mk))
                    .and_then(|e| e.model.clone())
            })
        });
        let protocol = protocol_of(&device);
        self.devices.insert(
            key,
            Entry {
                device,
                resource,
                protocol,
                model,
                absent: 0,
            },
        );
        Ok(self.bump())
    }

    /// Forgets a device; unknown devices are fine.
    pub fn remove_device(&mut self, key: &Key) -> Change {
        if self.devices.remove(key).is_some() {
            self.bump()
        } else {
            Change::None
        }
    }

    /// Adds or replaces a model and gives it to the devices that use it (parked ones
    /// start).
    pub fn upsert_model(&mut self, model: DeviceModel) -> Change {
        let key = model_key(&model);
        let mut changed = false;
        for e in self.devices.values_mut() {
            if model_ref(&e.device).as_ref() == Some(&key) && e.model.as_ref() != Some(&model) {
                e.model = Some(model.clone());
                changed = true;
            }
        }
        self.models.insert(key, model);
        if changed { self.bump() } else { Change::None }
    }

    /// Forgets a model. Running devices keep their copy; new devices naming it park.
    pub fn remove_model(&mut self, key: &Key) {
        self.models.remove(key);
    }

    /// Reconciles with a `MapperRegister` answer for `protocol`: every listed device and
    /// model is upserted; local devices of that protocol missing from the list are
    /// removed once they were missing from `remove_after` lists in a row.
    pub fn apply_list(
        &mut self,
        protocol: &str,
        devices: Vec<Device>,
        models: Vec<DeviceModel>,
    ) -> ListSummary {
        let mut summary = ListSummary::default();
        let mut seen_models = BTreeSet::new();
        for m in models {
            if seen_models.insert(model_key(&m)) {
                self.upsert_model(m);
            }
        }
        let mut listed = BTreeSet::new();
        for d in devices {
            listed.insert(device_key(&d));
            match self.upsert_device(d) {
                Ok(Change::Changed) => summary.upserted += 1,
                Ok(Change::None) => {}
                Err(e) => summary.errors.push(e.to_string()),
            }
        }
        let mut gone = Vec::new();
        for (key, e) in &mut self.devices {
            if e.protocol != protocol || listed.contains(key) {
                continue;
            }
            e.absent += 1;
            if e.absent >= self.remove_after {
                gone.push(key.clone());
            } else {
                summary.absent.push(key_text(key));
            }
        }
        for key in gone {
            self.remove_device(&key);
            summary.removed.push(key_text(&key));
        }
        summary
    }

    /// Devices waiting for their model.
    pub fn parked(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(_, e)| e.model.is_none())
            .map(|(k, _)| key_text(k))
            .collect()
    }

    /// The number of known devices (parked included).
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether no device is known.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device as edgecore last sent it.
    pub fn device(&self, key: &Key) -> Option<&Device> {
        self.devices.get(key).map(|e| &e.device)
    }

    /// Keeps the items of properties with `reportToCloud: true` (in place, no copies: it
    /// runs on every report); false for an unknown device.
    pub fn retain_to_cloud<T>(
        &self,
        key: &Key,
        items: &mut Vec<T>,
        name: impl Fn(&T) -> &str,
    ) -> bool {
        let Some(e) = self.devices.get(key) else {
            return false;
        };
        let props = e
            .device
            .spec
            .as_ref()
            .map(|s| s.properties.as_slice())
            .unwrap_or_default();
        items.retain(|item| {
            props
                .iter()
                .any(|p| p.report_to_cloud && p.name == name(item))
        });
        true
    }

    /// The properties of a device with `reportToCloud: false` (or unset).
    pub fn not_to_cloud(&self, key: &Key) -> Vec<String> {
        self.devices
            .get(key)
            .and_then(|e| e.device.spec.as_ref())
            .map(|s| {
                s.properties
                    .iter()
                    .filter(|p| !p.report_to_cloud)
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reporting facts of a device.
    pub fn report_meta(&self, key: &Key) -> Option<ReportMeta> {
        let e = self.devices.get(key)?;
        let spec = e.device.spec.as_ref();
        let props = spec.map(|s| s.properties.as_slice()).unwrap_or_default();
        let status = e.device.status.as_ref();
        Some(ReportMeta {
            namespace: key.0.clone(),
            name: key.1.clone(),
            desired: props
                .iter()
                .filter_map(|p| {
                    let v = p.desired.as_ref()?.value.clone();
                    (!v.is_empty()).then(|| (p.name.clone(), v))
                })
                .collect(),
            state_to_cloud: status.is_some_and(|s| s.report_to_cloud),
            state_cycle: status
                .map(|s| s.report_cycle)
                .filter(|c| *c > 0)
                .and_then(|c| u64::try_from(c).ok())
                .map(Duration::from_millis),
        })
    }

    /// Every runnable device and its model as one v1beta1 `List` (models first, each
    /// once; parked devices left out).
    pub fn render(&self) -> String {
        let mut items = Vec::new();
        let mut models = BTreeSet::new();
        for e in self.devices.values() {
            if let Some(m) = &e.model
                && models.insert(model_key(m))
            {
                items.push(model_resource(m));
            }
        }
        items.extend(
            self.devices
                .values()
                .filter(|e| e.model.is_some())
                .map(|e| e.resource.clone()),
        );
        json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmi::convert::tests::boiler;
    use dmi_api::v1beta1::{DeviceModelSpec, ModelProperty, TwinProperty};

    fn model() -> DeviceModel {
        DeviceModel {
            name: "boiler-model".into(),
            namespace: "plant-a".into(),
            spec: Some(DeviceModelSpec {
                properties: vec![ModelProperty {
                    name: "setpoint".into(),
                    r#type: "FLOAT".into(),
                    access_mode: "ReadWrite".into(),
                    ..Default::default()
                }],
                commands: vec![],
            }),
        }
    }

    fn key(name: &str) -> Key {
        ("plant-a".into(), name.into())
    }

    #[test]
    fn devices_park_until_their_model_arrives() {
        let mut s = Store::new(2);
        assert_eq!(s.upsert_device(boiler()).unwrap(), Change::Changed);
        assert_eq!(s.parked(), vec!["plant-a/boiler-1".to_owned()]);
        assert!(!s.render().contains("boiler-1"));
        assert_eq!(s.upsert_model(model()), Change::Changed);
        assert!(s.parked().is_empty());
        let text = s.render();
        assert!(
            text.contains("\"kind\":\"DeviceModel\"") && text.contains("boiler-1"),
            "{text}"
        );
    }

    #[test]
    fn upserts_are_idempotent() {
        let mut s = Store::new(2);
        s.upsert_model(model());
        s.upsert_device(boiler()).unwrap();
        let g = s.generation();
        assert_eq!(s.upsert_device(boiler()).unwrap(), Change::None);
        assert_eq!(s.upsert_model(model()), Change::None);
        assert_eq!(s.generation(), g);
        assert_eq!(s.remove_device(&key("ghost")), Change::None);
        let mut d = boiler();
        d.spec.as_mut().unwrap().properties[0].desired = Some(TwinProperty {
            value: "70".into(),
            ..Default::default()
        });
        assert_eq!(s.upsert_device(d).unwrap(), Change::Changed);
        assert_eq!(
            s.report_meta(&key("boiler-1")).unwrap().desired["setpoint"],
            "70"
        );
    }

    #[test]
    fn removed_models_stay_with_running_devices() {
        let mut s = Store::new(2);
        s.upsert_model(model());
        s.upsert_device(boiler()).unwrap();
        s.remove_model(&key("boiler-model"));
        assert!(s.parked().is_empty());
        let mut d = boiler();
        d.name = "boiler-2".into();
        s.upsert_device(d).unwrap();
        assert_eq!(s.parked(), vec!["plant-a/boiler-2".to_owned()]);
    }

    #[test]
    fn bad_updates_keep_the_previous_device() {
        let mut s = Store::new(2);
        s.upsert_model(model());
        s.upsert_device(boiler()).unwrap();
        let mut bad = boiler();
        bad.spec = None;
        assert!(s.upsert_device(bad).is_err());
        assert!(s.render().contains("boiler-1"));
    }

    #[test]
    fn lists_remove_devices_only_after_repeated_absence() {
        let mut s = Store::new(2);
        let mut other = boiler();
        other.name = "boiler-2".into();
        let sum = s.apply_list("modbus", vec![boiler(), other], vec![model(), model()]);
        assert_eq!(sum.upserted, 2);
        assert_eq!(s.len(), 2);
        let sum = s.apply_list("modbus", vec![boiler()], vec![model()]);
        assert_eq!(sum.absent, vec!["plant-a/boiler-2".to_owned()]);
        assert_eq!(s.len(), 2);
        // Back in the list: the count starts again.
        let mut other = boiler();
        other.name = "boiler-2".into();
        s.apply_list("modbus", vec![boiler(), other], vec![model(), model()]);
        s.apply_list("modbus", vec![boiler()], vec![model()]);
        let sum = s.apply_list("modbus", vec![boiler()], vec![model()]);
        assert_eq!(sum.removed, vec!["plant-a/boiler-2".to_owned()]);
        assert_eq!(s.len(), 1);
        // Lists of another protocol never remove this one's devices.
        s.apply_list("bluetooth", vec![], vec![]);
        s.apply_list("bluetooth", vec![], vec![]);
        assert_eq!(s.len(), 1);
    }
}
