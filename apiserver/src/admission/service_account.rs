//! The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount).
//!
//! Every pod runs *as* a ServiceAccount — the identity its processes use
//! towards the API. A pod that names none runs as the namespace's `default`
//! account, which the serviceaccount controller creates in every namespace.
//! This plugin writes that default into `spec.serviceAccountName` (and the
//! deprecated `spec.serviceAccount` alias) on create, and refuses a pod
//! whose ServiceAccount does not exist — the familiar
//! `error looking up service account default/default: serviceaccount "default" not found`
//! when no serviceaccount controller runs.
//!
//! As upstream, the existence check runs in the mutating phase (`Admit`,
//! right after the name is defaulted) and again in the validating phase.
//! The lookup itself — the watch cache, then live reads retried for
//! `default`, which the controller may be creating at this very moment — is
//! I/O and lives in `security.rs` ([`crate::security::NamespaceInputs`]);
//! the plugin only asks the answer through its `exists` callback.
//!
//! (Upstream also mounts the account's API token into the pod; rkube issues
//! no service-account tokens yet.)

use serde_json::{json, Value};

use super::attributes::Request;
use super::errors::AdmissionError;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
const PLUGIN: &str = "ServiceAccount";

/// Mirror pods (created by a kubelet from a static manifest) are exempt.
fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some()
}

/// The ServiceAccount a pod will run as: `spec.serviceAccountName`, else
/// the deprecated `spec.serviceAccount`, else `default`.
pub fn account_name(pod: &Value) -> String {
    let spec = pod.get("spec");
    let field = |k: &str| spec.and_then(|s| s.get(k)).and_then(Value::as_str).filter(|s| !s.is_empty());
    field("serviceAccountName").or_else(|| field("serviceAccount")).unwrap_or(DEFAULT_SERVICE_ACCOUNT).to_string()
}

/// The account this plugin will look up for the request, if it looks any
/// up: pod creates other than mirror pods.
pub fn account_to_look_up(req: &Request<'_>, pod: &Value) -> Option<String> {
    (req.is_pod_create() && !is_mirror_pod(pod) && pod.get("spec").is_some_and(Value::is_object)).then(|| account_name(pod))
}

/// Mutating (upstream `Admit`): sets `spec.serviceAccountName` to `default`
/// when absent, then checks that the account exists. Returns whether the
/// pod changed.
pub fn admit(req: &Request<'_>, pod: &mut Value, exists: Option<&dyn Fn(&str) -> bool>) -> Result<bool, AdmissionError> {
    if !req.is_pod_create() || is_mirror_pod(pod) {
        return Ok(false);
    }
    let name = account_name(pod);
    let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
        Some(s) => s,
        None => return Ok(false),
    };
    let before = (spec.get("serviceAccountName").cloned(), spec.get("serviceAccount").cloned());
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let changed = before != (spec.get("serviceAccountName").cloned(), spec.get("serviceAccount").cloned());
    validate(req, pod, exists)?;
    Ok(changed)
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
    // Upstream wraps the lookup's NotFound error, whose resource is the
    // singular `serviceaccount`.
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
        assert_eq!(admit(&req, &mut pod, None), Ok(changed), "{pod}");
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
        update.operation = super::super::attributes::Operation::Update;
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

    #[test]
    fn admit_defaults_then_checks_existence() {
        // As upstream's Admit: the defaulted name is the one looked up.
        let req = Request::create("", "pods", "dev");
        let none = |_: &str| false;
        let mut p = json!({"metadata": {"generateName": "web-"}, "spec": {"containers": []}});
        let err = admit(&req, &mut p, Some(&none)).unwrap_err();
        assert_eq!(
            err.message(),
            r#"pods "web-" is forbidden: error looking up service account dev/default: serviceaccount "default" not found"#
        );
        assert_eq!(err.status()["code"], 403);
        let only_default = |n: &str| n == "default";
        let mut p = json!({"metadata": {"name": "web"}, "spec": {"containers": []}});
        assert_eq!(admit(&req, &mut p, Some(&only_default)), Ok(true));
        let mut p = json!({"metadata": {"name": "web"}, "spec": {"serviceAccount": "builder"}});
        let err = admit(&req, &mut p, Some(&only_default)).unwrap_err();
        assert!(err.message().ends_with(r#"error looking up service account dev/builder: serviceaccount "builder" not found"#), "{err}");
        // Mirror pods are not looked up.
        let mut p = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}});
        assert_eq!(admit(&req, &mut p, Some(&none)), Ok(false));
    }

    #[test]
    fn which_account_is_looked_up() {
        let create = Request::create("", "pods", "dev");
        let name = |req: &Request<'_>, pod: Value| account_to_look_up(req, &pod);
        assert_eq!(name(&create, json!({"spec": {}})).as_deref(), Some("default"));
        assert_eq!(name(&create, json!({"spec": {"serviceAccountName": "a", "serviceAccount": "b"}})).as_deref(), Some("a"));
        assert_eq!(name(&create, json!({"spec": {"serviceAccount": "b"}})).as_deref(), Some("b"));
        assert_eq!(name(&create, json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}})), None);
        assert_eq!(name(&Request::create("", "services", "dev"), json!({"spec": {}})), None);
        let mut binding = create;
        binding.subresource = "binding";
        assert_eq!(name(&binding, json!({"spec": {}})), None);
    }
}
