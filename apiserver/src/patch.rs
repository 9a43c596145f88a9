//! PATCH bodies, by content type:
//! - `application/merge-patch+json` (RFC 7386) and
//!   `application/json-patch+json` (RFC 6902): the `json-patch` crate.
//! - `application/strategic-merge-patch+json`: Kubernetes' own format, which
//!   no maintained Rust crate implements, so it is written here. It is a
//!   merge patch that merges lists of objects by a key (containers by
//!   `name`, container ports by `containerPort`, ...) instead of replacing
//!   them, plus the `$patch`, `$retainKeys`, `$setElementOrder/` and
//!   `$deleteFromPrimitiveList/` directives that `kubectl apply` sends.

use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

pub fn apply(content_type: &str, current: &Value, body: &[u8], kind: &str) -> ApiResult<Value> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let parse = || -> ApiResult<Value> {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    let mut doc = current.clone();
    match ct {
        "application/merge-patch+json" => {
            let p = parse()?;
            if !p.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, &p);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p.0)
                .map_err(|e| ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}")))?;
        }
        "application/strategic-merge-patch+json" => {
            let p = parse()?;
            let Value::Object(pm) = p else {
                return Err(ApiError::bad_request("strategic merge patch must be a JSON object"));
            };
            strategic_merge(&mut doc, &pm, kind, "")?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    Ok(doc)
}

/// The merge key of a list field, by where it sits (upstream's
/// `patchMergeKey` struct tags). `None`: the list is replaced whole.
pub(crate) fn merge_key(kind: &str, path: &str, field: &str) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" => "name",
        "ports" if kind == "Service" && path == "spec" => "port",
        "ports" if path.ends_with("containers") || path.ends_with("initContainers") => "containerPort",
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ownerReferences" => "uid",
        "taints" => "key",
        "addresses" if path == "status" => "type",
        "readinessGates" => "conditionType",
        _ => return None,
    })
}

/// Lists of scalars merged as sets (`patchStrategy:"merge"` on a []string).
pub(crate) fn is_merged_primitive_list(field: &str) -> bool {
    field == "finalizers"
}

fn strategic_merge(target: &mut Value, patch: &Map<String, Value>, kind: &str, path: &str) -> ApiResult<()> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(list) = target.get_mut(field).and_then(Value::as_array_mut) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        let obj = target.as_object_mut().unwrap();
        let child_path = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        match v {
            Value::Null => {
                obj.remove(k);
            }
            Value::Object(pm) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    obj.remove(k);
                    continue;
                }
                let entry = obj.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(entry, pm, kind, &child_path)?;
            }
            Value::Array(items) => {
                let entry = obj.entry(k.clone()).or_insert(Value::Array(vec![]));
                if let Some(key) = merge_key(kind, path, k) {
                    merge_list(entry, items, key, kind, &child_path)?;
                } else if is_merged_primitive_list(k) {
                    let list = entry.as_array_mut().map(std::mem::take).unwrap_or_default();
                    let mut merged = list;
                    for it in items {
                        if !merged.contains(it) {
                            merged.push(it.clone());
                        }
                    }
                    *entry = Value::Array(merged);
                } else {
                    *entry = Value::Array(items.iter().filter(|i| !is_directive_only(i)).cloned().collect());
                }
            }
            other => {
                obj.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        if let Some(obj) = target.as_object_mut() {
            obj.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
    for (field, order) in orders {
        let Some(key) = merge_key(kind, path, &field) else { continue };
        if let Some(list) = target.get_mut(&field).and_then(Value::as_array_mut) {
            let pos = |item: &Value| order.iter().position(|o| o[key] == item[key]).unwrap_or(usize::MAX);
            list.sort_by_key(|i| pos(i));
        }
    }
    Ok(())
}

fn is_directive_only(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.keys().all(|k| k.starts_with('$')))
}

