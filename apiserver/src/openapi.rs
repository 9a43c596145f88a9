//! `/openapi/v3`: one OpenAPI document per group-version, as kube-apiserver
//! publishes them. kubectl reads it to decide that the *server* validates
//! fields (the PATCH operations advertise the `fieldValidation` query
//! parameter), so `kubectl create/apply` never needs `--validate=false`, and
//! `kubectl explain` reads the schemas.
//!
//! The schemas are not hand-written: they are generated from the
//! `k8s-openapi` types through their `schemars` implementations, which carry
//! upstream's names (`io.k8s.api.core.v1.Pod`) and descriptions.

use std::collections::BTreeMap;

use bytes::Bytes;
use machinery::resources::{self, ResourceInfo};
use schemars::gen::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

pub struct OpenApi {
    /// "api/v1" or "apis/apps/v1" → (hash, document).
    docs: BTreeMap<String, (String, Bytes)>,
}

fn schema_name(r: &ResourceInfo) -> String {
    let group = match r.group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}

fn add_root<T: schemars::JsonSchema>(g: &mut SchemaGenerator) {
    g.subschema_for::<T>();
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

impl OpenApi {
    pub fn build() -> Self {
        let mut docs = BTreeMap::new();
        let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
        gvs.extend(resources::groups());
        for (group, version) in gvs {
            let key = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
            let doc = document(group, version);
            let bytes = serde_json::to_vec(&doc).expect("serialisable");
            let hash = hex(&Sha256::digest(&bytes)[..16]);
            docs.insert(key, (hash, Bytes::from(bytes)));
        }
        OpenApi { docs }
    }

    /// The discovery index: `{"paths": {"api/v1": {"serverRelativeURL": ...}}}`.
    pub fn index(&self) -> Value {
        let mut paths = Map::new();
        for (k, (hash, _)) in &self.docs {
            paths.insert(k.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={hash}")}));
        }
        json!({"paths": paths})
    }

    pub fn document(&self, gv: &str) -> Option<Bytes> {
        self.docs.get(gv).map(|(_, d)| d.clone())
    }
}

/// `/openapi/v2`, which kubectl up to 1.28 insists on fetching (as gnostic
/// protobuf) before `apply`/`create`, even when it then validates on the
/// server. rkube serves a valid Swagger 2.0 document with no definitions:
/// kubectl then takes patch metadata from its built-in types and leaves
/// field validation to the server (advertised in `/openapi/v3`). The
/// protobuf is two fields of `openapi_v2.Document` — `swagger` (1) and
/// `info` (2: `title` 1, `version` 2) — small enough to write by hand rather
/// than vendor gnostic's schema.
pub fn v2_document() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        let mut n = bytes.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 0x0a, b"Kubernetes");
    field(&mut info, 0x12, b"v1.32.0");
    let mut doc = Vec::new();
    field(&mut doc, 0x0a, b"2.0");
    field(&mut doc, 0x12, &info);
    doc
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn document(group: &str, version: &str) -> Value {
    use k8s_openapi::api::{apps::v1 as apps, autoscaling::v1 as autoscaling, coordination::v1 as coordination, core::v1 as core};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut g = SchemaSettings::openapi3().into_generator();
    let rs: Vec<&ResourceInfo> = resources::in_group_version(group, version).collect();
    for r in &rs {
        match (r.group, r.kind) {
            ("", "Pod") => { add_root::<core::Pod>(&mut g); add_root::<core::Binding>(&mut g) }
            ("", "Node") => { add_root::<core::Node>(&mut g) }
            ("", "Namespace") => { add_root::<core::Namespace>(&mut g) }
            ("", "Service") => { add_root::<core::Service>(&mut g) }
            ("", "Endpoints") => { add_root::<core::Endpoints>(&mut g) }
            ("", "Event") => { add_root::<core::Event>(&mut g) }
            ("", "ConfigMap") => { add_root::<core::ConfigMap>(&mut g) }
            ("", "Secret") => { add_root::<core::Secret>(&mut g) }
            ("", "ServiceAccount") => { add_root::<core::ServiceAccount>(&mut g) }
            ("apps", "Deployment") => { add_root::<apps::Deployment>(&mut g) }
            ("apps", "ReplicaSet") => { add_root::<apps::ReplicaSet>(&mut g) }
            ("coordination.k8s.io", "Lease") => { add_root::<coordination::Lease>(&mut g) }
            ("", "LimitRange") => add_root::<core::LimitRange>(&mut g),
            ("", "ResourceQuota") => add_root::<core::ResourceQuota>(&mut g),
            (_, "ClusterRole") => add_root::<k8s_openapi::api::rbac::v1::ClusterRole>(&mut g),
            (_, "ClusterRoleBinding") => add_root::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&mut g),
            (_, "Role") => add_root::<k8s_openapi::api::rbac::v1::Role>(&mut g),
            (_, "RoleBinding") => add_root::<k8s_openapi::api::rbac::v1::RoleBinding>(&mut g),
            (_, "SelfSubjectAccessReview") => add_root::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(&mut g),
            (_, "SubjectAccessReview") => add_root::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(&mut g),
            _ => {}
        }
    }
    if group == "apps" {
        add_root::<autoscaling::Scale>(&mut g);
    }
    add_root::<meta::Status>(&mut g);
    add_root::<meta::DeleteOptions>(&mut g);
    add_root::<meta::ListMeta>(&mut g);
    let mut schemas = serde_json::to_value(g.definitions()).expect("schemas serialise");
    // Mark each top-level kind with its group-version-kind, as upstream does.
    for r in &rs {
        if let Some(s) = schemas.get_mut(schema_name(r)) {
            s["x-kubernetes-group-version-kind"] = json!([gvk(r.group, r.version, r.kind)]);
        }
    }
    // List kinds: k8s-openapi has one generic `List<T>`; describe each list
    // as upstream's `<Kind>List` with its items.
    for r in &rs {
        schemas[format!("{}List", schema_name(r))] = json!({
            "description": format!("{}List is a list of {}.", r.kind, r.kind),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", schema_name(r))}},
                "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
            },
            "x-kubernetes-group-version-kind": [gvk(r.group, r.version, &r.list_kind())],
        });
    }
    if let Some(s) = schemas.get_mut("io.k8s.api.autoscaling.v1.Scale") {
        s["x-kubernetes-group-version-kind"] = json!([gvk("autoscaling", "v1", "Scale")]);
    }
    add_patch_meta(&mut schemas);
    let mut paths = Map::new();
    for r in &rs {
        for (path, item) in paths_for(r) {
            paths.insert(path, item);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The strategic-merge-patch metadata kubectl reads from the schemas
/// (`x-kubernetes-patch-merge-key` / `-strategy`), the same facts as the
/// server's own table in `patch.rs`. Without them kubectl apply would treat
/// every list as atomic and re-send whole lists.
fn add_patch_meta(schemas: &mut Value) {
    const META: &[(&str, &str, &str, &str)] = &[
        ("io.k8s.api.core.v1.PodSpec", "containers", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "initContainers", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "volumes", "name", "merge,retainKeys"),
        ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "topologyKey", "merge"),
        ("io.k8s.api.core.v1.Container", "ports", "containerPort", "merge"),
        ("io.k8s.api.core.v1.Container", "env", "name", "merge"),
        ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath", "merge"),
        ("io.k8s.api.core.v1.Container", "volumeDevices", "devicePath", "merge"),
        ("io.k8s.api.core.v1.ServiceSpec", "ports", "port", "merge"),
        ("io.k8s.api.core.v1.PodStatus", "conditions", "type", "merge"),
        ("io.k8s.api.core.v1.NodeStatus", "conditions", "type", "merge"),
        ("io.k8s.api.core.v1.NodeStatus", "addresses", "type", "merge"),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type", "merge"),
        ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type", "merge"),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "uid", "merge"),
    ];
    for (schema, prop, key, strategy) in META {
        if let Some(p) = schemas.get_mut(*schema).and_then(|s| s.get_mut("properties")).and_then(|p| p.get_mut(*prop)) {
            p["x-kubernetes-patch-merge-key"] = json!(key);
            p["x-kubernetes-patch-strategy"] = json!(strategy);
        }
    }
    if let Some(p) = schemas
        .get_mut("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut("finalizers"))
    {
        p["x-kubernetes-patch-strategy"] = json!("merge");
    }
    // Deployment strategy and volume sources switch shape with retainKeys.
    if let Some(p) = schemas.get_mut("io.k8s.api.apps.v1.DeploymentSpec").and_then(|s| s.get_mut("properties")).and_then(|p| p.get_mut("strategy")) {
        p["x-kubernetes-patch-strategy"] = json!("retainKeys");
    }
}

fn query_param(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}})
}

