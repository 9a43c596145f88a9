//! The agent with a real, private containerd, against real etcd + rkube-apiserver
//! (needs root, containerd, runc, CNI plugins, busybox-static). Pods set
//! `spec.nodeName` directly, so no scheduler is needed. Every test owns its
//! containerd (own podCIDR, bridge, directories), its cluster and its agent;
//! all are torn down on drop, also when an assertion fails. Each test runs in
//! a network namespace of its own (`e2e::netns`, no route off the machine):
//! the node's bridge, pod veths and iptables rules, the servers and the
//! clients, the "host" that fetches a page from a pod, all live there.

#[path = "../../tests/tests/agent_common/mod.rs"]
mod agent_common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use agent_common::{eventually, Agent};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use proto::runtime::v1::{ListContainersRequest, ListPodSandboxRequest};
use rkube_agent::runtime::containerd::{PrivateContainerd, PrivateContainerdConfig};
use rkube_agent::runtime::images::BUSYBOX_IMAGE;
use e2e::netns::in_netns;

struct Node {
    cluster: e2e::Cluster,
    ctrd: PrivateContainerd,
    agent: Agent,
    name: String,
    port: u16,
    _root: tempfile::TempDir,
}

async fn node(cidr: &str) -> Node {
    let cluster = e2e::Cluster::start();
    let ctrd = PrivateContainerd::start(PrivateContainerdConfig::new(cidr.parse().unwrap())).await.expect("start containerd");
    let root = tempfile::Builder::new().prefix("rkube-agent-").tempdir().unwrap();
    let port = e2e::free_port();
    let name = format!("node-{}", cidr.split('.').nth(2).unwrap());
    let agent = Agent::start(
        &cluster,
        &[
            &format!("--node-name={name}"),
            &format!("--container-runtime-endpoint={}", ctrd.endpoint()),
            &format!("--root-dir={}", root.path().display()),
            &format!("--pod-log-dir={}", ctrd.layout().pod_logs.display()),
            &format!("--port={port}"),
            "--address=127.0.0.1",
            "--node-ip=127.0.0.1",
            "--healthz-port=0",
            "--container-restart-backoff=1s",
            "--image-pull-backoff=1s",
            "--sync-frequency=2s",
            "--node-status-update-frequency=2s",
        ],
    );
    Node { cluster, ctrd, agent, name, port, _root: root }
}

fn pod(name: &str, node: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = node.into();
    spec["terminationGracePeriodSeconds"] = 2.into();
    serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})).unwrap()
}

fn status_of<'a>(p: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == container)
}

fn condition(p: &Pod, ty: &str) -> Option<String> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == ty).map(|c| c.status.clone())
}

async fn cri_counts(ctrd: &PrivateContainerd) -> (usize, usize) {
    let mut cri = ctrd.client().await.unwrap();
    let pods = cri.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap().into_inner().items.len();
    let ctrs = cri.runtime.list_containers(ListContainersRequest { filter: None }).await.unwrap().into_inner().containers.len();
    (pods, ctrs)
}

