//! Validation (upstream's `ValidatePod`, `ValidateService`, ...): a rejected
//! object gets 422 Invalid with one cause per bad field, in upstream's
//! wording, and nothing is written.

use std::collections::HashSet;

use serde_json::Value;

use crate::status::FieldError;

const DNS1123_LABEL_FMT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_FMT: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_FMT: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Which name rule a resource's names follow.
#[derive(Clone, Copy)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// RBAC objects: any name usable as a URL path segment (`system:node`).
    PathSegment,
}

/// Checks a name, returning upstream's message when it is not valid.
pub fn check_name(rule: NameRule, name: &str) -> Option<String> {
    if let NameRule::PathSegment = rule {
        return match name {
            "." | ".." => Some(format!("may not be '{name}'")),
            n if n.contains('/') => Some("may not contain '/'".into()),
            n if n.contains('%') => Some("may not contain '%'".into()),
            _ => None,
        };
    }
    let (ok, fmt, max) = match rule {
        NameRule::Subdomain => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_FMT, 253),
        NameRule::Label => (is_dns1123_label(name), DNS1123_LABEL_FMT, 63),
        NameRule::Dns1035 => (is_dns1035_label(name), DNS1035_LABEL_FMT, 63),
        NameRule::PathSegment => unreachable!("handled above"),
    };
    if ok {
        None
    } else if name.len() > max {
        Some(format!("must be no more than {max} characters"))
    } else {
        Some(fmt.to_string())
    }
}