fn op(r: &ResourceInfo, action: &str, verb_id: &str, schema: &str, body: bool) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{schema}")});
    let mut params = vec![query_param("pretty", "string")];
    if matches!(action, "put" | "patch" | "post") {
        params.push(query_param("dryRun", "string"));
        params.push(query_param("fieldManager", "string"));
        params.push(query_param("fieldValidation", "string"));
    }
    if action == "patch" {
        params.push(query_param("force", "boolean"));
    }
    let group_id = match r.group {
        "" => "Core".to_string(),
        g => g.split('.').next().unwrap_or(g).to_string(),
    };
    let mut o = json!({
        "operationId": format!("{verb_id}{}{}{}", capitalize(&group_id), capitalize(r.version), r.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(r.group, r.version, r.kind),
    });
    if body {
        let ct = if action == "patch" {
            json!({
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            })
        } else {
            json!({"*/*": {"schema": reference}})
        };
        o["requestBody"] = json!({"content": ct, "required": true});
    }
    o
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn paths_for(r: &ResourceInfo) -> Vec<(String, Value)> {
    let base = r.url_prefix();
    let schema = schema_name(r);
    let (collection, item) = if r.namespaced {
        (format!("{base}/namespaces/{{namespace}}/{}", r.plural), format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural))
    } else {
        (format!("{base}/{}", r.plural), format!("{base}/{}/{{name}}", r.plural))
    };
    let mut path_params = vec![json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})];
    if r.namespaced {
        path_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    let ns_word = if r.namespaced { "Namespaced" } else { "" };
    let mut out = vec![
        (
            collection,
            json!({
                "get": op(r, "list", &format!("list{ns_word}"), &format!("{schema}List"), false),
                "post": op(r, "post", &format!("create{ns_word}"), &schema, true),
                "delete": op(r, "deletecollection", &format!("deleteCollection{ns_word}"), "io.k8s.apimachinery.pkg.apis.meta.v1.Status", false),
                "parameters": if r.namespaced { json!([path_params[1]]) } else { json!([]) },
            }),
        ),
        (
            item.clone(),
            json!({
                "get": op(r, "get", &format!("read{ns_word}"), &schema, false),
                "put": op(r, "put", &format!("replace{ns_word}"), &schema, true),
                "patch": op(r, "patch", &format!("patch{ns_word}"), &schema, true),
                "delete": op(r, "delete", &format!("delete{ns_word}"), "io.k8s.apimachinery.pkg.apis.meta.v1.Status", false),
                "parameters": path_params,
            }),
        ),
    ];
    for sub in r.subresources {
        let sub_schema = if *sub == "scale" { "io.k8s.api.autoscaling.v1.Scale".to_string() } else { schema.clone() };
        if matches!(*sub, "status" | "scale") {
            let mut get = op(r, "get", &format!("read{ns_word}{}", capitalize(sub)), &sub_schema, false);
            let mut put = op(r, "put", &format!("replace{ns_word}{}", capitalize(sub)), &sub_schema, true);
            let mut patch = op(r, "patch", &format!("patch{ns_word}{}", capitalize(sub)), &sub_schema, true);
            if *sub == "scale" {
                for o in [&mut get, &mut put, &mut patch] {
                    o["x-kubernetes-group-version-kind"] = gvk("autoscaling", "v1", "Scale");
                }
            }
            out.push((format!("{item}/{sub}"), json!({"get": get, "put": put, "patch": patch, "parameters": path_params})));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_document_is_protobuf_swagger_2() {
        let d = v2_document();
        assert_eq!(&d[..5], b"\x0a\x032.0");
        assert_eq!(d[5], 0x12);
        assert_eq!(d[6] as usize, d.len() - 7);
    }

    #[test]
    fn documents_advertise_field_validation_on_patch() {
        let api = OpenApi::build();
        let idx = api.index();
        assert!(idx["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap().starts_with("/openapi/v3/api/v1?hash="));
        let doc: Value = serde_json::from_slice(&api.document("apis/apps/v1").unwrap()).unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let dep = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(dep["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert!(dep["properties"]["spec"].is_object());
        let core: Value = serde_json::from_slice(&api.document("api/v1").unwrap()).unwrap();
        assert!(core["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["image"].is_object());
    }
}
