//! Pod strategy (upstream `pkg/registry/core/pod/strategy.go`): a new pod
//! starts Pending with its QoS class; its spec is nearly immutable; it is
//! deleted gracefully once a node runs it.

use machinery::qos;
use serde_json::{json, Value};

use super::defaults;
use super::options::DeleteOptions;
use super::strategy::{BeforeDelete, Strategy};
use super::subresources::Subresource;
use super::validation;
use crate::status::FieldError;

pub struct PodStrategy;

/// What `kubectl` and upstream print when a pod update changes more than
/// it may.
const SPEC_IMMUTABLE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

impl Strategy for PodStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn set_defaults(&self, obj: &mut Value) {
        defaults::pod(obj);
    }

    /// `PrepareForCreate`: Pending, with the QoS class of the pod as
    /// admitted (LimitRanger may have filled in its resources). The class
    /// never changes afterwards: a pod's resources are immutable.
    fn prepare_for_create(&self, obj: &mut Value) {
        let class = qos::compute_json(&obj["spec"]);
        obj["status"] = json!({"phase": "Pending", "qosClass": class.as_str()});
    }

    /// A status write that leaves out the QoS class keeps the recorded one
    /// (upstream `podStatusStrategy.PrepareForUpdate`).
    fn prepare_for_update(&self, sub: Subresource, new: &mut Value, old: &Value) {
        if sub != Subresource::Status {
            return;
        }
        let recorded = &old["status"]["qosClass"];
        if new["status"]["qosClass"].as_str().is_none_or(str::is_empty) && !recorded.is_null() {
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            new["status"]["qosClass"] = recorded.clone();
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::pod(obj)
    }

    /// Upstream `ValidatePodUpdate` and its per-subresource variants.
    fn validate_update(&self, sub: Subresource, new: &Value, old: &Value) -> Vec<FieldError> {
        match sub {
            Subresource::EphemeralContainers => validation::ephemeral_containers_update(&new["spec"], &old["spec"]),
            // ValidatePodStatusUpdate: the QoS class is immutable.
            Subresource::Status => {
                let (n, o) = (&new["status"]["qosClass"], &old["status"]["qosClass"]);
                if n == o {
                    return vec![];
                }
                vec![FieldError::invalid("status.qosClass", n.as_str().unwrap_or(""), "field is immutable")]
            }
            // The binding is the one write that sets spec.nodeName.
            Subresource::Binding => spec_update(new, old, true),
            _ => spec_update(new, old, false),
        }
    }

    /// `CheckGracefulDelete`: a pod on a node gets a `deletionTimestamp`
    /// grace seconds ahead and waits for its node agent to stop it; an
    /// unscheduled or finished pod, or grace 0, goes at once.
    fn before_delete(&self, obj: &mut Value, opts: &DeleteOptions) -> BeforeDelete {
        let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let terminal = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        let default_grace = obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
        let grace = opts.grace_period.unwrap_or(default_grace).max(0);
        if !bound || terminal || grace == 0 {
            return BeforeDelete::Nothing;
        }
        // A second delete may shorten the grace period, never lengthen it.
        let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if current.is_some_and(|c| grace >= c) {
            return BeforeDelete::AlreadyGraceful;
        }
        let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
        obj["metadata"]["deletionTimestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        BeforeDelete::Graceful
    }
}

/// ValidatePodUpdate's spec rule: only images, `activeDeadlineSeconds`,
/// tolerations and `terminationGracePeriodSeconds` may change — and
/// `nodeName`, for the binding.
fn spec_update(new: &Value, old: &Value, binding: bool) -> Vec<FieldError> {
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        for key in ["containers", "initContainers"] {
            if let Some(cs) = s[key].as_array_mut() {
                for c in cs {
                    c.as_object_mut().map(|m| m.remove("image"));
                }
            }
        }
        if let Some(m) = s.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            m.remove("terminationGracePeriodSeconds");
            if binding {
                m.remove("nodeName");
            }
        }
        s
    };
    if strip(&new["spec"]) == strip(&old["spec"]) {
        return vec![];
    }
    vec![FieldError::forbidden("spec", SPEC_IMMUTABLE)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}})
    }

    #[test]
    fn qos_classes() {
        let check = |resources: Value, expected: &str| {
            let mut p = pod(resources.clone());
            PodStrategy.prepare_for_create(&mut p);
            assert_eq!(p["status"]["qosClass"], expected, "{resources}");
        };
        check(json!({}), "BestEffort");
        check(json!({"requests": {"cpu": "1"}}), "Burstable");
        check(json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}), "Guaranteed");
        check(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}}), "Burstable");
    }

    /// Upstream compares quantities, not their spellings; and a pod
    /// defaulted from its limits asks for them.
    #[test]
    fn qos_classes_compare_quantities() {
        for (resources, expected) in [
            (json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}), "Guaranteed"),
            (json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}}), "Guaranteed"),
            (json!({"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}), "Guaranteed"),
            (json!({"limits": {"cpu": "1", "memory": "1Gi"}}), "Guaranteed"),
            (json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}), "Burstable"),
        ] {
            // As stored: defaulted first (requests from limits), then prepared.
            let mut p = pod(resources.clone());
            PodStrategy.set_defaults(&mut p);
            PodStrategy.prepare_for_create(&mut p);
            assert_eq!(p["status"]["qosClass"], expected, "{resources}");
            // The same answer without defaulting.
            let mut raw = pod(resources.clone());
            PodStrategy.prepare_for_create(&mut raw);
            assert_eq!(raw["status"]["qosClass"], expected, "undefaulted {resources}");
        }
    }

    #[test]
    fn status_writes_keep_the_qos_class() {
        let old = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending", "qosClass": "Burstable"}});
        // Left out: the recorded class is kept.
        let mut new = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Running"}});
        PodStrategy.prepare_for_update(Subresource::Status, &mut new, &old);
        assert_eq!(new["status"]["qosClass"], "Burstable");
        assert!(PodStrategy.validate_update(Subresource::Status, &new, &old).is_empty());
        // Changed: refused, as upstream's ValidatePodStatusUpdate does.
        let mut new = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Running", "qosClass": "Guaranteed"}});
        PodStrategy.prepare_for_update(Subresource::Status, &mut new, &old);
        let errs: Vec<String> = PodStrategy.validate_update(Subresource::Status, &new, &old).iter().map(|e| e.to_string()).collect();
        assert_eq!(errs, [r#"status.qosClass: Invalid value: "Guaranteed": field is immutable"#]);
    }

    #[test]
    fn only_a_binding_sets_the_node() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        let bound = json!({"spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(PodStrategy.validate_update(Subresource::Main, &bound, &old).len(), 1);
        assert!(PodStrategy.validate_update(Subresource::Binding, &bound, &old).is_empty());
        let new_image = json!({"spec": {"containers": [{"name": "c", "image": "b"}]}});
        assert!(PodStrategy.validate_update(Subresource::Main, &new_image, &old).is_empty());
    }
}
