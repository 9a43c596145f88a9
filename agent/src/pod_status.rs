//! Pod status pieces shared by the real and the fake runtime: the QoS class,
//! the four pod conditions, and "did anything but timestamps change". A leaf
//! module: the pod workers ([`crate::pods`]) and the fake runtime
//! ([`crate::runtime::fake`]) both build statuses from it.
//!
//! Kubernetes computes a pod's status on its node (the kubelet's
//! `generateAPIPodStatus`) and writes it through `pods/<name>/status`; the
//! apiserver only stores it.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The pod's QoS class (`v1qos.GetPodQOS`): the class the apiserver
/// recorded in `status.qosClass` at creation, else the one its spec
/// computes to — the same computation the apiserver runs ([`machinery::qos`]).
pub use machinery::qos::pod_qos_class as qos_class;

/// A condition, keeping `lastTransitionTime` from `prev` if its status is unchanged.
pub fn condition(prev: Option<&PodStatus>, ty: &str, status: bool, reason: Option<&str>, message: Option<String>, now: DateTime<Utc>) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let old = prev.and_then(|p| p.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == ty));
    let transition = match old {
        Some(o) if o.status == status => o.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    PodCondition {
        type_: ty.into(),
        status: status.into(),
        reason: reason.map(String::from),
        message,
        last_probe_time: None,
        last_transition_time: Some(transition),
    }
}

/// The PodScheduled condition the scheduler (or binding) set, kept as is;
/// a pod placed by `spec.nodeName` directly gets one now.
pub fn scheduled_condition(prev: Option<&PodStatus>, now: DateTime<Utc>) -> PodCondition {
    prev.and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .cloned()
        .unwrap_or_else(|| condition(None, "PodScheduled", true, None, None, now))
}

/// Conditions in the kubelet's order: PodReadyToStartContainers is left
/// out; Initialized, Ready, ContainersReady, PodScheduled.
pub fn pod_conditions(prev: Option<&PodStatus>, initialized: (bool, Option<String>), ready: (bool, Option<String>), now: DateTime<Utc>) -> Vec<PodCondition> {
    let (init_reason, ready_reason) = (
        (!initialized.0).then_some("ContainersNotInitialized"),
        (!ready.0).then_some(if initialized.0 { "ContainersNotReady" } else { "ContainersNotInitialized" }),
    );
    vec![
        condition(prev, "Initialized", initialized.0, init_reason, initialized.1, now),
        condition(prev, "Ready", ready.0, ready_reason, ready.1.clone(), now),
        condition(prev, "ContainersReady", ready.0, ready_reason, ready.1, now),
        scheduled_condition(prev, now),
    ]
}

/// Does `new` differ from `old` in anything the pod's readers care about?
/// (Condition probe times are ignored; transition times are compared.)
pub fn status_changed(old: Option<&PodStatus>, new: &PodStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &PodStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_probe_time = None;
        }
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(resources: &[(&[(&str, &str)], &[(&str, &str)])]) -> Pod {
        let containers = resources
            .iter()
            .enumerate()
            .map(|(i, (req, lim))| {
                let m = |kv: &[(&str, &str)]| Some(kv.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()).filter(|m: &std::collections::BTreeMap<_, _>| !m.is_empty());
                Container { name: format!("c{i}"), resources: Some(ResourceRequirements { requests: m(req), limits: m(lim), ..Default::default() }), ..Default::default() }
            })
            .collect();
        Pod { spec: Some(PodSpec { containers, ..Default::default() }), ..Default::default() }
    }

    fn check(p: Pod, expected: &str) {
        assert_eq!(qos_class(&p), expected);
    }

    #[test]
    fn qos_classes() {
        check(pod(&[(&[], &[])]), "BestEffort");
        check(pod(&[(&[("cpu", "100m")], &[])]), "Burstable");
        check(pod(&[(&[], &[("cpu", "1"), ("memory", "1Gi")])]), "Guaranteed");
        check(pod(&[(&[("cpu", "1000m"), ("memory", "1Gi")], &[("cpu", "1"), ("memory", "1Gi")])]), "Guaranteed");
        check(pod(&[(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "2"), ("memory", "1Gi")])]), "Burstable");
        check(pod(&[(&[], &[("cpu", "1"), ("memory", "1Gi")]), (&[], &[])]), "Burstable");
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t1 = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let first = PodStatus { conditions: Some(pod_conditions(None, (true, None), (false, None), t0)), ..Default::default() };
        let second = pod_conditions(Some(&first), (true, None), (true, None), t1);
        let get = |cs: &[PodCondition], ty: &str| cs.iter().find(|c| c.type_ == ty).unwrap().clone();
        assert_eq!(get(&second, "Initialized").last_transition_time, Some(Time(t0)));
        assert_eq!(get(&second, "Ready").last_transition_time, Some(Time(t1)));
        assert_eq!(get(&second, "Ready").status, "True");
        assert_eq!(get(first.conditions.as_ref().unwrap(), "Ready").reason.as_deref(), Some("ContainersNotReady"));
    }
}
