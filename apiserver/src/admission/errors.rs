//! An admission refusal (k8s.io/apiserver/pkg/admission: `NewForbidden`):
//! 403 Forbidden, naming the object and the plugin's reason.

use std::fmt;

use serde_json::{json, Value};

use super::attributes::Request;

/// A refused request: 403 Forbidden, `<resource>[.<group>] "<name>" is forbidden: <why>`
/// (admission.NewForbidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionError {
    /// The plugin that refused.
    pub plugin: &'static str,
    pub group: String,
    pub resource: String,
    /// The object's name; `generateName` when it has none yet; "Unknown" if neither.
    pub name: String,
    pub why: String,
}

impl AdmissionError {
    pub fn forbidden(plugin: &'static str, req: &Request<'_>, object: Option<&Value>, why: impl Into<String>) -> Self {
        let from_obj = |k: &str| {
            object
                .and_then(|o| o.pointer(&format!("/metadata/{k}")))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let name = if !req.name.is_empty() {
            req.name.to_string()
        } else {
            from_obj("name").or_else(|| from_obj("generateName")).unwrap_or_else(|| "Unknown".into())
        };
        AdmissionError { plugin, group: req.group.into(), resource: req.resource.into(), name, why: why.into() }
    }

    pub fn message(&self) -> String {
        let qualified = if self.group.is_empty() { self.resource.clone() } else { format!("{}.{}", self.resource, self.group) };
        format!("{qualified} {:?} is forbidden: {}", self.name, self.why)
    }

    /// The Status body (403).
    pub fn status(&self) -> Value {
        let mut details = json!({"name": self.name, "kind": self.resource});
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message(), "reason": "Forbidden", "details": details, "code": 403,
        })
    }
}

impl fmt::Display for AdmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for AdmissionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_the_object() {
        let req = Request::create("", "pods", "dev");
        let e = AdmissionError::forbidden("X", &req, Some(&json!({"metadata": {"name": "web"}})), "no");
        assert_eq!(e.message(), r#"pods "web" is forbidden: no"#);
        let e = AdmissionError::forbidden("X", &req, Some(&json!({"metadata": {"generateName": "web-"}})), "no");
        assert_eq!(e.message(), r#"pods "web-" is forbidden: no"#);
        let e = AdmissionError::forbidden("X", &Request::create("apps", "deployments", "dev"), None, "no");
        assert_eq!(e.message(), r#"deployments.apps "Unknown" is forbidden: no"#);
        assert_eq!(e.status()["code"], 403);
    }
}
