//! The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount).
//!
//! Every pod runs *as* a ServiceAccount — the identity its processes use
//! towards the API. A pod that names none runs as the namespace's `default`
//! account, which the serviceaccount controller creates in every namespace.
//! This plugin writes that default into `spec.serviceAccountName` (and the
//! deprecated `spec.serviceAccount` alias) on create, and refuses a pod
//! whose ServiceAccount does not exist — the familiar
//! `error looking up service account default/default: serviceaccount "default" not found`
//! right after a namespace is created, before the controller has caught up.
//!
//! (Upstream also mounts the account's API token into the pod; rkube issues
//! no service-account tokens yet.)

use serde_json::{json, Value};

use super::{AdmissionError, Request};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
const PLUGIN: &str = "ServiceAccount";

/// Mirror pods (created by a kubelet from a static manifest) are exempt.
fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some()
}

/// Mutating: sets `spec.serviceAccountName` to `default` when absent.
/// Returns whether the pod changed.
pub fn admit(req: &Request<'_>, pod: &mut Value) -> bool {
    if !req.is_pod_create() || is_mirror_pod(pod) {
        return false;
    }
    let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
        Some(s) => s,
        None => return false,
    };
    let current = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str).filter(|s| !s.is_empty()))
        .map(str::to_string);
    let name = current.clone().unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    let before = (spec.get("serviceAccountName").cloned(), spec.get("serviceAccount").cloned());
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    before != (spec.get("serviceAccountName").cloned(), spec.get("serviceAccount").cloned())
}

/// Validating: the pod's ServiceAccount must exist, when `exists` can tell.
pub fn validate(req: &Request<'_>, pod: &Value, exists: Option<&dyn Fn(&str) -> bool>) -> Result<(), AdmissionError> {
    if !req.is_pod_create() || is_mirror_pod(pod) {
        return Ok(());
    }
    let Some(exists) = exists else { return Ok(()) };
    let name = pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or(DEFAULT_SERVICE_ACCOUNT);
    if exists(name) {
        return Ok(());
    }
    Err(AdmissionError::forbidden(
        PLUGIN,
        req,
        Some(pod),
        format!("error looking up service account {}/{}: serviceaccount {:?} not found", req.namespace, name, name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(req: Request<'_>, pod: Value, expected_name: Option<&str>, changed: bool) {
        let mut pod = pod;
        assert_eq!(admit(&req, &mut pod), changed, "{pod}");
        assert_eq!(pod.pointer("/spec/serviceAccountName").and_then(Value::as_str), expected_name, "{pod}");
        if let Some(n) = expected_name {
            assert_eq!(pod["spec"]["serviceAccount"], n);
        }
    }

    #[test]
    fn defaults_service_account() {
        let create = Request::create("", "pods", "dev");
        check(create, json!({"metadata": {"name": "p"}, "spec": {"containers": []}}), Some("default"), true);
        check(create, json!({"spec": {"serviceAccountName": "builder"}}), Some("builder"), true);
        check(create, json!({"spec": {"serviceAccountName": "builder", "serviceAccount": "builder"}}), Some("builder"), false);
        // The deprecated alias alone still counts.
        check(create, json!({"spec": {"serviceAccount": "legacy"}}), Some("legacy"), true);
        check(create, json!({"spec": {"serviceAccountName": ""}}), Some("default"), true);
        // Not a pod create: untouched.
        let mut update = Request::create("", "pods", "dev");
        update.operation = super::super::Operation::Update;
        check(update, json!({"spec": {}}), None, false);
        check(Request::create("", "services", "dev"), json!({"spec": {}}), None, false);
        check(
            create,
            json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}}),
            None,
            false,
        );
    }

    #[test]
    fn service_account_must_exist() {
        let req = Request::create("", "pods", "dev");
        let only_builder = |n: &str| n == "builder";
        let pod = |sa: &str| json!({"metadata": {"name": "web"}, "spec": {"serviceAccountName": sa}});
        assert_eq!(validate(&req, &pod("builder"), Some(&only_builder)), Ok(()));
        let err = validate(&req, &pod("default"), Some(&only_builder)).unwrap_err();
        assert_eq!(
            err.message(),
            r#"pods "web" is forbidden: error looking up service account dev/default: serviceaccount "default" not found"#
        );
        // Unknown to the caller: no check.
        assert_eq!(validate(&req, &pod("default"), None), Ok(()));
    }
}
