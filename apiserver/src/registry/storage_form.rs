//! The form an object is stored in: its JSON with the top-level fields in
//! Kubernetes' order and without `metadata.resourceVersion` (the key's mod
//! revision is the version, so storing it would be stale at once).

use serde_json::{Map, Value};

/// What goes to etcd, serialised straight from the request's value.
pub fn to_storage(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&StorageView(obj)).expect("JSON value serialises")
}

/// Top-level fields in the order Kubernetes writes them; the rest (data,
/// subsets, ...) follow in their own order.
const TOP_LEVEL_ORDER: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// An object as etcd stores it, serialised straight from the request's
/// value without copying it: top-level fields in Kubernetes' order and no
/// `metadata.resourceVersion` (the key's mod revision is the version).
struct StorageView<'a>(&'a Value);

impl serde::Serialize for StorageView<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(m) = self.0.as_object() else { return self.0.serialize(ser) };
        let mut out = ser.serialize_map(Some(m.len()))?;
        let ordered = TOP_LEVEL_ORDER.iter().filter_map(|k| m.get_key_value(*k));
        let rest = m.iter().filter(|(k, _)| !TOP_LEVEL_ORDER.contains(&k.as_str()));
        for (k, v) in ordered.chain(rest) {
            match (k.as_str(), v.as_object()) {
                ("metadata", Some(meta)) => {
                    out.serialize_entry(k, &MetaWithoutVersion(meta))?;
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

struct MetaWithoutVersion<'a>(&'a Map<String, Value>);

impl serde::Serialize for MetaWithoutVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = ser.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(k, _)| k.as_str() != "resourceVersion") {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

/// `obj` with its top-level fields in Kubernetes' order, moving (not
/// copying) the values; objects already in order come back as they are.
pub fn canonical_order(obj: Value) -> Value {
    let Value::Object(mut m) = obj else { return obj };
    let present: Vec<&str> = TOP_LEVEL_ORDER.iter().copied().filter(|k| m.contains_key(*k)).collect();
    if m.keys().take(present.len()).map(String::as_str).eq(present.iter().copied()) {
        return Value::Object(m);
    }
    let mut out = Map::with_capacity(m.len());
    for k in present {
        if let Some(v) = m.shift_remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_form_orders_top_level_and_drops_resource_version() {
        let check = |obj: Value, expected: &str| {
            assert_eq!(String::from_utf8(to_storage(&obj)).unwrap(), expected, "to_storage({obj})");
            // canonical_order gives the same order (resourceVersion kept).
            let ordered = canonical_order(obj.clone());
            let keys: Vec<&String> = ordered.as_object().map(|m| m.keys().collect()).unwrap_or_default();
            let want: Vec<String> = serde_json::from_str::<Value>(expected)
                .unwrap()
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            assert_eq!(keys, want.iter().collect::<Vec<_>>(), "canonical_order({obj})");
        };
        check(
            json!({"spec": {"b": 1, "a": 2}, "metadata": {"name": "x", "resourceVersion": "7", "uid": "u"}, "kind": "Pod", "apiVersion": "v1"}),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","uid":"u"},"spec":{"b":1,"a":2}}"#,
        );
        check(
            json!({"subsets": [], "kind": "Endpoints", "metadata": {"name": "e"}, "apiVersion": "v1"}),
            r#"{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"e"},"subsets":[]}"#,
        );
        check(json!({"apiVersion": "v1", "kind": "Pod", "status": {}}), r#"{"apiVersion":"v1","kind":"Pod","status":{}}"#);
        check(json!({"data": {"k": "v"}, "apiVersion": "v1"}), r#"{"apiVersion":"v1","data":{"k":"v"}}"#);
    }
}
