//! Request info: what a URL and method mean in API terms — kube-apiserver's
//! `RequestInfoFactory`. Every later stage (admission, registry, tables)
//! works on this, never on raw paths.

use machinery::resources::{self, ResourceInfo};

use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A resource request, resolved against the resource table.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub verb: Verb,
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths.
/// Returns `Ok(None)` for paths that are not resource requests (discovery
/// and the like), and 404 for resource paths naming nothing rkube serves.
pub fn parse(method: &http::Method, path: &str, query_watch: bool) -> Result<Option<RequestInfo>, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Ok(None),
    };
    // The legacy `/watch/` path prefix means the same as `?watch=true`.
    let mut watch = query_watch;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    // `namespaces/<ns>/<resource>...` is a namespaced request, except when
    // the third part is a subresource of the namespace itself.
    if rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize") {
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    let (plural, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        // `pods/<name>/proxy/<path...>` and `services/<name>/proxy/<path...>`:
        // the rest of the path is for the backend.
        [r, n, "proxy", ..] => (*r, Some(n.to_string()), Some("proxy".to_string())),
        _ => return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    let resource = resources::find(group, version, plural)
        .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))?;
    if let Some(s) = &sub {
        if !resource.has_subresource(s) {
            return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
    }
    if name.as_deref() == Some("") {
        return Err(ApiError::bad_request("resource name may not be empty"));
    }
    // A cluster-scoped resource answers to its own name, never a namespace.
    if !resource.namespaced && namespace.is_some() {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let verb = match (method.as_str(), name.is_some()) {
        ("GET" | "HEAD", _) if watch => Verb::Watch,
        ("GET" | "HEAD", true) => Verb::Get,
        ("GET" | "HEAD", false) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )))
        }
    };
    Ok(Some(RequestInfo { verb, resource, namespace, name, subresource: sub }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, path: &str, expected: &str) {
        let m: http::Method = method.parse().unwrap();
        let got = match parse(&m, path, false) {
            Ok(Some(ri)) => format!(
                "{} {} ns={} name={} sub={}",
                ri.verb.as_str(),
                ri.resource.qualified_plural(),
                ri.namespace.as_deref().unwrap_or("-"),
                ri.name.as_deref().unwrap_or("-"),
                ri.subresource.as_deref().unwrap_or("-"),
            ),
            Ok(None) => "none".into(),
            Err(e) => format!("error {}", e.code),
        };
        assert_eq!(got, expected, "{method} {path}");
    }

    #[test]
    fn request_info() {
        check("GET", "/api/v1/namespaces/default/pods", "list pods ns=default name=- sub=-");
        check("GET", "/api/v1/pods", "list pods ns=- name=- sub=-");
        check("GET", "/api/v1/namespaces/default/pods/web", "get pods ns=default name=web sub=-");
        check("PUT", "/api/v1/namespaces/default/pods/web/status", "update pods ns=default name=web sub=status");
        check("POST", "/api/v1/namespaces/default/pods/web/binding", "create pods ns=default name=web sub=binding");
        check("GET", "/api/v1/namespaces", "list namespaces ns=- name=- sub=-");
        check("GET", "/api/v1/namespaces/kube-system", "get namespaces ns=- name=kube-system sub=-");
        check("PUT", "/api/v1/namespaces/x/finalize", "update namespaces ns=- name=x sub=finalize");
        check("GET", "/api/v1/watch/namespaces/default/pods", "watch pods ns=default name=- sub=-");
        check("GET", "/api/v1/nodes/n1", "get nodes ns=- name=n1 sub=-");
        check("PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale", "patch deployments.apps ns=a name=d sub=scale");
        check("DELETE", "/apis/apps/v1/namespaces/a/replicasets", "deletecollection replicasets.apps ns=a name=- sub=-");
        check("GET", "/api/v1", "none");
        check("GET", "/apis/apps/v1", "none");
        check("GET", "/api/v1/widgets", "error 404");
        check("GET", "/api/v1/namespaces/default/pods/web/frobnicate", "error 404");
        check("GET", "/api/v1/namespaces/default/nodes/n1", "error 404");
        check("PUT", "/api/v1/namespaces/default/pods", "error 405");
    }
}
