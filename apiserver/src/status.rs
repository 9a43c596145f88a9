//! Errors as the API reports them: a `meta.k8s.io/v1` `Status` object with
//! the HTTP code, a machine-readable `reason`, and a message in the exact
//! form Kubernetes uses (`pods "web" not found`), so clients such as kubectl
//! print what users expect.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` (name, group, kind, causes), when Kubernetes sends one.
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let mut d = json!({ "name": name, "kind": kind });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        self.details = Some(d);
        self
    }

    /// The same error with another message.
    pub fn with_message(mut self, m: String) -> Self {
        self.message = m;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `kind` is the resource's plural ("pods"), as upstream's messages use it.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{}\" not found", qualified(group, resource), name))
            .with_details(name, group, resource)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", qualified(group, resource), name))
            .with_details(name, group, resource)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{}\": {}", qualified(group, resource), name, why),
        )
        .with_details(name, group, resource)
    }

    /// The "object has been modified" conflict that optimistic concurrency gives.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let subject = if name.is_empty() {
            qualified(group, resource)
        } else {
            format!("{} \"{}\"", qualified(group, resource), name)
        };
        Self::new(403, "Forbidden", format!("{subject} is forbidden: {why}")).with_details(name, group, resource)
    }

    /// 422 with one cause per invalid field, as `field.ErrorList` renders:
    /// `Pod "x" is invalid: spec.containers: Required value`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let list = causes.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let joined = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        // The kind is qualified by its group, as schema.GroupKind prints it
        // (`Deployment.apps "web" is invalid: ...`; core kinds stay bare).
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut e = Self::new(422, "Invalid", format!("{qualified_kind} \"{name}\" is invalid: {joined}"))
            .with_details(name, group, kind);
        if let Some(Value::Object(d)) = e.details.as_mut() {
            d.insert(
                "causes".into(),
                Value::Array(
                    causes
                        .iter()
                        .map(|c| json!({"reason": c.kind.reason(), "message": c.message(), "field": c.field}))
                        .collect(),
                ),
            );
        }
        e
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct:?})"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object as sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// The kinds of field error upstream's `field.Error` knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid(String),
    /// Invalid, with a value that is a struct: printed as rendered (Go's
    /// `%#v`, `rbac.RoleRef{APIGroup:"...", ...}`), not quoted.
    InvalidStruct(String),
    Duplicate(String),
    NotSupported(String, Vec<String>),
    Forbidden(String),
    TooLong(usize),
}

impl FieldErrorKind {
    fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) | FieldErrorKind::InvalidStruct(_) => "FieldValueInvalid",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Forbidden(_) => "FieldValueForbidden",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    /// The offending value as upstream quotes it, for Invalid/Duplicate.
    pub value: Option<String>,
}

impl FieldError {
    pub fn required(field: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Required, value: None }
    }
    pub fn invalid(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Invalid(detail.into()), value: Some(value.into()) }
    }
    /// Invalid, the value a struct already rendered as Go's `%#v` renders it.
    pub fn invalid_struct(field: impl Into<String>, rendered: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::InvalidStruct(detail.into()), value: Some(rendered.into()) }
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Duplicate(String::new()), value: Some(value.into()) }
    }
    pub fn not_supported(field: impl Into<String>, value: impl Into<String>, allowed: &[&str]) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(String::new(), allowed.iter().map(|s| s.to_string()).collect()),
            value: Some(value.into()),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Forbidden(detail.into()), value: None }
    }

    /// The message part without the field path, as in `causes[].message`.
    pub fn message(&self) -> String {
        let v = self.value.as_ref().map(|v| format!("{v:?}")).unwrap_or_default();
        match &self.kind {
            FieldErrorKind::Required => "Required value".into(),
            FieldErrorKind::Invalid(d) => format!("Invalid value: {v}: {d}"),
            FieldErrorKind::InvalidStruct(d) => format!("Invalid value: {}: {d}", self.value.as_deref().unwrap_or_default()),
            FieldErrorKind::Duplicate(_) => format!("Duplicate value: {v}"),
            FieldErrorKind::NotSupported(_, allowed) => format!(
                "Unsupported value: {v}: supported values: {}",
                allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
            ),
            FieldErrorKind::Forbidden(d) => format!("Forbidden: {d}"),
            FieldErrorKind::TooLong(n) => format!("Too long: may not be more than {n} bytes"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kubernetes() {
        assert_eq!(ApiError::not_found("", "pods", "web").message, "pods \"web\" not found");
        assert_eq!(ApiError::not_found("apps", "deployments", "d").message, "deployments.apps \"d\" not found");
        assert_eq!(ApiError::already_exists("", "namespaces", "a").code, 409);
        let e = ApiError::invalid("", "Pod", "p", vec![FieldError::required("spec.containers")]);
        assert_eq!(e.message, "Pod \"p\" is invalid: spec.containers: Required value");
        assert_eq!(e.to_status()["details"]["causes"][0]["reason"], "FieldValueRequired");
        let e = ApiError::invalid("apps", "Deployment", "web", vec![FieldError::required("spec.selector")]);
        assert_eq!(e.message, "Deployment.apps \"web\" is invalid: spec.selector: Required value");
        assert_eq!((e.to_status()["details"]["group"].as_str(), e.to_status()["details"]["kind"].as_str()), (Some("apps"), Some("Deployment")));
        let e = ApiError::invalid(
            "",
            "Pod",
            "p",
            vec![FieldError::invalid("metadata.name", "A", "a lowercase RFC 1123 subdomain"), FieldError::required("spec.containers[0].image")],
        );
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: [metadata.name: Invalid value: \"A\": a lowercase RFC 1123 subdomain, spec.containers[0].image: Required value]"
        );
    }
}