fn merge_list(target: &mut Value, items: &[Value], key: &str, kind: &str, path: &str) -> ApiResult<()> {
    if items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
        *target = Value::Array(items.iter().filter(|i| !is_directive_only(i)).cloned().collect());
        return Ok(());
    }
    let mut list = match std::mem::take(target) {
        Value::Array(a) => a,
        _ => vec![],
    };
    for item in items {
        let Some(m) = item.as_object() else {
            return Err(ApiError::bad_request(format!("strategic merge patch: items of {path} must be objects")));
        };
        let Some(kv) = m.get(key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = list.iter().position(|x| x.get(key) == Some(kv));
        if m.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = pos {
                list.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => strategic_merge(&mut list[p], m, kind, path)?,
            None => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge(&mut fresh, m, kind, path)?;
                list.push(fresh);
            }
        }
    }
    *target = Value::Array(list);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(ct: &str, kind: &str, current: Value, patch: Value, expected: Value) {
        let got = apply(ct, &current, patch.to_string().as_bytes(), kind).unwrap();
        assert_eq!(got, expected, "patch {patch}");
    }

    const SMP: &str = "application/strategic-merge-patch+json";

    #[test]
    fn merge_and_json_patch() {
        check("application/merge-patch+json", "Pod", json!({"a": 1, "b": {"c": 2}}), json!({"b": {"c": null, "d": 3}}), json!({"a": 1, "b": {"d": 3}}));
        check(
            "application/json-patch+json",
            "Pod",
            json!({"spec": {"replicas": 1}}),
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            json!({"spec": {"replicas": 3}}),
        );
        let bad = apply("application/json-patch+json", &json!({}), br#"[{"op":"remove","path":"/nope"}]"#, "Pod");
        assert_eq!(bad.unwrap_err().code, 422);
        assert_eq!(apply("text/plain", &json!({}), b"{}", "Pod").unwrap_err().code, 415);
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let cur = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "side", "image": "busybox"}]}}}});
        // `kubectl set image` sends just the container's name and image.
        check(SMP, "Deployment", cur.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "busybox"}]}}}}));
        check(SMP, "Deployment", cur.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}}));
        // kubectl apply's element order directive plus a new container.
        check(SMP, "Deployment", cur,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "new"}, {"name": "web"}, {"name": "side"}],
                "containers": [{"name": "new", "image": "x"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "new", "image": "x"},
                {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "busybox"}]}}}}));
    }

    #[test]
    fn strategic_other_directives() {
        check(SMP, "Pod", json!({"metadata": {"labels": {"a": "1", "b": "2"}}}), json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
        check(SMP, "Pod", json!({"metadata": {"finalizers": ["a"]}}), json!({"metadata": {"finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["a", "b"]}}));
        check(SMP, "Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b"]}}));
        check(SMP, "Deployment", json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}));
        check(SMP, "Service", json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}));
        // Lists without a merge key are replaced.
        check(SMP, "Pod", json!({"spec": {"containers": [{"name": "c", "args": ["a", "b"]}]}}),
            json!({"spec": {"containers": [{"name": "c", "args": ["z"]}]}}),
            json!({"spec": {"containers": [{"name": "c", "args": ["z"]}]}}));
    }

    /// Applies `patch` as a strategic merge patch and checks the result; also
    /// checks that a plain JSON merge patch (RFC 7386, which replaces lists
    /// whole) would give something else, so the test proves list merging.
    fn check_smp_not_merge(kind: &str, current: Value, patch: Value, expected: Value) {
        check(SMP, kind, current.clone(), patch.clone(), expected.clone());
        let plain = apply("application/merge-patch+json", &current, patch.to_string().as_bytes(), kind).unwrap();
        assert_ne!(plain, expected, "merge patch would give the same result for {patch}; the test proves nothing");
    }

    #[test]
    fn strategic_merges_env_by_name() {
        let cur = json!({"spec": {"containers": [{"name": "c", "image": "x", "env": [
            {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}});
        // `kubectl set env pod/p B=20 D=4` sends the changed and new variables only.
        check_smp_not_merge("Pod", cur.clone(),
            json!({"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "20"}, {"name": "D", "value": "4"}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "x", "env": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "20"},
                {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "D", "value": "4"}]}]}}));
        // Deleting one variable by name keeps the others.
        check_smp_not_merge("Pod", cur,
            json!({"spec": {"containers": [{"name": "c", "env": [{"name": "A", "$patch": "delete"}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "x", "env": [
                {"name": "B", "value": "2"}, {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}));
    }

    #[test]
    fn strategic_merges_volumes_by_name() {
        let cur = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "old"}}]}}}});
        check_smp_not_merge("Deployment", cur,
            json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "cfg", "configMap": {"name": "new"}}, {"name": "secret", "secret": {"secretName": "s"}}]}}}}),
            json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "new"}},
                {"name": "secret", "secret": {"secretName": "s"}}]}}}}));
    }

    #[test]
    fn strategic_merges_container_ports_by_container_port() {
        let cur = json!({"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [
            {"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}]}]}});
        check_smp_not_merge("Pod", cur,
            json!({"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 443, "name": "https"}]}]}}),
            json!({"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [
                {"containerPort": 80, "name": "web", "protocol": "TCP"},
                {"containerPort": 9090, "name": "metrics", "protocol": "TCP"},
                {"containerPort": 443, "name": "https"}]}]}}));
    }

    #[test]
    fn strategic_merges_service_ports_keeping_unmentioned() {
        let cur = json!({"spec": {"type": "ClusterIP", "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}});
        // Only port 80 is mentioned: 443 must survive (a replace would drop it).
        check_smp_not_merge("Service", cur,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            json!({"spec": {"type": "ClusterIP", "ports": [
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}}));
    }
}
