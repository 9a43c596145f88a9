//! The HTTP front: the textbook request pipeline of kube-apiserver.
//!
//! ```text
//! request → (authn → authz: the insecure port allows all, as upstream's did)
//!         → request info (request.rs) → decode body → admission + registry
//!         (registry/) → etcd (storage/) → encode: JSON, or a Table for kubectl
//! ```
//! Non-resource paths (discovery, health, OpenAPI) are answered here.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::body::Body;
use crate::discovery;
use crate::registry::{Output, Query, Registry, WatchEvent};
use crate::request::{self, RequestInfo, Verb};
use crate::security::Checks;
use crate::status::{ApiError, ApiResult};
use crate::table;

/// Request bodies over 3 MiB are refused, as upstream refuses them.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct ApiServer {
    pub registry: Arc<Registry>,
    pub openapi: crate::openapi::OpenApi,
    pub security: Arc<crate::security::Security>,
}

fn full(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    full(code, "application/json", serde_json::to_vec(v).expect("serialisable"))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// What the client asked to get back.
struct Rendering {
    table: bool,
    include_object: String,
}

impl Rendering {
    fn from(req_accept: &str, q: &Query) -> Self {
        Rendering {
            table: req_accept.split(',').any(|a| a.contains("as=Table") && a.contains("g=meta.k8s.io") && a.contains("v=v1")),
            include_object: q.get("includeObject").unwrap_or("Metadata").to_string(),
        }
    }
}

impl ApiServer {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Arc<crate::security::ConnInfo>) -> Result<Response<Body>, Infallible> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.route(req, &conn).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64);
        Ok(resp)
    }

    async fn route(&self, req: Request<Incoming>, conn: &crate::security::ConnInfo) -> ApiResult<Response<Body>> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let path = if path.is_empty() { "/".to_string() } else { path };
        let mut q = Query::parse(req.uri().query());
        // Writes name their field manager (managedFields); without
        // ?fieldManager= it is the User-Agent up to its first "/", as
        // kube-apiserver does. An apply must name one itself.
        let write = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
        let is_apply = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with(crate::apply::CONTENT_TYPE));
        if write && !is_apply && q.get("fieldManager").is_none() {
            if let Some(ua) = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
                let prefix: String = ua.split('/').next().unwrap_or("").chars().take(128).collect();
                if !prefix.is_empty() {
                    q.0.push(("fieldManager".into(), prefix));
                }
            }
        }
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        // Authentication: who is asking (None on the insecure port).
        let authz_header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
        let user = self.security.authenticate(conn, authz_header.as_deref())?;
        let resource_request = request::parse(req.method(), &path, q.flag("watch"))?;
        // Authorization of non-resource requests (discovery, health, OpenAPI).
        if let (Some(u), None) = (&user, &resource_request) {
            let verb = req.method().as_str().to_ascii_lowercase();
            self.security.authorize(u, &crate::auth::Attributes::non_resource(&verb, &path), &self.registry)?;
        }
        // Non-resource endpoints.
        match path.as_str() {
            "/version" if get => return Ok(json_response(200, &discovery::version())),
            "/healthz" | "/livez" if get => return Ok(full(200, "text/plain; charset=utf-8", "ok")),
            "/readyz" if get => return Ok(self.readyz().await),
            "/api" if get => return Ok(json_response(200, &discovery::api_versions())),
            "/apis" if get => return Ok(json_response(200, &discovery::api_group_list())),
            "/openapi/v3" if get => return Ok(json_response(200, &self.openapi.index())),
            "/openapi/v2" if get => {
                return Ok(full(200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", crate::openapi::v2_document()))
            }
            "/" if get => {
                let paths = json!({"paths": ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/apis/coordination.k8s.io",
                    "/apis/coordination.k8s.io/v1", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]});
                return Ok(json_response(200, &paths));
            }
            _ => {}
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            if get {
                return match self.openapi.document(gv) {
                    Some(doc) => Ok(full(200, "application/json", doc)),
                    None => Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
                };
            }
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", v] if get => {
                return discovery::api_resource_list("", v)
                    .map(|l| json_response(200, &l))
                    .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
            }
            ["apis", g] if get => {
                return discovery::api_group(g)
                    .map(|l| json_response(200, &l))
                    .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
            }
            ["apis", g, v] if get => {
                return discovery::api_resource_list(g, v)
                    .map(|l| json_response(200, &l))
                    .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"));
            }
            _ => {}
        }
        let Some(ri) = resource_request else {
            return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        };
        // pods/log, exec, attach and portforward are proxied to the pod's
        // node agent (as kube-apiserver proxies to the kubelet), upgrades
        // included.
        if ri.resource.kind == "Pod" && crate::node_proxy::is_node_subresource(ri.subresource.as_deref()) {
            if let Some(u) = &user {
                self.security.authorize(u, &crate::security::attributes(&ri, None), &self.registry)?;
                // A WebSocket upgrade arrives as GET, but it does what a POST
                // does: like kube-apiserver since 1.30
                // (AuthorizePodWebsocketUpgradeCreatePermission), it needs
                // the `create` permission as well as `get`.
                if ri.verb == Verb::Get && ri.subresource.as_deref() != Some("log") {
                    let create = RequestInfo { verb: Verb::Create, ..ri.clone() };
                    self.security.authorize(u, &crate::security::attributes(&create, None), &self.registry)?;
                }
            }
            return crate::node_proxy::proxy_pod_subresource(&self.registry, &ri, req).await;
        }
        // pods/<name>/proxy and services/<name>/proxy: HTTP to the pod or an endpoint.
        if ri.subresource.as_deref() == Some("proxy") {
            if let Some(u) = &user {
                self.security.authorize(u, &crate::security::attributes(&ri, None), &self.registry)?;
            }
            return crate::node_proxy::proxy_http(&self.registry, &ri, req).await;
        }
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let rendering = Rendering::from(&accept, &q);
        let body = read_body(req).await?;
        // Authorization of resource requests.
        if let Some(u) = &user {
            let body_name = if ri.verb == Verb::Create && ri.subresource.is_none() { crate::security::body_name(&body) } else { None };
            self.security.authorize(u, &crate::security::attributes(&ri, body_name.as_deref()), &self.registry)?;
        }
        if !ri.resource.is_stored() {
            return self.review(&ri, user.as_ref(), &content_type, &body, &rendering);
        }
        let duplicates = duplicate_field_warnings(&ri, &q, &content_type, &body)?;
        // Admission and the requester's checks, for the registry to call.
        let checks = Checks { registry: &self.registry, security: &self.security, user: user.as_ref() };
        let mut out = self.dispatch(&ri, &q, &content_type, body, &checks).await?;
        if let Output::Object { warnings, .. } = &mut out {
            warnings.extend(duplicates);
        }
        Ok(self.render(&ri, out, &rendering))
    }

    /// SelfSubjectAccessReview / SubjectAccessReview / SelfSubjectReview: answered, not stored
    /// (`kubectl auth can-i`).
    fn review(&self, ri: &RequestInfo, user: Option<&crate::auth::UserInfo>, content_type: &str, body: &[u8], _how: &Rendering) -> ApiResult<Response<Body>> {
        if ri.verb != Verb::Create {
            return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
        }
        let review = decode(content_type, body)?;
        let authorize = |u: &crate::auth::UserInfo, a: &crate::auth::Attributes| self.security.decide(u, a, &self.registry);
        // On the insecure port the requester is an unrestricted admin.
        let admin = crate::auth::UserInfo {
            name: "system:admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: Default::default(),
        };
        let result = match ri.resource.kind {
            // Who am I, as the authenticator saw it (`kubectl auth whoami`).
            "SelfSubjectReview" => {
                let u = user.unwrap_or(&admin);
                Ok(json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {"username": u.name, "uid": u.uid, "groups": u.groups, "extra": u.extra}}}))
            }
            "SelfSubjectAccessReview" => crate::auth::review::self_subject_access_review(&review, user.unwrap_or(&admin), &authorize),
            _ => crate::auth::review::subject_access_review(&review, &authorize),
        };
        match result {
            Ok(v) => Ok(json_response(201, &v)),
            Err(e) => Err(ApiError::new(422, "Invalid", e.message)),
        }
    }

    async fn readyz(&self) -> Response<Body> {
        match tokio::time::timeout(Duration::from_secs(2), self.registry.etcd.current_revision()).await {
            Ok(Ok(_)) => full(200, "text/plain; charset=utf-8", "ok"),
            Ok(Err(e)) => full(500, "text/plain; charset=utf-8", format!("[-]etcd failed: {e}\nreadyz check failed")),
            Err(_) => full(500, "text/plain; charset=utf-8", "[-]etcd failed: timed out\nreadyz check failed"),
        }
    }

    async fn dispatch(&self, ri: &RequestInfo, q: &Query, content_type: &str, body: Bytes, checks: &Checks<'_>) -> ApiResult<Output> {
        let reg = &self.registry;
        let sub = ri.subresource.as_deref();
        match (ri.verb, sub) {
            (Verb::Get, Some("scale")) => reg.read_scale(ri).await,
            (Verb::Get, _) => reg.get(ri, q).await,
            (Verb::List, _) => reg.list(ri, q).await,
            (Verb::Watch, _) => reg.watch(ri, q).await,
            (Verb::Create, Some("binding")) => reg.bind(ri, q, decode(content_type, &body)?, checks).await,
            (Verb::Create, Some("eviction")) => reg.evict(ri, q, decode(content_type, &body)?, checks).await,
            (Verb::Create, Some(_)) | (Verb::Create, None) if ri.name.is_some() => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
            (Verb::Create, _) => reg.create(ri, q, decode(content_type, &body)?, checks).await,
            (Verb::Update, Some("scale")) => reg.update_scale(ri, q, decode(content_type, &body)?, checks).await,
            (Verb::Update, _) => reg.update(ri, q, decode(content_type, &body)?, checks).await,
            (Verb::Patch, Some("scale")) => reg.patch_scale(ri, q, content_type, &body, checks).await,
            (Verb::Patch, _) => reg.patch(ri, q, content_type, &body, checks).await,
            (Verb::Delete, None) => {
                let b = if body.is_empty() { None } else { Some(decode(content_type, &body)?) };
                reg.delete(ri, q, b, checks).await
            }
            (Verb::DeleteCollection, None) => {
                let b = if body.is_empty() { None } else { Some(decode(content_type, &body)?) };
                reg.delete_collection(ri, q, b, checks).await
            }
            _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
        }
    }

    fn render(&self, ri: &RequestInfo, out: Output, how: &Rendering) -> Response<Body> {
        let r = ri.resource;
        match out {
            Output::Object { code, obj, warnings } => {
                let mut resp = if how.table && obj["kind"] == r.kind {
                    json_response(code, &table::table(r.kind, obj["metadata"]["resourceVersion"].as_str().unwrap_or(""), None, &[&obj], &how.include_object))
                } else {
                    json_response(code, &obj)
                };
                for w in warnings {
                    if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
                        resp.headers_mut().append(header::WARNING, v);
                    }
                }
                resp
            }
            Output::List { rv, items, continue_token } => {
                if how.table {
                    let objs: Vec<&Value> = items.iter().map(|o| &o.value).collect();
                    return json_response(200, &table::table(r.kind, &rv.to_string(), continue_token.as_deref(), &objs, &how.include_object));
                }
                // Concatenate the cached serialisations: no per-item encoding.
                let mut buf = BytesMut::with_capacity(64 + items.iter().map(|o| o.json.len() + 1).sum::<usize>());
                let mut meta = json!({"resourceVersion": rv.to_string()});
                if let Some(c) = &continue_token {
                    meta["continue"] = json!(c);
                }
                buf.put_slice(format!("{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[", r.list_kind(), r.api_version(), meta).as_bytes());
                for (i, o) in items.iter().enumerate() {
                    if i > 0 {
                        buf.put_u8(b',');
                    }
                    buf.put_slice(&o.json);
                }
                buf.put_slice(b"]}");
                full(200, "application/json", buf.freeze())
            }
            Output::Watch(rx) => {
                let kind = r.kind;
                let api_version = r.api_version();
                let table = how.table;
                let include = how.include_object.clone();
                let stream = ReceiverStream::new(rx).map(move |ev| {
                    let line = watch_line(kind, &api_version, ev, table, &include);
                    Ok::<_, Infallible>(Frame::data(line))
                });
                Response::builder()
                    .status(200)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CACHE_CONTROL, "no-cache, private")
                    .body(BodyExt::boxed(StreamBody::new(stream)))
                    .expect("valid response")
            }
        }
    }
}

