//! Defaulting: the fields Kubernetes fills in when the user leaves them out
//! (upstream's `SetDefaults_*` functions), so a pod read back from rkube
//! looks like one read back from Kubernetes.

use serde_json::{json, Map, Value};

/// Sets `obj[key] = value` unless the key is already present and not null.
fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    match obj.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            obj.insert(key.to_string(), value);
        }
    }
}

/// Gets (creating if needed) the object under `key`.
fn object<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj.insert(key.to_string(), json!({}));
    }
    obj.get_mut(key).and_then(Value::as_object_mut).expect("just inserted")
}

fn each_object<'a>(obj: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `SetDefaults_Pod`.
pub fn pod(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    pod_spec(object(o, "spec"));
}

/// `SetDefaults_Deployment`.
pub fn deployment(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let spec = object(o, "spec");
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    let strategy = object(spec, "strategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = object(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!("25%"));
        default(ru, "maxSurge", json!("25%"));
    }
    pod_template(spec);
}

/// `SetDefaults_ReplicaSet`.
pub fn replica_set(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let spec = object(o, "spec");
    default(spec, "replicas", json!(1));
    pod_template(spec);
}

/// `SetDefaults_Namespace` and `SetDefaults_NamespaceStatus`: the
/// `kubernetes` finalizer the namespace controller removes when it has
/// emptied a deleted namespace.
pub fn namespace(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    default(object(o, "spec"), "finalizers", json!(["kubernetes"]));
    default(object(o, "status"), "phase", json!("Active"));
}

/// `SetDefaults_Secret`.
pub fn secret(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    default(o, "type", json!("Opaque"));
}

/// An Event's type and count, as the event recorder would set them.
pub fn event(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    default(o, "type", json!("Normal"));
    default(o, "count", json!(1));
}

fn pod_template(spec: &mut Map<String, Value>) {
    let template = object(spec, "template");
    pod_spec(object(template, "spec"));
}

/// `SetDefaults_PodSpec` and the container defaults under it.
fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for key in ["containers", "initContainers"] {
        for c in each_object(spec, key) {
            container(c);
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    default(c, "imagePullPolicy", json!(pull_policy_for(&image)));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    let resources = object(c, "resources");
    // A container with limits but no requests requests its limits
    // (upstream `SetDefaults_Pod`).
    if let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() {
        let requests = object(resources, "requests");
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
    for p in each_object(c, "ports") {
        default(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                default(h, "path", json!("/"));
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn pull_policy_for(image: &str) -> &'static str {
    // A digest pins the image: never `latest`.
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// `SetDefaults_Service` and its ports.
pub fn service(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let spec = object(o, "spec");
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec["sessionAffinity"] == "ClientIP" {
        let cfg = object(spec, "sessionAffinityConfig");
        default(object(cfg, "clientIP"), "timeoutSeconds", json!(10800));
    }
    for p in each_object(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            default(p, "targetPort", port);
        }
    }
    default(object(o, "status"), "loadBalancer", json!({}));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, input: Value, path: &[&str], expected: Value) {
        let mut obj = input;
        // What each kind's strategy runs (`registry/<kind>.rs`).
        match kind {
            "Pod" => pod(&mut obj),
            "Deployment" => deployment(&mut obj),
            "Service" => service(&mut obj),
            other => panic!("no defaults table entry for {other}"),
        }
        let mut cur = &obj;
        for p in path {
            cur = match p.parse::<usize>() {
                Ok(i) => &cur[i],
                Err(_) => &cur[*p],
            };
        }
        assert_eq!(cur, &expected, "{kind} {path:?} in {obj}");
    }

    #[test]
    fn pod_defaults() {
        let pod = || json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        check("Pod", pod(), &["spec", "restartPolicy"], json!("Always"));
        check("Pod", pod(), &["spec", "terminationGracePeriodSeconds"], json!(30));
        check("Pod", pod(), &["spec", "dnsPolicy"], json!("ClusterFirst"));
        check("Pod", pod(), &["spec", "schedulerName"], json!("default-scheduler"));
        check("Pod", pod(), &["spec", "containers", "0", "imagePullPolicy"], json!("Always"));
        check(
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "1"}}}]}}),
            &["spec"],
            json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}, "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler",
                "enableServiceLinks": true, "priority": 0, "preemptionPolicy": "PreemptLowerPriority"}),
        );
    }

    #[test]
    fn pull_policy() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:1", "IfNotPresent"),
            ("busybox@sha256:abc", "IfNotPresent"),
        ] {
            assert_eq!(pull_policy_for(image), policy, "{image}");
        }
    }

    #[test]
    fn deployment_and_service_defaults() {
        let d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        check("Deployment", d.clone(), &["spec", "replicas"], json!(1));
        check("Deployment", d.clone(), &["spec", "strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
        check("Deployment", d.clone(), &["spec", "revisionHistoryLimit"], json!(10));
        check("Deployment", d, &["spec", "template", "spec", "restartPolicy"], json!("Always"));
        let s = json!({"spec": {"ports": [{"port": 80}]}});
        check("Service", s.clone(), &["spec", "type"], json!("ClusterIP"));
        check("Service", s.clone(), &["spec", "ports", "0"], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        check("Service", s, &["spec", "sessionAffinity"], json!("None"));
    }
}
