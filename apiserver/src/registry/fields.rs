//! Field selectors (`?fieldSelector=`): which fields a request may name and
//! how an object's field is read — the generic half of upstream's
//! `GetAttrs`/`ToSelectableFields`. Which fields a kind offers is its
//! strategy's (`Strategy::selectable_fields`); asking for any other is a
//! 400 (`field label not supported`).

use machinery::selector::FieldSelector;
use serde_json::Value;

use crate::status::ApiError;

/// Checks that every field in the selector is `metadata.name`,
/// `metadata.namespace`, or one of the kind's `selectable` fields.
pub fn check_supported(selectable: &[&str], sel: &FieldSelector) -> Result<(), ApiError> {
    for f in sel.fields() {
        if f != "metadata.name" && f != "metadata.namespace" && !selectable.contains(&f) {
            return Err(ApiError::bad_request(format!("field label not supported: {f}")));
        }
    }
    Ok(())
}

/// Reads a selectable field as a string, the way upstream renders it
/// (booleans as "true"/"false", `source` as the event source component).
pub fn get(obj: &Value, field: &str) -> Option<String> {
    let v = if field == "source" {
        &obj["source"]["component"]
    } else {
        let mut cur = obj;
        for part in field.split('.') {
            cur = cur.get(part)?;
        }
        cur
    };
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"phase": "Running"}});
        assert_eq!(get(&pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(get(&pod, "spec.hostNetwork").as_deref(), Some("true"));
        assert_eq!(get(&pod, "status.podIP"), None);
        let sel = FieldSelector::parse("spec.nodeName=,status.phase!=Succeeded").unwrap();
        assert!(!sel.matches(|f| get(&pod, f)));
        let ev = json!({"source": {"component": "kubelet"}, "involvedObject": {"name": "p"}});
        assert_eq!(get(&ev, "source").as_deref(), Some("kubelet"));
    }

    #[test]
    fn unsupported_fields_are_rejected() {
        use crate::registry::strategy::{DefaultStrategy, Strategy};
        let pods = crate::registry::pod::PodStrategy.selectable_fields();
        let cms = DefaultStrategy.selectable_fields();
        assert!(check_supported(pods, &FieldSelector::parse("spec.nodeName=x").unwrap()).is_ok());
        let e = check_supported(cms, &FieldSelector::parse("data.x=1").unwrap()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "field label not supported: data.x"));
    }
}