/// One line of a watch stream: `{"type":"ADDED","object":{...}}\n`.
fn watch_line(kind: &str, api_version: &str, ev: WatchEvent, as_table: bool, include: &str) -> Bytes {
    let mut buf = BytesMut::new();
    match ev {
        WatchEvent::Event(t, o) => {
            buf.put_slice(format!("{{\"type\":\"{}\",\"object\":", t.as_str()).as_bytes());
            if as_table {
                let tbl = table::table(kind, &o.rv.to_string(), None, &[&o.value], include);
                buf.put_slice(&serde_json::to_vec(&tbl).unwrap_or_default());
            } else {
                buf.put_slice(&o.json);
            }
            buf.put_slice(b"}\n");
        }
        WatchEvent::Bookmark(rv) => {
            let obj = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}}});
            buf.put_slice(&serde_json::to_vec(&obj).unwrap_or_default());
            buf.put_u8(b'\n');
        }
        WatchEvent::Error(e) => {
            let obj = json!({"type": "ERROR", "object": e.to_status()});
            buf.put_slice(&serde_json::to_vec(&obj).unwrap_or_default());
            buf.put_u8(b'\n');
        }
    }
    buf.freeze()
}

async fn read_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        if len > MAX_BODY {
            return Err(ApiError::too_large());
        }
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// Duplicate keys in a JSON body (which a JSON parser would silently
/// collapse): 400 under `fieldValidation=Strict`, warnings under Warn.
fn duplicate_field_warnings(ri: &RequestInfo, q: &Query, content_type: &str, body: &[u8]) -> ApiResult<Vec<String>> {
    let writes = matches!(ri.verb, Verb::Create | Verb::Update);
    if !writes || !content_type.starts_with("application/json") || body.is_empty() {
        return Ok(vec![]);
    }
    let fv = crate::registry::FieldValidation::from_query(q)?;
    if fv == crate::registry::FieldValidation::Ignore {
        return Ok(vec![]);
    }
    let dups = crate::registry::typed::duplicate_fields(body);
    if dups.is_empty() {
        return Ok(vec![]);
    }
    let list: Vec<String> = dups.iter().map(|d| format!("duplicate field \"{d}\"")).collect();
    if fv == crate::registry::FieldValidation::Strict {
        let r = ri.resource;
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            r.kind, r.version, r.kind, list.join(", ")
        )));
    }
    Ok(list)
}

/// Decodes a request body by its content type: JSON or YAML.
fn decode(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty; an object was expected"));
    }
    match ct {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}"))),
        crate::protobuf::CONTENT_TYPE => crate::protobuf::decode(body).map_err(ApiError::bad_request),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

impl From<StatusCode> for ApiError {
    fn from(c: StatusCode) -> Self {
        ApiError::new(c.as_u16(), "InternalError", c.to_string())
    }
}