fn check_labels(path: &str, labels: &Value, errs: &mut Vec<FieldError>) {
    let Some(m) = labels.as_object() else { return };
    for (k, v) in m {
        let name = k.rsplit('/').next().unwrap_or(k);
        let prefix_ok = match k.rsplit_once('/') {
            Some((p, _)) => is_dns1123_subdomain(p),
            None => true,
        };
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !prefix_ok || !name_ok {
            errs.push(FieldError::invalid(path, k.as_str(), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        let val = v.as_str().unwrap_or("");
        let val_ok = val.len() <= 63
            && val.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && (val.is_empty()
                || (val.starts_with(|c: char| c.is_ascii_alphanumeric()) && val.ends_with(|c: char| c.is_ascii_alphanumeric())));
        if !val_ok {
            errs.push(FieldError::invalid(path, val, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
    }
}

/// The metadata checks every kind shares (upstream `ValidateObjectMeta`):
/// a name, valid by the kind's `rule`, and valid labels.
pub fn object_meta(obj: &Value, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = &obj["metadata"];
    match meta["name"].as_str() {
        None | Some("") => errs.push(FieldError::required("metadata.name")),
        Some(n) => {
            if let Some(msg) = check_name(rule, n) {
                errs.push(FieldError::invalid("metadata.name", n, msg));
            }
        }
    }
    check_labels("metadata.labels", &meta["labels"], &mut errs);
    errs
}

/// ValidatePod: the pod's spec.
pub fn pod(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    pod_spec("spec", &obj["spec"], &mut errs);
    errs
}

/// ValidateDeployment / ValidateReplicaSet: replicas, a selector, and a
/// template it selects.
pub fn workload(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    workload_spec(&obj["spec"], &mut errs);
    errs
}

/// ValidateService.
pub fn service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    service_spec(&obj["spec"], &mut errs);
    errs
}

/// ValidateConfigMap / ValidateSecret: the data keys.
pub fn data_keys(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in ["data", "binaryData", "stringData"] {
        for k in obj[field].as_object().into_iter().flatten().map(|(k, _)| k) {
            let ok = !k.is_empty() && k.len() <= 253 && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !ok {
                errs.push(FieldError::invalid(
                    format!("{field}[{k}]"),
                    k.as_str(),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
    errs
}

/// ValidateRoleBinding.
pub fn role_binding(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    binding(&["Role", "ClusterRole"], obj, &mut errs);
    errs
}

/// ValidateClusterRoleBinding: a cluster-wide binding grants a ClusterRole.
pub fn cluster_role_binding(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    binding(&["ClusterRole"], obj, &mut errs);
    errs
}

/// ValidateRoleBindingUpdate / ValidateClusterRoleBindingUpdate: a
/// binding's role cannot change (delete and re-create it), so what it
/// grants is decided once, at create.
pub fn role_ref_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let role_ref = |o: &Value| ["apiGroup", "kind", "name"].map(|k| o["roleRef"][k].as_str().unwrap_or("").to_string());
    if role_ref(new) == role_ref(old) {
        return vec![];
    }
    let [group, kind, name] = role_ref(new);
    let rendered = format!("rbac.RoleRef{{APIGroup:{group:?}, Kind:{kind:?}, Name:{name:?}}}");
    vec![FieldError::invalid_struct("roleRef", rendered, "cannot change roleRef")]
}

/// ValidateDeploymentUpdate / ValidateReplicaSetUpdate: the selector is
/// immutable (apps/v1), so a workload never loses track of its pods.
pub fn selector_update(new: &Value, old: &Value) -> Vec<FieldError> {
    if new["spec"]["selector"] == old["spec"]["selector"] {
        return vec![];
    }
    vec![FieldError::invalid("spec.selector", new["spec"]["selector"].to_string(), "field is immutable")]
}

/// A binding's roleRef names one of `kinds` (Role or ClusterRole; a
/// ClusterRoleBinding only a ClusterRole) of the RBAC group, by a valid
/// name; each subject has a name and a known kind.
fn binding(kinds: &[&str], obj: &Value, errs: &mut Vec<FieldError>) {
    let role_ref = &obj["roleRef"];
    let at = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let group = at(role_ref, "apiGroup");
    if group != "rbac.authorization.k8s.io" {
        errs.push(FieldError::not_supported("roleRef.apiGroup", group, &["rbac.authorization.k8s.io"]));
    }
    let ref_kind = at(role_ref, "kind");
    if !kinds.contains(&ref_kind.as_str()) {
        errs.push(FieldError::not_supported("roleRef.kind", ref_kind, kinds));
    }
    match at(role_ref, "name") {
        n if n.is_empty() => errs.push(FieldError::required("roleRef.name")),
        n => {
            if let Some(msg) = check_name(NameRule::PathSegment, &n) {
                errs.push(FieldError::invalid("roleRef.name", n, msg));
            }
        }
    }
    for (i, subject) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        if at(subject, "name").is_empty() {
            errs.push(FieldError::required(format!("subjects[{i}].name")));
        }
        let k = at(subject, "kind");
        if !matches!(k.as_str(), "ServiceAccount" | "User" | "Group") {
            errs.push(FieldError::not_supported(format!("subjects[{i}].kind"), k, &["ServiceAccount", "User", "Group"]));
        }
    }
}

/// ValidateEphemeralContainers: unique names (also against the pod's other
/// containers), an image, none of the fields that only make sense for a
/// container the pod was designed with, and a target that exists.
fn ephemeral_containers(path: &str, spec: &Value, names: &mut HashSet<String>, errs: &mut Vec<FieldError>) {
    let regular: Vec<&str> = ["containers", "initContainers"].iter().flat_map(|k| spec[*k].as_array().into_iter().flatten()).filter_map(|c| c["name"].as_str()).collect();
    for (i, c) in spec["ephemeralContainers"].as_array().into_iter().flatten().enumerate() {
        let cpath = format!("{path}.ephemeralContainers[{i}]");
        match c["name"].as_str() {
            None | Some("") => errs.push(FieldError::required(format!("{cpath}.name"))),
            Some(n) if !is_dns1123_label(n) => errs.push(FieldError::invalid(format!("{cpath}.name"), n, DNS1123_LABEL_FMT)),
            Some(n) if !names.insert(n.to_string()) => errs.push(FieldError::duplicate(format!("{cpath}.name"), n)),
            Some(_) => {}
        }
        if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
            errs.push(FieldError::required(format!("{cpath}.image")));
        }
        for f in ["ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources"] {
            let set = match &c[f] {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(m) => !m.is_empty(),
                _ => true,
            };
            if set {
                errs.push(FieldError::forbidden(format!("{cpath}.{f}"), "cannot be set for an Ephemeral Container"));
            }
        }
        if let Some(t) = c["targetContainerName"].as_str().filter(|t| !t.is_empty()) {
            if !regular.contains(&t) {
                errs.push(FieldError::invalid(format!("{cpath}.targetContainerName"), t, "must be the name of one of the pod's containers"));
            }
        }
    }
}

/// ValidatePodEphemeralContainersUpdate: ephemeral containers can be added,
/// never changed or removed.
pub fn ephemeral_containers_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let new_list = new["ephemeralContainers"].as_array().cloned().unwrap_or_default();
    for o in old["ephemeralContainers"].as_array().into_iter().flatten() {
        let name = o["name"].as_str().unwrap_or("");
        match new_list.iter().find(|n| n["name"] == o["name"]) {
            None => errs.push(FieldError::forbidden("spec.ephemeralContainers", format!("existing ephemeral containers {name:?} may not be removed"))),
            Some(n) if n != o => errs.push(FieldError::forbidden("spec.ephemeralContainers", format!("existing ephemeral containers {name:?} may not be changed"))),
            Some(_) => {}
        }
    }
    errs
}

fn pod_spec(path: &str, spec: &Value, errs: &mut Vec<FieldError>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(format!("{path}.containers")));
    }
    let mut names = HashSet::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in spec[key].as_array().into_iter().flatten().enumerate() {
            let cpath = format!("{path}.{key}[{i}]");
            match c["name"].as_str() {
                None | Some("") => errs.push(FieldError::required(format!("{cpath}.name"))),
                Some(n) => {
                    if !is_dns1123_label(n) {
                        errs.push(FieldError::invalid(format!("{cpath}.name"), n, DNS1123_LABEL_FMT));
                    } else if !names.insert(n.to_string()) {
                        errs.push(FieldError::duplicate(format!("{cpath}.name"), n));
                    }
                }
            }
            if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
                errs.push(FieldError::required(format!("{cpath}.image")));
            }
            let mut ports = HashSet::new();
            let mut port_names = HashSet::new();
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let ppath = format!("{cpath}.ports[{j}]");
                let num = p["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&num) {
                    errs.push(FieldError::invalid(format!("{ppath}.containerPort"), num.to_string(), "must be between 1 and 65535, inclusive"));
                }
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                    errs.push(FieldError::not_supported(format!("{ppath}.protocol"), proto, &["SCTP", "TCP", "UDP"]));
                }
                if !ports.insert((num, proto.to_string())) {
                    errs.push(FieldError::duplicate(format!("{ppath}.containerPort"), num.to_string()));
                }
                if let Some(n) = p["name"].as_str() {
                    if !port_names.insert(n.to_string()) {
                        errs.push(FieldError::duplicate(format!("{ppath}.name"), n));
                    }
                }
                if let Some(hp) = p["hostPort"].as_i64() {
                    if !(0..=65535).contains(&hp) {
                        errs.push(FieldError::invalid(format!("{ppath}.hostPort"), hp.to_string(), "must be between 1 and 65535, inclusive"));
                    }
                }
            }
            for kind in ["requests", "limits"] {
                for (res, q) in c["resources"][kind].as_object().into_iter().flatten() {
                    let qs = match q {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => String::new(),
                    };
                    if machinery::quantity::validate(&qs).is_err() {
                        errs.push(FieldError::invalid(
                            format!("{cpath}.resources.{kind}[{res}]"),
                            qs,
                            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                        ));
                    }
                }
            }
        }
    }
    ephemeral_containers(path, spec, &mut names, errs);
    if let Some(rp) = spec["restartPolicy"].as_str() {
        if !matches!(rp, "Always" | "OnFailure" | "Never") {
            errs.push(FieldError::not_supported(format!("{path}.restartPolicy"), rp, &["Always", "OnFailure", "Never"]));
        }
    }
    if let Some(dp) = spec["dnsPolicy"].as_str() {
        if !matches!(dp, "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None") {
            errs.push(FieldError::not_supported(format!("{path}.dnsPolicy"), dp, &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]));
        }
    }
}

