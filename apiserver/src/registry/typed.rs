//! Decoding a request body into its Kubernetes type, the way the API
//! machinery's serializer does: through the real `k8s-openapi` structs.
//!
//! Going through the typed struct and back gives three things at once:
//! type errors become 400 BadRequest, unknown fields are found (for
//! `fieldValidation=Strict|Warn`) and dropped (as upstream prunes them), and
//! the stored JSON has the canonical field order Kubernetes writes.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

macro_rules! typed_kinds {
    ($kind:expr, $value:expr, { $($name:literal => $ty:ty),* $(,)? }) => {
        match $kind {
            $($name => roundtrip::<$ty>($value),)*
            other => Err(format!("no type registered for kind {other}")),
        }
    };
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Decodes `value` as `kind` and re-encodes it. Errors are decode errors.
pub fn normalize(kind: &str, value: &Value) -> Result<Value, String> {
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
    use k8s_openapi::api::{authorization::v1 as authorization, autoscaling::v1 as autoscaling, rbac::v1 as rbac};
    let mut value = value.clone();
    quantities_as_strings(&mut value);
    typed_kinds!(kind, value, {
        "Pod" => core::Pod,
        "Node" => core::Node,
        "Namespace" => core::Namespace,
        "Service" => core::Service,
        "Endpoints" => core::Endpoints,
        "Event" => core::Event,
        "ConfigMap" => core::ConfigMap,
        "Secret" => core::Secret,
        "ServiceAccount" => core::ServiceAccount,
        "Binding" => core::Binding,
        "Deployment" => apps::Deployment,
        "ReplicaSet" => apps::ReplicaSet,
        "Lease" => coordination::Lease,
        "Scale" => autoscaling::Scale,
        "LimitRange" => core::LimitRange,
        "ResourceQuota" => core::ResourceQuota,
        "Role" => rbac::Role,
        "RoleBinding" => rbac::RoleBinding,
        "ClusterRole" => rbac::ClusterRole,
        "ClusterRoleBinding" => rbac::ClusterRoleBinding,
        "SelfSubjectAccessReview" => authorization::SelfSubjectAccessReview,
        "SubjectAccessReview" => authorization::SubjectAccessReview,
    })
}

/// Kubernetes accepts `cpu: 1` (a JSON number) where a Quantity goes; the
/// typed struct wants a string. Convert numbers in the maps that hold
/// quantities before decoding.
fn quantities_as_strings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if matches!(k.as_str(), "requests" | "limits" | "capacity" | "allocatable" | "hard" | "used" | "overhead") {
                    if let Some(q) = child.as_object_mut() {
                        for val in q.values_mut() {
                            if let Value::Number(n) = val {
                                *val = Value::String(n.to_string());
                            }
                        }
                    }
                }
                quantities_as_strings(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(quantities_as_strings),
        _ => {}
    }
}

/// Paths of fields present (and not null) in `original` but gone after the
/// round trip: the fields the type does not know, in upstream's notation
/// (`spec.containers[0].foo`).
pub fn unknown_fields(original: &Value, normalized: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(original, normalized, String::new(), &mut out);
    out
}

fn walk(orig: &Value, norm: &Value, path: String, out: &mut Vec<String>) {
    match (orig, norm) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match n.get(k) {
                    Some(nv) => walk(v, nv, p, out),
                    None if !v.is_null() && !is_free_form(&path) => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            for (i, (ov, nv)) in o.iter().zip(n).enumerate() {
                walk(ov, nv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Maps whose keys are data, not fields.
fn is_free_form(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(last, "labels" | "annotations" | "data" | "binaryData" | "stringData" | "selector" | "nodeSelector" | "matchLabels")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: &str, input: Value, expected_unknown: &[&str]) {
        let norm = normalize(kind, &input).unwrap();
        assert_eq!(unknown_fields(&input, &norm), expected_unknown);
    }

    #[test]
    fn finds_unknown_fields() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"x": "y"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicie": "Always"}], "bogus": 1}});
        check("Pod", pod, &["spec.containers[0].imagePullPolicie", "spec.bogus"]);
        check("ConfigMap", json!({"metadata": {"name": "c"}, "data": {"any-key": "v"}}), &[]);
    }

    #[test]
    fn numbers_are_quantities() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 1}}}]}});
        let n = normalize("Pod", &pod).unwrap();
        assert_eq!(n["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1");
    }

    #[test]
    fn type_errors() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}});
        assert!(normalize("Deployment", &d).is_err());
    }
}

/// Paths of keys that appear twice in one JSON object of `body` — what
/// upstream's strict decoder reports as `duplicate field "x"`. serde_json's
/// `Value` keeps the last value silently, so this walks the raw document
/// once with its own visitor.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Walk<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> { Ok(()) }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> { Ok(()) }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> { Ok(()) }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> { Ok(()) }
        fn visit_str<E>(self, _: &str) -> Result<(), E> { Ok(()) }
        fn visit_unit<E>(self) -> Result<(), E> { Ok(()) }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), out: self.out })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                let p = if self.path.is_empty() { k.clone() } else { format!("{}.{k}", self.path) };
                if !seen.insert(k) {
                    self.out.push(p.clone());
                }
                map.next_value_seed(Walk { path: p, out: self.out })?;
            }
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: String::new(), out: &mut out }.deserialize(&mut de);
    out
}

#[cfg(test)]
mod duplicate_tests {
    #[test]
    fn finds_duplicate_keys() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"image": "x", "image": "y"}]}}"#;
        assert_eq!(super::duplicate_fields(body), ["metadata.name", "spec.containers[0].image"]);
        assert!(super::duplicate_fields(br#"{"a": 1, "b": {"a": 2}}"#).is_empty());
    }
}
