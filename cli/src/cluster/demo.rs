//! The demo application, in the spirit of the classic multi-tier example:
//! a `frontend` Deployment behind a NodePort Service that calls a `backend`
//! Deployment behind a ClusterIP Service. Both are busybox `httpd` serving
//! one CGI script (`/cgi-bin/app`); the frontend's script asks the backend
//! through its Service's cluster IP with `nc` (there is no cluster DNS, so
//! the IP is written into the script, as the `BACKEND_SERVICE_HOST`
//! environment variable would give it).
//!
//! Deploying it ([`deploy`]) waits until the app answers through the
//! frontend's ClusterIP and through the NodePort of every node.

use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use super::kubectl::{kubectl, kubectl_apply};
use super::spec::Spec;
use super::wait::wait_for;

pub const IMAGE: &str = "docker.io/rkube/busybox:1";
pub const PORT: u16 = 8080;
pub const PATH: &str = "/cgi-bin/app";

fn deployment(name: &str, replicas: u32, script: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": name,
                        "image": IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", script],
                        "ports": [{"containerPort": PORT, "name": "http"}],
                        "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}},
                        "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 2},
                    }]
                }
            }
        }
    })
}

fn service(name: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 80, "targetPort": PORT, "protocol": "TCP"}]}
    })
}

/// A shell line that writes the CGI script `body` and runs httpd.
fn httpd(body: &str) -> String {
    format!(
        "mkdir -p /www/cgi-bin && cat > /www/cgi-bin/app <<EOF\n#!/bin/sh\necho 'Content-Type: text/plain'\necho\n{body}\nEOF\nchmod +x /www/cgi-bin/app && exec httpd -f -p {PORT} -h /www"
    )
}

/// The backend tier: Deployment + ClusterIP Service.
pub fn backend(replicas: u32) -> Value {
    // And who asked: REMOTE_ADDR, which busybox httpd on a dual-stack
    // socket writes as `[::ffff:a.b.c.d]`; the sed keeps `a.b.c.d`. Pods
    // calling through the ClusterIP should appear with their own pod IP.
    let script = httpd("echo \"backend $(hostname) from \\$(echo \\$REMOTE_ADDR | sed 's/.*://; s/]//')\"");
    json!({"apiVersion": "v1", "kind": "List", "items": [service("backend", "ClusterIP"), deployment("backend", replicas, &script)]})
}

/// The frontend tier, calling the backend at `backend_ip:80`.
pub fn frontend(replicas: u32, backend_ip: &str) -> Value {
    let call = format!("\\$(printf 'GET {PATH} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {backend_ip} 80 | tail -n 1)");
    let script = httpd(&format!("echo \"frontend $(hostname) -> {call}\""));
    json!({"apiVersion": "v1", "kind": "List", "items": [service("frontend", "NodePort"), deployment("frontend", replicas, &script)]})
}

/// Applies both tiers and waits until the frontend answers everywhere.
pub fn deploy(spec: &Spec) -> anyhow::Result<()> {
    // The demo's pods run as the `default` ServiceAccount, which the
    // controller manager's serviceaccount controller creates; the
    // ServiceAccount admission plugin refuses pods until it exists.
    wait_for("the default ServiceAccount", Duration::from_secs(60), || {
        Ok(kubectl(spec, &["get", "serviceaccount", "default", "-n", "default", "-o", "name"]).ok())
    })?;
    kubectl_apply(spec, &backend(2))?;
    let backend_ip = kubectl(spec, &["get", "service", "backend", "-o", "jsonpath={.spec.clusterIP}"])?;
    kubectl_apply(spec, &frontend(spec.nodes.max(2) + 1, backend_ip.trim()))?;
    for d in ["backend", "frontend"] {
        kubectl(spec, &["rollout", "status", &format!("deployment/{d}"), "--timeout=180s"])?;
    }
    // The Endpoints controller and every node's proxy follow, each at its
    // own pace; wait until the app answers through the ClusterIP and through
    // the NodePort of every node, so the summary never races a proxy sync.
    wait_for("frontend answering through its ClusterIP", Duration::from_secs(60), || {
        Ok(fetch_cluster_ip(spec, "frontend").ok().filter(|a| a.contains("backend")))
    })?;
    for n in spec.node_range() {
        wait_for(&format!("frontend answering through the NodePort of node {n}"), Duration::from_secs(60), || {
            Ok(fetch_node_port(spec, n).ok().filter(|a| a.contains("backend")))
        })?;
    }
    Ok(())
}

/// GET the demo path from inside `netns` (a thread that entered it).
pub fn http_get_in_netns(netns: &str, addr: String) -> anyhow::Result<(u16, String)> {
    machinery::netns::run(netns, move || crate::cluster::http_get(&addr, PATH))?
}

/// The demo answer through `service`'s ClusterIP, asked from node 1.
pub fn fetch_cluster_ip(spec: &Spec, service: &str) -> anyhow::Result<String> {
    let ip = kubectl(spec, &["get", "service", service, "-o", "jsonpath={.spec.clusterIP}"])?;
    let (status, body) = http_get_in_netns(&spec.netns(1), format!("{}:80", ip.trim()))?;
    if status != 200 {
        bail!("HTTP {status}");
    }
    Ok(body.trim().to_string())
}

/// The demo answer through the frontend's NodePort on node `n`, asked from the host.
pub fn fetch_node_port(spec: &Spec, n: u32) -> anyhow::Result<String> {
    let port = kubectl(spec, &["get", "service", "frontend", "-o", "jsonpath={.spec.ports[0].nodePort}"])?;
    let (status, body) = crate::cluster::http_get(&format!("{}:{}", spec.node_ip(n), port.trim()), PATH)?;
    if status != 200 {
        bail!("HTTP {status}");
    }
    Ok(body.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated script, run by a real shell with busybox httpd on
    /// loopback, serves the CGI answer.
    #[test]
    fn backend_script_serves_cgi() {
        let dir = tempfile::tempdir().unwrap();
        let items = backend(1);
        let script = items["items"][1]["spec"]["template"]["spec"]["containers"][0]["command"][2].as_str().unwrap().to_string();
        let port = crate::procs::free_port().unwrap();
        let script = script.replace("/www", &dir.path().join("www").to_string_lossy()).replace(&format!("-p {PORT}"), &format!("-p 127.0.0.1:{port}"));
        let path = std::env::var("PATH").unwrap_or_default();
        // busybox applets for sh, httpd, hostname.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for a in ["sh", "httpd", "hostname", "cat", "mkdir", "chmod", "echo", "sed"] {
            std::os::unix::fs::symlink("/bin/busybox", bin.join(a)).unwrap();
        }
        let mut child = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", &script])
            .env("PATH", format!("{}:{path}", bin.display()))
            .spawn()
            .unwrap();
        let mut answer = String::new();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if let Ok(s) = crate::cluster::http_get(&format!("127.0.0.1:{port}"), PATH) {
                answer = s.1;
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(answer.trim(), format!("backend {} from 127.0.0.1", host.trim()));
    }

    #[test]
    fn frontend_calls_backend_ip() {
        let items = frontend(3, "10.96.0.42");
        let script = items["items"][1]["spec"]["template"]["spec"]["containers"][0]["command"][2].as_str().unwrap();
        assert!(script.contains("nc -w 3 10.96.0.42 80"), "{script}");
        assert_eq!(items["items"][0]["spec"]["type"], "NodePort");
        assert_eq!(items["items"][1]["spec"]["replicas"], 3);
    }
}
