//! Discovery: `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>` and
//! `/version` — how kubectl learns what this server serves. Built from the
//! resource table, so it can never disagree with the router.
//!
//! kubectl 1.27+ asks for aggregated discovery (`apidiscovery.k8s.io/v2`)
//! first; answering with plain `application/json` makes client-go fall back
//! to these legacy documents without printing anything.

use machinery::resources::{self, ResourceInfo};
use serde_json::{json, Value};

/// The Kubernetes version rkube speaks: kubectl compares it with its own and
/// warns on skew, so report the API level rkube implements.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "rkube",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        // Go's architecture names, as kubectl expects them.
        "platform": format!("linux/{}", match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }),
    })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups().into_iter().map(|(g, v)| group_entry(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    resources::groups().into_iter().find(|(g, _)| *g == group).map(|(g, v)| {
        let mut e = group_entry(g, v);
        e["kind"] = json!("APIGroup");
        e["apiVersion"] = json!("v1");
        e
    })
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn subresource_entry(r: &ResourceInfo, sub: &str) -> Value {
    let (kind, group, version, verbs): (&str, Option<&str>, Option<&str>, &[&str]) = match sub {
        "status" => (r.kind, None, None, &["get", "patch", "update"]),
        "scale" => ("Scale", Some("autoscaling"), Some("v1"), &["get", "patch", "update"]),
        "binding" => ("Binding", None, None, &["create"]),
        "ephemeralcontainers" => (r.kind, None, None, &["get", "patch", "update"]),
        "proxy" if r.kind == "Service" => ("ServiceProxyOptions", None, None, &["create", "delete", "get", "patch", "update"]),
        "proxy" => ("PodProxyOptions", None, None, &["create", "delete", "get", "patch", "update"]),
        // Served by the pods registry, but the object is a policy/v1
        // Eviction: `kubectl drain` looks for this entry (with its group and
        // version) to decide between evicting and deleting.
        "eviction" => ("Eviction", Some("policy"), Some("v1"), &["create"]),
        "finalize" => (r.kind, None, None, &["update"]),
        "exec" => ("PodExecOptions", None, None, &["create", "get"]),
        "attach" => ("PodAttachOptions", None, None, &["create", "get"]),
        "portforward" => ("PodPortForwardOptions", None, None, &["create", "get"]),
        _ => (r.kind, None, None, &["get"]),
    };
    let mut e = json!({
        "name": format!("{}/{}", r.plural, sub),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let Some(g) = group {
        e["group"] = json!(g);
        e["version"] = json!(version.unwrap());
    }
    e
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": if r.is_stored() { ALL_VERBS } else { &["create"][..] },
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for s in r.subresources {
            list.push(subresource_entry(r, s));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_pods_and_subresources() {
        let l = api_resource_list("", "v1").unwrap();
        let names: Vec<&str> = l["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        for n in ["pods", "pods/status", "pods/binding", "nodes", "services", "namespaces", "namespaces/finalize", "events"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let pods = l["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["singularName"], "pod");
        let apps = api_resource_list("apps", "v1").unwrap();
        let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!((scale["group"].as_str(), scale["kind"].as_str()), (Some("autoscaling"), Some("Scale")));
        assert!(api_resource_list("nope", "v1").is_none());
    }
}