/// After a pod object is gone, its sandbox and containers must be gone
/// from the runtime. On failure, says what is left and what the agent did.
async fn assert_runtime_empty(n: &Node) {
    if cri_counts(&n.ctrd).await == (0, 0) {
        return;
    }
    let mut cri = n.ctrd.client().await.unwrap();
    let sandboxes = cri.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap().into_inner().items;
    let containers = cri.runtime.list_containers(ListContainersRequest { filter: None }).await.unwrap().into_inner().containers;
    let left: Vec<String> = sandboxes
        .iter()
        .map(|s| format!("sandbox {} state {} labels {:?}", s.id, s.state, s.labels))
        .chain(containers.iter().map(|c| format!("container {} {:?} state {} labels {:?}", c.id, c.metadata.as_ref().map(|m| (&m.name, m.attempt)), c.state, c.labels)))
        .collect();
    let log = n.agent.log_text();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    panic!(
        "the runtime still holds:\n{}\nagent log tail:\n{}",
        left.join("\n"),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// HTTP/1.0 GET; only when a local (bridge) route covers the address.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let SocketAddr::V4(v4) = addr else { panic!("v4 only") };
    assert!(
        v4.ip().is_loopback() || rkube_agent::probes::local_route_exists(*v4.ip()),
        "no local route to {addr}: refusing to send traffic that could leave the machine"
    );
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", v4.ip()).as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

async fn get_pod(api: &Api<Pod>, name: &str) -> Option<Pod> {
    api.get_opt(name).await.ok().flatten()
}

/// The apiserver says the pod does not exist (a 404, not a failed request:
/// under load a GET may time out while the pod is still being deleted).
async fn pod_gone(api: &Api<Pod>, name: &str) -> bool {
    matches!(api.get_opt(name).await, Ok(None))
}

/// Waits until `pred` holds for pod `name`; on timeout panics with the pod's status and the agent's log.
async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, timeout: Duration, agent: &mut Agent, pred: impl Fn(&Pod) -> bool) -> Pod {
    let start = std::time::Instant::now();
    loop {
        let p = get_pod(pods, name).await;
        if let Some(p) = &p {
            if pred(p) {
                return p.clone();
            }
        }
        agent.assert_alive();
        if start.elapsed() > timeout {
            let status = p.map(|p| serde_json::to_string_pretty(&p.status).unwrap()).unwrap_or_else(|| "pod not found".into());
            let log = agent.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!("{what}: not after {timeout:?}\npod {name} status: {status}\nagent log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn pod_runs_serves_logs_survives_agent_restart_and_is_deleted() {
    in_netns("rkt-agent0", || async move {
        let mut n = node("10.215.1.0/24").await;
        let client = n.cluster.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        // The node registers and goes Ready (CRI Status says runtime and network are ready).
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        let name = n.name.clone();
        let node_obj = eventually("node Ready", Duration::from_secs(60), &mut n.agent, || {
            let (nodes, name) = (nodes.clone(), name.clone());
            async move {
                let node = nodes.get_opt(&name).await.ok()??;
                let ready = node.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(node)
            }
        })
        .await;
        let info = node_obj.status.clone().unwrap().node_info.unwrap();
        assert!(info.container_runtime_version.starts_with("containerd://"), "{}", info.container_runtime_version);
        let images: Vec<String> = node_obj.status.unwrap().images.unwrap_or_default().into_iter().flat_map(|i| i.names.unwrap_or_default()).collect();
        assert!(images.iter().any(|i| i == BUSYBOX_IMAGE), "{images:?}");

        let script = "echo hello from web; sleep 1; echo to stderr >&2; mkdir -p /www && echo page-of-web > /www/index.html && exec httpd -f -p 8080 -h /www";
        let spec = serde_json::json!({
            "initContainers": [{"name": "init", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "echo init done"]}],
            "containers": [{
                "name": "web", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script],
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
            }]
        });
        pods.create(&PostParams::default(), &pod("web", &n.name, spec)).await.unwrap();
        let running = eventually("web Running and Ready", Duration::from_secs(90), &mut n.agent, || {
            let pods = pods.clone();
            async move {
                let p = get_pod(&pods, "web").await?;
                (p.status.as_ref()?.phase.as_deref() == Some("Running") && condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
            }
        })
        .await;
        let st = running.status.clone().unwrap();
        let ip: Ipv4Addr = st.pod_ip.clone().unwrap().parse().unwrap();
        assert!(n.ctrd.network().subnet.contains(&ip), "{ip}");
        assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
        // The init container has no limits: Burstable, not Guaranteed (upstream counts init containers).
        assert_eq!(st.qos_class.as_deref(), Some("Burstable"));
        assert_eq!(condition(&running, "Initialized").as_deref(), Some("True"));
        assert_eq!(condition(&running, "ContainersReady").as_deref(), Some("True"));
        let init = &st.init_container_statuses.clone().unwrap()[0];
        assert_eq!(init.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("Completed"));
        let web = status_of(&running, "web").unwrap().clone();
        let cid = web.container_id.clone().unwrap();
        assert!(cid.starts_with("containerd://"), "{cid}");
        assert!(web.ready && web.state.as_ref().unwrap().running.is_some());
        assert_eq!(web.image, BUSYBOX_IMAGE);
        assert!(web.image_id.starts_with("sha256:") || web.image_id.contains("@sha256:"), "{}", web.image_id);

        // Host → pod over the private bridge.
        let page = tokio::task::spawn_blocking(move || http_get(SocketAddr::from((ip, 8080)), "/index.html")).await.unwrap().unwrap();
        assert!(page.contains("page-of-web"), "{page}");

        // Logs from the agent's endpoint (the apiserver's pods/log proxies here).
        let port = n.port;
        let logs = move |q: &str| {
            let q = q.to_string();
            async move {
                tokio::task::spawn_blocking(move || http_get(SocketAddr::from(([127, 0, 0, 1], port)), &format!("/containerLogs/default/web/web{q}")).unwrap()).await.unwrap()
            }
        };
        assert_eq!(body(&logs("").await), "hello from web\nto stderr\n");
        assert_eq!(body(&logs("?tailLines=1").await), "to stderr\n");
        let ts = logs("?timestamps=true").await;
        let first = body(&ts).lines().next().unwrap().to_string();
        let (stamp, text) = first.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{first}");
        assert_eq!(text, "hello from web");
        let code = |resp: String| resp.split_whitespace().nth(1).unwrap_or("").to_string();
        assert_eq!(code(logs("/../../x").await), "404");
        let prev = logs("?previous=true").await;
        assert_eq!(code(prev.clone()), "400");
        assert!(body(&prev).contains("previous terminated container \"web\" in pod \"web\" not found"), "{prev}");
        assert_eq!(body(&tokio::task::spawn_blocking(move || http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/containerLogs/default/web/init").unwrap()).await.unwrap()), "init done\n");
        // follow: what is printed later arrives on the open stream. The
        // line is written once the stream has delivered what was there
        // before, so it can only come over the open stream.
        let (streaming_tx, streaming) = std::sync::mpsc::channel();
        let follow = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(b"GET /containerLogs/default/web/web?follow=true HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("later line") {
                let k = s.read(&mut buf).unwrap();
                assert!(k > 0, "stream ended: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..k]);
                if String::from_utf8_lossy(&got).contains("to stderr") {
                    let _ = streaming_tx.send(());
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        });
        tokio::task::spawn_blocking(move || streaming.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("the follow stream delivered the earlier lines");
        let mut cri = n.ctrd.client().await.unwrap();
        // Write to the container's stdout (PID 1's fd 1) from an exec.
        let id = cid.trim_start_matches("containerd://").to_string();
        let out = cri
            .runtime
            .exec_sync(proto::runtime::v1::ExecSyncRequest { container_id: id.clone(), cmd: vec!["sh".into(), "-c".into(), "echo later line > /proc/1/fd/1".into()], timeout: 10 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        let followed = follow.await.unwrap();
        assert!(followed.contains("hello from web") && followed.contains("later line"), "{followed}");

        // Restarting the agent keeps the same container running. Proof that
        // the new agent has looked at `web`: it lists its pods when it
        // starts, `web` among them, before it can hear of a pod created
        // afterwards — and it has started that pod since.
        n.agent.restart(&n.cluster);
        let spec = serde_json::json!({"containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}]});
        pods.create(&PostParams::default(), &pod("after-restart", &n.name, spec)).await.unwrap();
        wait_running(&pods, "after-restart", &mut n.agent).await;
        pods.delete("after-restart", &DeleteParams::default()).await.unwrap();
        wait_pod_gone(&pods, "after-restart", &mut n.agent).await;
        let after = eventually("web still Ready after agent restart", Duration::from_secs(60), &mut n.agent, || {
            let pods = pods.clone();
            async move {
                let p = get_pod(&pods, "web").await?;
                (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
            }
        })
        .await;
        let web2 = status_of(&after, "web").unwrap();
        assert_eq!(web2.container_id.as_deref(), Some(cid.as_str()), "same container after agent restart");
        assert_eq!(web2.restart_count, 0);
        assert_eq!(cri_counts(&n.ctrd).await, (1, 2), "one sandbox, init + web containers");

        // Deletion: containers and sandbox stopped and removed, then the pod object goes.
        pods.delete("web", &DeleteParams::default()).await.unwrap();
        eventually("pod object gone", Duration::from_secs(60), &mut n.agent, || {
            let pods = pods.clone();
            async move { pod_gone(&pods, "web").await.then_some(()) }
        })
        .await;
        assert_runtime_empty(&n).await;
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let reasons: Vec<String> = events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
        for r in ["Pulled", "Created", "Started", "Killing"] {
            assert!(reasons.iter().any(|x| x == r), "event {r} in {reasons:?}");
        }
    });
}

#[test]
fn probes_restart_on_liveness_failure_and_hold_readiness() {
    in_netns("rkt-agent1", || async move {
        let mut n = node("10.215.2.0/24").await;
        let client = n.cluster.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = serde_json::json!({
            "containers": [
                {"name": "sick", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"],
                 "livenessProbe": {"exec": {"command": ["cat", "/no/such/file"]}, "periodSeconds": 1, "failureThreshold": 2}},
                {"name": "unready", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"],
                 "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}},
                {"name": "tcp", "image": BUSYBOX_IMAGE, "command": ["nc", "-ll", "-p", "7000", "-e", "cat"],
                 "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1}}
            ]
        });
        pods.create(&PostParams::default(), &pod("probed", &n.name, spec)).await.unwrap();
        let p = wait_pod(&pods, "probed", "liveness restarts 'sick', tcp ready", Duration::from_secs(120), &mut n.agent, |p| {
            status_of(p, "sick").is_some_and(|s| s.restart_count >= 1) && status_of(p, "tcp").is_some_and(|s| s.ready)
        })
        .await;
        let unready = status_of(&p, "unready").unwrap();
        assert!(unready.state.as_ref().unwrap().running.is_some() && !unready.ready, "{unready:?}");
        assert_eq!(unready.restart_count, 0);
        assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
        let sick = status_of(&p, "sick").unwrap();
        assert!(sick.last_state.as_ref().and_then(|s| s.terminated.as_ref()).is_some(), "{sick:?}");
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let evs = events.list(&ListParams::default()).await.unwrap().items;
        let unhealthy: Vec<String> = evs.iter().filter(|e| e.reason.as_deref() == Some("Unhealthy")).filter_map(|e| e.message.clone()).collect();
        assert!(unhealthy.iter().any(|m| m.starts_with("Liveness probe failed")), "{unhealthy:?}");
        assert!(unhealthy.iter().any(|m| m.starts_with("Readiness probe failed")), "{unhealthy:?}");
        assert!(evs.iter().any(|e| e.reason.as_deref() == Some("Killing") && e.message.as_deref().is_some_and(|m| m.contains("failed liveness probe"))));
        pods.delete("probed", &DeleteParams::default()).await.unwrap();
        eventually("pod object gone", Duration::from_secs(60), &mut n.agent, || {
            let pods = pods.clone();
            async move { pod_gone(&pods, "probed").await.then_some(()) }
        })
        .await;
        assert_runtime_empty(&n).await;
    });
}

#[test]
fn bad_images_back_off_crash_loops_back_off_and_others_run() {
    in_netns("rkt-agent2", || async move {
        let mut n = node("10.215.3.0/24").await;
        let client = n.cluster.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        // A registry on a closed loopback port: the pull fails at once, and nothing leaves the machine.
        let absent = "127.0.0.1:1/rkube/absent:1";
        pods.create(&PostParams::default(), &pod("badimage", &n.name, serde_json::json!({"containers": [{"name": "c", "image": absent}]}))).await.unwrap();
        pods.create(&PostParams::default(), &pod("never", &n.name, serde_json::json!({"containers": [{"name": "c", "image": absent, "imagePullPolicy": "Never"}]}))).await.unwrap();
        pods.create(&PostParams::default(), &pod("crash", &n.name, serde_json::json!({"containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "echo crashing; exit 3"]}]}))).await.unwrap();
        pods.create(&PostParams::default(), &pod("once", &n.name, serde_json::json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "exit 0"]}]}))).await.unwrap();
        pods.create(&PostParams::default(), &pod("good", &n.name, serde_json::json!({"containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}]}))).await.unwrap();
        let waiting = |p: &Pod| status_of(p, "c").and_then(|s| s.state.as_ref()?.waiting.as_ref()).map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()));
        // The good pod runs whatever the others do.
        eventually("good Running", Duration::from_secs(90), &mut n.agent, || {
            let pods = pods.clone();
            async move { (get_pod(&pods, "good").await?.status?.phase.as_deref() == Some("Running")).then_some(()) }
        })
        .await;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let seen2 = seen.clone();
        let p = wait_pod(&pods, "badimage", "ErrImagePull then ImagePullBackOff", Duration::from_secs(90), &mut n.agent, move |p| {
            let Some((reason, _)) = waiting(p) else { return false };
            let mut seen = seen2.lock().unwrap();
            seen.insert(reason);
            // ErrImagePull is brief (the back-off follows at once): a poll may
            // only catch ImagePullBackOff; the ErrImagePull step is checked
            // through its event below.
            seen.contains("ImagePullBackOff")
        })
        .await;
        let msg = waiting(&p).unwrap().1;
        assert!(msg.contains(absent), "{msg}");
        let p = get_pod(&pods, "badimage").await.unwrap();
        assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
        // Each pod has its own worker: "never" need not have been synced yet.
        let never = wait_pod(&pods, "never", "ErrImageNeverPull", Duration::from_secs(60), &mut n.agent, |p| waiting(p).is_some_and(|(r, _)| r == "ErrImageNeverPull")).await;
        let (reason, message) = waiting(&never).unwrap();
        assert_eq!(reason, "ErrImageNeverPull");
        assert_eq!(message, format!("Container image \"{absent}\" is not present with pull policy of Never"));
        let crash = eventually("CrashLoopBackOff", Duration::from_secs(90), &mut n.agent, || {
            let pods = pods.clone();
            async move {
                let p = get_pod(&pods, "crash").await?;
                (waiting(&p)?.0 == "CrashLoopBackOff" && status_of(&p, "c")?.restart_count >= 1).then_some(p)
            }
        })
        .await;
        let last = status_of(&crash, "c").unwrap().last_state.clone().unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
        let once = eventually("restartPolicy Never pod Succeeded", Duration::from_secs(60), &mut n.agent, || {
            let pods = pods.clone();
            async move {
                let p = get_pod(&pods, "once").await?;
                (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
            }
        })
        .await;
        assert_eq!(status_of(&once, "c").unwrap().restart_count, 0);
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let reasons: Vec<String> = events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
        for r in ["Pulling", "Failed", "BackOff", "ErrImageNeverPull"] {
            assert!(reasons.iter().any(|x| x == r), "event {r} in {reasons:?}");
        }
        let failed: Vec<String> = events
            .list(&ListParams::default().fields("involvedObject.name=badimage,reason=Failed"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.message)
            .collect();
        assert!(failed.iter().any(|m| m == "Error: ErrImagePull"), "ErrImagePull event for badimage in {failed:?}");
        assert_eq!(get_pod(&pods, "good").await.unwrap().status.unwrap().phase.as_deref(), Some("Running"));
        for name in ["badimage", "never", "crash", "once", "good"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        eventually("all pods gone", Duration::from_secs(60), &mut n.agent, || {
            let pods = pods.clone();
            async move { pods.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(()) }
        })
        .await;
        assert_runtime_empty(&n).await;
    });
}

/// `kubectl logs`, `kubectl logs -f` and `kubectl exec` (1.27 and 1.33) through
/// the apiserver's `pods/log` and `pods/exec`, which proxy to this agent.
#[test]
fn kubectl_logs_and_exec_through_the_apiserver() {
    in_netns("rkt-agent3", || async move {
        let mut n = node("10.215.4.0/24").await;
        let client = n.cluster.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = serde_json::json!({"containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "echo first; echo second; exec sleep 3600"]}]});
        pods.create(&PostParams::default(), &pod("talk", &n.name, spec)).await.unwrap();
        wait_running(&pods, "talk", &mut n.agent).await;
        // Running comes as the container starts, its output a moment later.
        let cluster = &n.cluster;
        eventually("both lines in the log", Duration::from_secs(30), &mut n.agent, || async {
            let out = cluster.kubectl(&["logs", "talk"]);
            (out.status.success() && out.stdout == b"first\nsecond\n").then_some(())
        })
        .await;
        assert_eq!(n.cluster.kubectl_ok(&["logs", "talk"]), "first\nsecond\n");
        assert_eq!(n.cluster.kubectl_ok(&["logs", "talk", "--tail=1"]), "second\n");
        // logs -f: a line written later shows up on the open stream.
        let mut follow = n.cluster.kubectl_cmd("default", &["logs", "-f", "talk"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut out = follow.stdout.take().unwrap();
        // The stream is open once it has printed what was there before:
        // what the execs write next can only come over it.
        let (mut out, mut buf) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !String::from_utf8_lossy(&buf).contains("second\n") {
                let k = out.read(&mut chunk).unwrap();
                assert!(k > 0, "kubectl logs -f ended: {}", String::from_utf8_lossy(&buf));
                buf.extend_from_slice(&chunk[..k]);
            }
            (out, buf)
        })
        .await
        .unwrap();
        for version in e2e::kubectl_versions(&["1.27", "1.33", "default"]) {
            let exec = n.cluster.kubectl_v(version, &["exec", "talk", "--", "sh", "-c", "echo exec-$((6*7)); echo from-exec > /proc/1/fd/1"]);
            assert!(exec.status.success(), "kubectl {version} exec: {}", String::from_utf8_lossy(&exec.stderr));
            assert_eq!(String::from_utf8_lossy(&exec.stdout), "exec-42\n", "kubectl {version} exec");
        }
        let exit = n.cluster.kubectl_v("default", &["exec", "talk", "--", "sh", "-c", "exit 7"]);
        assert_eq!(exit.status.code(), Some(7), "exit code travels back: {}", String::from_utf8_lossy(&exit.stderr));
        let got = tokio::task::spawn_blocking(move || {
            let mut chunk = [0u8; 1024];
            while !String::from_utf8_lossy(&buf).contains("from-exec") {
                let k = out.read(&mut chunk).unwrap();
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
        .await
        .unwrap();
        let _ = follow.kill();
        let _ = follow.wait();
        assert!(got.starts_with("first\nsecond\n") && got.contains("from-exec"), "{got}");
        pods.delete("talk", &DeleteParams::default()).await.unwrap();
        wait_pod_gone(&pods, "talk", &mut n.agent).await;
        assert_runtime_empty(&n).await;
    });
}

/// Waits (90 s at most) for pod `name` to be Running.
async fn wait_running(pods: &Api<Pod>, name: &str, agent: &mut Agent) -> Pod {
    wait_pod(pods, name, "Running", Duration::from_secs(90), agent, |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).await
}

async fn wait_pod_gone(pods: &Api<Pod>, name: &str, agent: &mut Agent) {
    let name = name.to_string();
    eventually("pod object gone", Duration::from_secs(60), agent, || {
        let (pods, name) = (pods.clone(), name.clone());
        async move { pod_gone(&pods, &name).await.then_some(()) }
    })
    .await;
}

/// Spawns a `kubectl port-forward` and returns it with the local port it
/// chose (from its "Forwarding from 127.0.0.1:<port> -> <remote>" line).
fn port_forward(cluster: &e2e::Cluster, version: &str, target: &str, remote: u16) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = cluster
        .kubectl_cmd(version, &["port-forward", target, &format!(":{remote}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let port = first.strip_prefix("Forwarding from 127.0.0.1:").and_then(|r| r.split_once(' ')).and_then(|(p, _)| p.parse().ok());
    let Some(port) = port else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("kubectl {version} port-forward {target}: {first:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Keep draining kubectl's "Handling connection" lines.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

/// The rest of kubectl's pod streams, for kubectl 1.27, 1.33 and this
/// machine's: `kubectl port-forward` to a pod and to a Service (through
/// `pods/portforward`: the runtime dials the port inside the pod's network
/// namespace), `kubectl attach` and `kubectl run -i --rm` (through
/// `pods/attach`: the container's own stdin and stdout), and `kubectl cp`
/// (exec with stdin, both ways), and the apiserver's HTTP proxy to pods and
/// Services (`kubectl get --raw`, `kubectl proxy`). Bad requests get a Status
/// with the reason.
#[test]
fn kubectl_port_forward_attach_run_and_cp() {
    in_netns("rkt-agent4", || async move {
        let mut n = node("10.215.5.0/24").await;
        let client = n.cluster.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let web = serde_json::json!({"containers": [{"name": "web", "image": BUSYBOX_IMAGE,
            "command": ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"],
            "ports": [{"name": "http", "containerPort": 8080}]}]});
        let mut web = pod("web", &n.name, web);
        web.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        pods.create(&PostParams::default(), &web).await.unwrap();
        let ticker = serde_json::json!({"containers": [{"name": "t", "image": BUSYBOX_IMAGE,
            "command": ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"]}]});
        pods.create(&PostParams::default(), &pod("ticker", &n.name, ticker)).await.unwrap();
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
        let svc = serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}})).unwrap();
        services.create(&PostParams::default(), &svc).await.unwrap();
        for name in ["web", "ticker"] {
            wait_running(&pods, name, &mut n.agent).await;
        }

        // port-forward: to the pod's port, and to the Service's port 80,
        // which kubectl maps to the pod's named port "http" (8080).
        for (version, target, remote) in [("1.27", "pod/web", 8080), ("1.33", "pod/web", 8080), ("default", "pod/web", 8080), ("default", "svc/web", 80)] {
            if !e2e::have_kubectl(version) {
                continue;
            }
            let (mut child, port) = port_forward(&n.cluster, version, target, remote);
            let got = eventually("a page through port-forward", Duration::from_secs(20), &mut n.agent, || async move {
                http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/").ok().filter(|r| r.contains("200 OK"))
            })
            .await;
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(body(&got), "hello-from-web\n", "kubectl {version} port-forward {target}");
        }

        // The apiserver's proxy: to the pod (by port, and by its first
        // declared port), to the Service through its endpoints, and all of
        // it through `kubectl proxy`. (No endpoints controller runs here:
        // the test writes the Endpoints.)
        let web_ip = pods.get("web").await.unwrap().status.unwrap().pod_ip.unwrap();
        let eps: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(serde_json::json!({"metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": web_ip}], "ports": [{"port": 8080, "protocol": "TCP"}]}]})).unwrap();
        Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(client.clone(), "default").create(&PostParams::default(), &eps).await.unwrap();
        for path in ["/api/v1/namespaces/default/pods/web:8080/proxy/", "/api/v1/namespaces/default/pods/web/proxy/index.html", "/api/v1/namespaces/default/services/web:80/proxy/", "/api/v1/namespaces/default/services/web/proxy/"] {
            assert_eq!(n.cluster.kubectl_ok(&["get", "--raw", path]), "hello-from-web\n", "{path}");
        }
        {
            use std::io::BufRead;
            let mut child = n.cluster.kubectl_cmd("default", &["proxy", "--port=0"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
            let first = std::io::BufReader::new(child.stdout.take().unwrap()).lines().next().and_then(|l| l.ok()).unwrap_or_default();
            let port: u16 = first.rsplit(':').next().and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("kubectl proxy said {first:?}"));
            let got = http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/api/v1/namespaces/default/services/web/proxy/");
            let _ = child.kill();
            let _ = child.wait();
            let got = got.unwrap();
            assert!(got.contains("200 OK") && body(&got) == "hello-from-web\n", "{got}");
        }
        let svc = serde_json::from_value(serde_json::json!({"metadata": {"name": "lonely"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})).unwrap();
        services.create(&PostParams::default(), &svc).await.unwrap();
        for (path, code, message) in [
            ("services/lonely/proxy/", 503, "no endpoints available for service \"lonely\""),
            ("services/web:81/proxy/", 503, "no service port 81 found for service \"web\""),
            ("services/nosuch/proxy/", 404, "services \"nosuch\" not found"),
            ("pods/web:http/proxy/", 400, "invalid port \"http\" for pod web"),
        ] {
            let req = http::Request::get(format!("/api/v1/namespaces/default/{path}")).body(Vec::new()).unwrap();
            match client.request_text(req).await {
                Err(kube::Error::Api(s)) => assert!(s.code == code && s.message.contains(message), "{path}: {s:?}"),
                other => panic!("{path}: expected {code}, got {other:?}"),
            }
        }

        // attach (no stdin): the container's output from now on.
        for version in e2e::kubectl_versions(&["1.27", "1.33", "default"]) {
            let mut child = n.cluster.kubectl_cmd(version, &["attach", "ticker"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
            let mut out = child.stdout.take().unwrap();
            let seen = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 256];
                // Two whole ticks: attach streams what the container prints while attached.
                while String::from_utf8_lossy(&buf).matches('\n').count() < 2 {
                    match out.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
            .await
            .unwrap();
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            assert!(seen.lines().take(2).all(|l| l.starts_with("tick-")) && seen.lines().count() >= 2, "kubectl {version} attach printed {seen:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }

        // run -i --rm: a new pod whose stdin is ours; its exit code is kubectl's;
        // the pod is deleted afterwards.
        for version in e2e::kubectl_versions(&["1.27", "1.33", "default"]) {
            let name = format!("runner-{}", version.replace('.', ""));
            let overrides = format!(r#"{{"apiVersion": "v1", "spec": {{"nodeName": "{}", "terminationGracePeriodSeconds": 1}}}}"#, n.name);
            let args = ["run", name.as_str(), "-i", "--rm", "--restart=Never", &format!("--image={BUSYBOX_IMAGE}"), &format!("--overrides={overrides}"), "--", "sh", "-c", "read l; echo got:$l; exit 3"];
            let out = n.cluster.kubectl_stdin(version, &args, "hi-there\n");
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains("got:hi-there"), "kubectl {version} run -i: stdout {stdout:?}, stderr {stderr}");
            assert_eq!(out.status.code(), Some(3), "kubectl {version} run -i: the container's exit code; stderr {stderr}");
            wait_pod_gone(&pods, &name, &mut n.agent).await;
        }

        // cp: into the container (tar xf - on stdin) and back out (tar cf -).
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("note.txt");
        std::fs::write(&local, "copied in\n").unwrap();
        for version in e2e::kubectl_versions(&["1.27", "default"]) {
            let out = n.cluster.kubectl_v(version, &["cp", local.to_str().unwrap(), "web:/tmp/note.txt"]);
            assert!(out.status.success(), "kubectl {version} cp in: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(n.cluster.kubectl_ok(&["exec", "web", "--", "cat", "/tmp/note.txt"]), "copied in\n");
            let back = dir.path().join(format!("back-{version}.html"));
            let out = n.cluster.kubectl_v(version, &["cp", "web:/www/index.html", back.to_str().unwrap()]);
            assert!(out.status.success(), "kubectl {version} cp out: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(std::fs::read_to_string(&back).unwrap(), "hello-from-web\n");
        }

        // Bad requests: a Status naming the problem, from the agent via the apiserver.
        for (path, code, message) in [
            ("pods/ticker/attach?container=t", 400, "you must specify at least 1 of stdin, stdout, stderr"),
            ("pods/web/portforward?ports=http", 400, "unable to parse \"http\" as a port"),
            ("pods/web/exec?command=true&container=nope", 400, "container nope is not valid for pod web"),
            ("pods/nosuch/portforward?ports=80", 404, "pods \"nosuch\" not found"),
        ] {
            let req = http::Request::post(format!("/api/v1/namespaces/default/{path}")).body(Vec::new()).unwrap();
            match client.request_text(req).await {
                Err(kube::Error::Api(s)) => {
                    assert_eq!(s.code, code, "{path}: {s:?}");
                    assert!(s.message.contains(message), "{path}: {s:?}");
                }
                other => panic!("{path}: expected a {code} Status, got {other:?}"),
            }
        }

        for name in ["web", "ticker"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
            wait_pod_gone(&pods, name, &mut n.agent).await;
        }
        assert_runtime_empty(&n).await;
    });
}

/// `kubectl debug` (1.27, 1.33 and this machine's): an ephemeral container
/// added through `pods/ephemeralcontainers` starts in the running pod, in
/// its target's process namespace (it sees the target's `sleep`), with our
/// stdin attached; it runs once, its status and logs are reported, and the
/// pod's own container is untouched. Changing or removing an ephemeral
/// container, or giving one ports, is refused.
#[test]
fn kubectl_debug_runs_an_ephemeral_container() {
    in_netns("rkt-agent5", || async move {
        let mut n = node("10.215.6.0/24").await;
        let client = n.cluster.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = serde_json::json!({"containers": [{"name": "app", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}]});
        pods.create(&PostParams::default(), &pod("target", &n.name, spec)).await.unwrap();
        let running = wait_running(&pods, "target", &mut n.agent).await;
        let app_id = status_of(&running, "app").and_then(|s| s.container_id.clone()).unwrap();

        let versions = e2e::kubectl_versions(&["1.27", "1.33", "default"]);
        let debugger = |version: &str| format!("dbg-{}", version.replace('.', ""));
        for &version in &versions {
            let name = debugger(version);
            let image = format!("--image={BUSYBOX_IMAGE}");
            let container = format!("--container={name}");
            let args = ["debug", "target", "-i", &image, "--target=app", &container, "--", "sh", "-c", "read l; echo dbg:$l; ps -o args"];
            // Our stdin stays open until kubectl is done: the debugger is
            // not `stdinOnce`, so closing it would end the attach (as with
            // the kubelet) before the output arrives.
            let mut child = n
                .cluster
                .kubectl_cmd(version, &args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"hi\n").unwrap();
            let pid = child.id().to_string();
            let waiting = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
            let Ok(out) = tokio::time::timeout(Duration::from_secs(90), waiting).await else {
                let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
                panic!("kubectl {version} debug still running after 90 s");
            };
            let out = out.unwrap();
            drop(stdin);
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "kubectl {version} debug: {stderr}\n{stdout}");
            assert!(stdout.contains("dbg:hi"), "kubectl {version} debug: stdin reaches the debugger: {stdout}\n{stderr}");
            assert!(stdout.lines().any(|l| l.trim() == "sleep 3600"), "kubectl {version} debug: the target's process is visible: {stdout}");
            let p = wait_pod(&pods, "target", "the debugger terminated", Duration::from_secs(30), &mut n.agent, |p| {
                p.status.as_ref().and_then(|s| s.ephemeral_container_statuses.as_ref()).into_iter().flatten().any(|s| {
                    s.name == name && s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
                })
            })
            .await;
            let ps = p.status.as_ref().unwrap();
            assert_eq!(ps.phase.as_deref(), Some("Running"));
            assert_eq!(status_of(&p, "app").and_then(|s| s.container_id.clone()), Some(app_id.clone()), "the pod's container is untouched");
            assert!(ps.ephemeral_container_statuses.iter().flatten().all(|s| s.restart_count == 0 && !s.ready));
            assert!(n.cluster.kubectl_ok(&["logs", "target", "-c", &name]).contains("dbg:hi"));
        }

        // Refused: removing or changing an ephemeral container, one with ports.
        let eph = |body: serde_json::Value| {
            let req = http::Request::put("/api/v1/namespaces/default/pods/target/ephemeralcontainers").header("content-type", "application/json").body(serde_json::to_vec(&body).unwrap()).unwrap();
            let client = client.clone();
            async move { client.request::<serde_json::Value>(req).await }
        };
        let mut current = serde_json::to_value(pods.get("target").await.unwrap()).unwrap();
        let list = current["spec"]["ephemeralContainers"].as_array().unwrap().clone();
        let mut removed = current.clone();
        removed["spec"]["ephemeralContainers"] = serde_json::json!(list[1..]);
        let mut changed = current.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = serde_json::json!("other:1");
        let mut ports = current.clone();
        ports["spec"]["ephemeralContainers"].as_array_mut().unwrap().push(serde_json::json!({"name": "p", "image": BUSYBOX_IMAGE, "ports": [{"containerPort": 80}]}));
        let first = debugger(versions[0]);
        for (body, message) in [
            (removed, format!("Forbidden: existing ephemeral containers \"{first}\" may not be removed")),
            (changed, format!("Forbidden: existing ephemeral containers \"{first}\" may not be changed")),
            (ports, format!("spec.ephemeralContainers[{}].ports: Forbidden: cannot be set for an Ephemeral Container", versions.len())),
        ] {
            match eph(body).await {
                Err(kube::Error::Api(s)) => assert!(s.code == 422 && s.message.contains(&message), "{s:?}"),
                other => panic!("expected 422 ({message}), got {other:?}"),
            }
        }
        current["spec"]["ephemeralContainers"] = serde_json::json!(list);
        assert_eq!(pods.get("target").await.unwrap().spec.unwrap().ephemeral_containers.unwrap().len(), versions.len());

        pods.delete("target", &DeleteParams::default()).await.unwrap();
        wait_pod_gone(&pods, "target", &mut n.agent).await;
        assert_runtime_empty(&n).await;
    });
}
