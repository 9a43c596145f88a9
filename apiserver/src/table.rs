//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`
//! turns a list (or a watch event) into a `meta.k8s.io/v1` Table with the
//! columns `kubectl get` shows — the same columns kube-apiserver's printers
//! produce, computed the same way (pod STATUS, READY, AGE...).

use serde_json::{json, Value};

/// (name, type, priority): priority 1 columns show only with `-o wide`.
type Col = (&'static str, &'static str, u8);

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0), ("Age", "string", 0),
            ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1),
        ],
        "Node" => vec![
            ("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0), ("Version", "string", 0),
            ("Internal-IP", "string", 1), ("External-IP", "string", 1), ("OS-Image", "string", 1), ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "Service" => vec![
            ("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0), ("External-IP", "string", 0),
            ("Port(s)", "string", 0), ("Age", "string", 0), ("Selector", "string", 1),
        ],
        "Deployment" => vec![
            ("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0), ("Age", "string", 0),
            ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0), ("Age", "string", 0),
            ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1),
        ],
        "Namespace" => vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        "Endpoints" => vec![("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "Event" => vec![
            ("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0), ("Object", "string", 0),
            ("Subobject", "string", 1), ("Source", "string", 1), ("Message", "string", 0), ("First Seen", "string", 1),
            ("Count", "string", 1), ("Name", "string", 1),
        ],
        "ConfigMap" => vec![("Name", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        "Secret" => vec![("Name", "string", 0), ("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        "ServiceAccount" => vec![("Name", "string", 0), ("Secrets", "string", 0), ("Age", "string", 0)],
        "Lease" => vec![("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

pub fn column_definitions(kind: &str) -> Value {
    Value::Array(
        columns(kind)
            .into_iter()
            .map(|(name, ty, priority)| {
                json!({
                    "name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                    "description": column_description(name), "priority": priority,
                })
            })
            .collect(),
    )
}

fn column_description(name: &str) -> &'static str {
    match name {
        "Name" => "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "Age" => "CreationTimestamp is a timestamp representing the server time when this object was created.",
        _ => "",
    }
}

/// One row for one object; `include_object` is `None`, `Metadata` or `Object`.
pub fn row(kind: &str, obj: &Value, include_object: &str) -> Value {
    let object = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}),
    };
    json!({"cells": cells(kind, obj), "object": object})
}

pub fn table(kind: &str, rv: &str, continue_token: Option<&str>, objs: &[&Value], include_object: &str) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(kind),
        "rows": objs.iter().map(|o| row(kind, o, include_object)).collect::<Vec<_>>(),
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn age(obj: &Value) -> String {
    since(obj["metadata"]["creationTimestamp"].as_str())
}

fn since(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        let years = days / 365;
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{}y", days / 365)
    }
}

fn selector_string(m: &Value) -> String {
    or_none(
        m.as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
    )
}

fn containers_and_images(template_spec: &Value) -> (String, String) {
    let cs = template_spec["containers"].as_array().cloned().unwrap_or_default();
    (
        cs.iter().map(|c| s(&c["name"])).collect::<Vec<_>>().join(","),
        cs.iter().map(|c| s(&c["image"])).collect::<Vec<_>>().join(","),
    )
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    match kind {
        "Pod" => pod_cells(o),
        "Node" => {
            let ready = o["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
            let mut status = match ready.map(|c| s(&c["status"])) {
                Some(st) if st == "True" => "Ready".to_string(),
                Some(_) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if o["spec"]["unschedulable"] == json!(true) {
                status.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
                .collect();
            roles.sort();
            let addr = |t: &str| {
                o["status"]["addresses"].as_array().into_iter().flatten().find(|a| a["type"] == t).map(|a| s(&a["address"])).unwrap_or_default()
            };
            let info = &o["status"]["nodeInfo"];
            vec![
                name, json!(status), json!(or_none(roles.join(","))), json!(age(o)), json!(s(&info["kubeletVersion"])),
                json!(or_none(addr("InternalIP"))), json!(or_none(addr("ExternalIP"))), json!(s(&info["osImage"])),
                json!(s(&info["kernelVersion"])), json!(s(&info["containerRuntimeVersion"])),
            ]
        }
        "Service" => {
            let spec = &o["spec"];
            let ty = s(&spec["type"]);
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["nodePort"].as_i64() {
                    Some(np) => format!("{}:{}/{}", s(&p["port"]), np, s(&p["protocol"])),
                    None => format!("{}/{}", s(&p["port"]), s(&p["protocol"])),
                })
                .collect();
            let external = match ty.as_str() {
                "ExternalName" => s(&spec["externalName"]),
                "LoadBalancer" => "<pending>".into(),
                _ => spec["externalIPs"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_default(),
            };
            vec![
                name, json!(ty), json!(or_none(s(&spec["clusterIP"]))), json!(or_none(external)),
                json!(or_none(ports.join(","))), json!(age(o)), json!(selector_string(&spec["selector"])),
            ]
        }
        "Deployment" => {
            let (c, i) = containers_and_images(&o["spec"]["template"]["spec"]);
            let st = &o["status"];
            vec![
                name,
                json!(format!("{}/{}", st["readyReplicas"].as_i64().unwrap_or(0), o["spec"]["replicas"].as_i64().unwrap_or(0))),
                json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                json!(age(o)), json!(c), json!(i),
                json!(selector_string(&o["spec"]["selector"]["matchLabels"])),
            ]
        }
        "ReplicaSet" => {
            let (c, i) = containers_and_images(&o["spec"]["template"]["spec"]);
            let st = &o["status"];
            vec![
                name, json!(o["spec"]["replicas"].as_i64().unwrap_or(0)), json!(st["replicas"].as_i64().unwrap_or(0)),
                json!(st["readyReplicas"].as_i64().unwrap_or(0)), json!(age(o)), json!(c), json!(i),
                json!(selector_string(&o["spec"]["selector"]["matchLabels"])),
            ]
        }
        "Namespace" => vec![name, json!(s(&o["status"]["phase"])), json!(age(o))],
        "Endpoints" => {
            let mut eps = Vec::new();
            for ss in o["subsets"].as_array().into_iter().flatten() {
                for a in ss["addresses"].as_array().into_iter().flatten() {
                    let ports = ss["ports"].as_array().cloned().unwrap_or_default();
                    if ports.is_empty() {
                        eps.push(s(&a["ip"]));
                    }
                    for p in ports {
                        eps.push(format!("{}:{}", s(&a["ip"]), s(&p["port"])));
                    }
                }
            }
            let shown = if eps.len() > 3 { format!("{} + {} more...", eps[..3].join(","), eps.len() - 3) } else { eps.join(",") };
            vec![name, json!(or_none(shown)), json!(age(o))]
        }
        "Event" => {
            let last = o["lastTimestamp"].as_str().or(o["eventTime"].as_str()).or(o["metadata"]["creationTimestamp"].as_str());
            let io = &o["involvedObject"];
            let source = format!("{}{}", s(&o["source"]["component"]), o["source"]["host"].as_str().map(|h| format!(", {h}")).unwrap_or_default());
            vec![
                json!(since(last)), json!(s(&o["type"])), json!(s(&o["reason"])),
                json!(format!("{}/{}", s(&io["kind"]).to_lowercase(), s(&io["name"]))),
                json!(s(&io["fieldPath"])), json!(source), json!(s(&o["message"]).trim()),
                json!(since(o["firstTimestamp"].as_str().or(last))), json!(o["count"].as_i64().unwrap_or(1).to_string()), name,
            ]
        }
        "ConfigMap" => {
            let n = o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n.to_string()), json!(age(o))]
        }
        "Secret" => vec![name, json!(s(&o["type"])), json!(o["data"].as_object().map_or(0, |m| m.len()).to_string()), json!(age(o))],
        "ServiceAccount" => vec![name, json!(o["secrets"].as_array().map_or(0, |a| a.len()).to_string()), json!(age(o))],
        "Lease" => vec![name, json!(or_none(s(&o["spec"]["holderIdentity"]))), json!(age(o))],
        _ => vec![name, json!(age(o))],
    }
}

/// kubectl's pod STATUS column logic (`printPod`).
fn pod_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let total = o["spec"]["containers"].as_array().map_or(0, |a| a.len());
    let mut reason = st["reason"].as_str().map(str::to_string).unwrap_or_else(|| s(&st["phase"]));
    let mut restarts = 0;
    let mut ready = 0;
    let mut initializing = false;
    let init_total = o["spec"]["initContainers"].as_array().map_or(0, |a| a.len());
    for (i, c) in st["initContainerStatuses"].as_array().into_iter().flatten().enumerate() {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        let term = &c["state"]["terminated"];
        let wait = &c["state"]["waiting"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        initializing = true;
        reason = if term.is_object() {
            match term["reason"].as_str() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
            }
        } else if wait["reason"].as_str().is_some_and(|r| !r.is_empty() && r != "PodInitializing") {
            format!("Init:{}", s(&wait["reason"]))
        } else {
            format!("Init:{i}/{init_total}")
        };
        break;
    }
    if !initializing {
        restarts = 0;
        let mut has_running = false;
        let statuses = st["containerStatuses"].as_array().cloned().unwrap_or_default();
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            let state = &c["state"];
            if let Some(r) = state["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(r) = state["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if state["terminated"].is_object() {
                reason = match state["terminated"]["signal"].as_i64() {
                    Some(sig) if sig != 0 => format!("Signal:{sig}"),
                    _ => format!("ExitCode:{}", state["terminated"]["exitCode"].as_i64().unwrap_or(0)),
                };
            } else if state["running"].is_object() && c["ready"] == json!(true) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if !o["metadata"]["deletionTimestamp"].is_null() {
        reason = if st["reason"] == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    let ips = st["podIP"].as_str().unwrap_or("").to_string();
    let gates = o["spec"]["readinessGates"].as_array().map(|g| g.len()).unwrap_or(0);
    vec![
        json!(s(&o["metadata"]["name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(o)),
        json!(or_none(ips)),
        json!(or_none(s(&o["spec"]["nodeName"]))),
        json!(or_none(s(&st["nominatedNodeName"]))),
        json!(if gates == 0 { "<none>".to_string() } else { format!("0/{gates}") }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_kubectl_prints_them() {
        for (secs, expected) in [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"), (40 * 86400, "40d")] {
            assert_eq!(human_duration(secs), expected, "{secs}");
        }
    }

    fn pod_status(pod: Value) -> (String, String) {
        let c = pod_cells(&pod);
        (c[1].as_str().unwrap().to_string(), c[2].as_str().unwrap().to_string())
    }

    #[test]
    fn pod_status_column() {
        let base = |status: Value| json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": status});
        assert_eq!(pod_status(base(json!({"phase": "Pending"}))), ("0/2".into(), "Pending".into()));
        assert_eq!(
            pod_status(base(json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))),
            ("1/2".into(), "CrashLoopBackOff".into())
        );
        let mut p = base(json!({"phase": "Running"}));
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(pod_status(p).1, "Terminating");
    }

    #[test]
    fn service_ports_column() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}});
        let c = cells("Service", &svc);
        assert_eq!(c[1..5].to_vec(), vec![json!("NodePort"), json!("10.96.0.5"), json!("<none>"), json!("80:30080/TCP")]);
        assert_eq!(c[6], json!("app=web"));
    }
}
