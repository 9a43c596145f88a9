//! The ClusterIP and NodePort repair loops (an apiserver killed between
//! allocating and writing a Service must not leak the range).
//!
//! An apiserver killed mid-request is simulated exactly where it hurts:
//! a Service's key removed from etcd behind the apiserver's back (a delete
//! that never gave its values back), and an allocation record removed
//! while Services still hold values in it.

use std::time::Duration;

use e2e::Cluster;
use serde_json::{json, Value};

fn create(c: &Cluster, name: &str, ip: Option<&str>, node_port: Option<u64>) -> (u16, Value) {
    let mut port = json!({"port": 80, "targetPort": 8080});
    if let Some(p) = node_port {
        port["nodePort"] = json!(p);
    }
    let mut spec = json!({"type": "NodePort", "selector": {"app": name}, "ports": [port]});
    if let Some(ip) = ip {
        spec["clusterIP"] = json!(ip);
    }
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
    let r = e2e::http(&c.api.url, "POST", "/api/v1/namespaces/default/services", Some("application/json"), body.to_string().as_bytes());
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread")]
async fn leaked_values_are_freed_and_unmarked_ones_marked() {
    let c = Cluster::start_with(&["--service-repair-interval=1s"]);
    let (code, a) = create(&c, "a", None, None);
    assert_eq!(code, 201, "{a}");
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    let port = a["spec"]["ports"][0]["nodePort"].as_u64().unwrap();

    // "Killed between the two steps of a delete": the Service is gone, its
    // ClusterIP and NodePort still marked.
    let mut etcd = c.etcd.client().await;
    let del = etcd.delete("/registry/services/specs/default/a", None).await.unwrap();
    assert_eq!(del.deleted(), 1);
    let (code, s) = create(&c, "b", Some(&ip), Some(port));
    assert_eq!(code, 422, "the leaked values are still marked: {s}");
    // Three passes later they are free again.
    let mut got = (0, Value::Null);
    e2e::eventually_blocking("the leaked ClusterIP and NodePort to be freed", Duration::from_secs(20), || {
        got = create(&c, "b", Some(&ip), Some(port));
        (got.0 == 201).then_some(())
    });
    assert_eq!(got.1["spec"]["clusterIP"], json!(ip));
    assert_eq!(got.1["spec"]["ports"][0]["nodePort"], json!(port));

    // The records lost while Services hold values: the loops mark them again,
    // so the values are not handed out twice.
    etcd.delete("/registry/ranges/serviceips", None).await.unwrap();
    etcd.delete("/registry/ranges/servicenodeports", None).await.unwrap();
    e2e::eventually_blocking("the ClusterIP to be marked again", Duration::from_secs(20), || {
        let (code, _) = create(&c, "probe", Some(&ip), None);
        if code == 201 {
            // Created before the record was rebuilt (a doubled IP, which
            // the repair reports): undo and retry.
            e2e::http(&c.api.url, "DELETE", "/api/v1/namespaces/default/services/probe", None, b"");
        }
        (code == 422).then_some(())
    });
    e2e::eventually_blocking("the NodePort to be marked again", Duration::from_secs(20), || {
        let (code, _) = create(&c, "probe2", None, Some(port));
        if code == 201 {
            // Created before the NodePort record was rebuilt: undo and retry.
            e2e::http(&c.api.url, "DELETE", "/api/v1/namespaces/default/services/probe2", None, b"");
        }
        (code == 422).then_some(())
    });
    // Nothing was lost: b still holds both.
    let r = e2e::http(&c.api.url, "GET", "/api/v1/namespaces/default/services/b", None, b"");
    assert_eq!(r.json()["spec"]["clusterIP"], json!(ip));
}