fn workload_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    if let Some(r) = spec["replicas"].as_i64() {
        if r < 0 {
            errs.push(FieldError::invalid("spec.replicas", r.to_string(), "must be greater than or equal to 0"));
        }
    }
    let selector = &spec["selector"];
    let empty = selector["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && selector["matchExpressions"].as_array().is_none_or(|m| m.is_empty());
    if empty {
        errs.push(FieldError::required("spec.selector"));
    } else {
        let labels = &spec["template"]["metadata"]["labels"];
        let parsed = serde_json::from_value(selector.clone())
            .map_err(|e| e.to_string())
            .and_then(|ls| machinery::selector::Selector::from_label_selector(&ls).map_err(|e| e.to_string()));
        match parsed {
            Err(e) => errs.push(FieldError::invalid("spec.selector", selector.to_string(), e)),
            Ok(sel) => {
                let map = labels
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                if !sel.matches(&map) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        labels.to_string(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    let tspec = &spec["template"]["spec"];
    pod_spec("spec.template.spec", tspec, errs);
    if let Some(rp) = tspec["restartPolicy"].as_str() {
        if rp != "Always" {
            errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", rp, &["Always"]));
        }
    }
}

fn service_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errs.push(FieldError::not_supported("spec.type", ty, &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]));
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports"));
    }
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = p["name"].as_str().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name")));
        } else if !name.is_empty() && !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(format!("{path}.port"), port.to_string(), "must be between 1 and 65535, inclusive"));
        }
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(format!("{path}.protocol"), proto, &["SCTP", "TCP", "UDP"]));
        }
        if !seen.insert((port, proto.to_string())) {
            errs.push(FieldError::duplicate(format!("{path}"), format!("{port}/{proto}")));
        }
        match &p["targetPort"] {
            Value::Number(n) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => errs.push(FieldError::invalid(
                format!("{path}.targetPort"),
                n.to_string(),
                "must be between 1 and 65535, inclusive",
            )),
            Value::String(s) if s.is_empty() || s.len() > 15 => {
                errs.push(FieldError::invalid(format!("{path}.targetPort"), s.as_str(), "must be no more than 15 characters"))
            }
            _ => {}
        }
        if p.get("nodePort").is_some_and(|n| !n.is_null()) && !matches!(ty, "NodePort" | "LoadBalancer") {
            errs.push(FieldError::forbidden(format!("{path}.nodePort"), "may not be used when `type` is 'ClusterIP'"));
        }
    }
    if let Some(sa) = spec["sessionAffinity"].as_str() {
        if !matches!(sa, "None" | "ClientIP") {
            errs.push(FieldError::not_supported("spec.sessionAffinity", sa, &["ClientIP", "None"]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What each kind's strategy checks (`registry/<kind>.rs`): its name
    /// rule and its own validation.
    fn validate(kind: &str, obj: &Value) -> Vec<FieldError> {
        let (rule, own): (NameRule, fn(&Value) -> Vec<FieldError>) = match kind {
            "ConfigMap" => (NameRule::Subdomain, data_keys),
            "Pod" => (NameRule::Subdomain, pod),
            "Deployment" => (NameRule::Subdomain, workload),
            "Service" => (NameRule::Dns1035, service),
            "RoleBinding" => (NameRule::PathSegment, role_binding),
            "ClusterRoleBinding" => (NameRule::PathSegment, cluster_role_binding),
            other => panic!("no validation table entry for {other}"),
        };
        let mut errs = object_meta(obj, rule);
        errs.extend(own(obj));
        errs
    }

    /// Validates and renders the errors as upstream prints them.
    fn check(kind: &str, obj: Value, expected: &[&str]) {
        let got: Vec<String> = validate(kind, &obj).iter().map(|e| e.to_string()).collect();
        assert_eq!(got, expected, "{kind} {obj}");
    }

    #[test]
    fn names() {
        check("ConfigMap", json!({"metadata": {"name": "a.b-c"}}), &[]);
        check("ConfigMap", json!({"metadata": {}}), &["metadata.name: Required value"]);
        assert!(check_name(NameRule::Subdomain, "Bad_Name").is_some());
        assert!(check_name(NameRule::Label, "a.b").is_some());
        assert!(check_name(NameRule::Dns1035, "1abc").is_some());
        assert!(check_name(NameRule::Dns1035, "abc-1").is_none());
        assert_eq!(check_name(NameRule::Label, &"a".repeat(64)).unwrap(), "must be no more than 63 characters");
    }

    #[test]
    fn pods() {
        let ok = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        check("Pod", ok, &[]);
        check("Pod", json!({"metadata": {"name": "p"}, "spec": {}}), &["spec.containers: Required value"]);
        check(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "c", "image": ""}]}}),
            &["spec.containers[1].name: Duplicate value: \"c\"", "spec.containers[1].image: Required value"],
        );
        check(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 70000}]}]}}),
            &["spec.containers[0].ports[1].containerPort: Duplicate value: \"80\"",
              "spec.containers[0].ports[2].containerPort: Invalid value: \"70000\": must be between 1 and 65535, inclusive"],
        );
        check(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "lots"}}}]}}),
            &["spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
              "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
        );
    }

    #[test]
    fn deployments() {
        let d = |sel: Value, labels: Value| {
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": sel,
                "template": {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}})
        };
        check("Deployment", d(json!({"matchLabels": {"app": "a"}}), json!({"app": "a"})), &[]);
        check("Deployment", d(json!({}), json!({"app": "a"})), &["spec.selector: Required value"]);
        check(
            "Deployment",
            d(json!({"matchLabels": {"app": "a"}}), json!({"app": "b"})),
            &["spec.template.metadata.labels: Invalid value: \"{\\\"app\\\":\\\"b\\\"}\": `selector` does not match template `labels`"],
        );
    }

    #[test]
    fn role_bindings() {
        let b = |role_ref: Value, subjects: Value| json!({"metadata": {"name": "b"}, "roleRef": role_ref, "subjects": subjects});
        let admin = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"});
        let jane = json!([{"kind": "User", "name": "jane"}]);
        check("RoleBinding", b(admin.clone(), jane.clone()), &[]);
        check("ClusterRoleBinding", b(admin, jane.clone()), &[]);
        check("RoleBinding", b(json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}), json!([])), &[]);
        check(
            "RoleBinding",
            b(json!({"apiGroup": "example.com", "kind": "Foo", "name": ""}), json!([{"kind": "Robot", "name": ""}])),
            &["roleRef.apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\"",
              "roleRef.kind: Unsupported value: \"Foo\": supported values: \"Role\", \"ClusterRole\"",
              "roleRef.name: Required value",
              "subjects[0].name: Required value",
              "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""],
        );
        // A ClusterRoleBinding refers to a ClusterRole only; names are path segments.
        check(
            "ClusterRoleBinding",
            b(json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a/b"}), jane),
            &["roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
              "roleRef.name: Invalid value: \"a/b\": may not contain '/'"],
        );
    }

    #[test]
    fn services() {
        check("Service", json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}}), &[]);
        check("Service", json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}}), &["spec.ports: Required value"]);
        check(
            "Service",
            json!({"metadata": {"name": "s"}, "spec": {"type": "Magic", "ports": [{"port": 80}, {"port": 0, "name": "b"}]}}),
            &["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
              "spec.ports[0].name: Required value",
              "spec.ports[1].port: Invalid value: \"0\": must be between 1 and 65535, inclusive"],
        );
    }
}
