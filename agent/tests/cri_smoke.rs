//! CRI smoke test against a real, private containerd (needs root, containerd,
//! runc, the CNI plugins and busybox-static — CI installs them and runs as root).
//!
//! One pod end to end, as a kubelet would drive it: RunPodSandbox, then
//! CreateContainer + StartContainer (busybox httpd serving a file), the pod IP
//! from PodSandboxStatus, an HTTP GET from the node to that IP, ExecSync,
//! then stop/remove and empty lists. Each test is its own node: a network
//! namespace (`e2e::netns`) holding containerd's bridge, the pods' veths and
//! the node's iptables rules, with no route off the machine. A second private containerd runs at the same time on another
//! podCIDR and must not see the first one's pods. Everything is torn down by
//! `PrivateContainerd`'s Drop even when an assertion fails.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use proto::runtime::v1::*;
use rkube_agent::runtime::containerd::{PrivateContainerd, PrivateContainerdConfig};
use rkube_agent::runtime::cri::CriClient;
use rkube_agent::runtime::images::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use e2e::netns::{in_netns, ip, link_exists, run_checked, Netns};

const PAGE: &str = "hello from an rkube pod";

fn sandbox_config(name: &str, uid: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: name.into(), uid: uid.into(), namespace: "default".into(), attempt: 0 }),
        hostname: name.into(),
        log_directory: log_dir.join(uid).to_string_lossy().into_owned(),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                // Pod network and IPC namespaces, a PID namespace per container: the kubelet's defaults.
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn web_container(port: u16) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: "web".into(), attempt: 0 }),
        image: Some(ImageSpec { image: BUSYBOX_IMAGE.into(), ..Default::default() }),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![format!("mkdir -p /www && echo '{PAGE}' > /www/index.html && exec httpd -f -p {port} -h /www")],
        log_path: "web/0.log".into(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// Runs a pod with one httpd container; returns (sandbox id, container id, pod IP).
async fn run_web_pod(cri: &mut CriClient, name: &str, log_dir: &Path, port: u16) -> (String, String, Ipv4Addr) {
    let config = sandbox_config(name, &format!("uid-{name}"), log_dir);
    let pod_id = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let ctr_id = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(web_container(port)),
            // containerd 1.6 panics without it.
            sandbox_config: Some(config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    cri.runtime.start_container(StartContainerRequest { container_id: ctr_id.clone() }).await.expect("StartContainer");
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod_id.clone(), verbose: false })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("sandbox status");
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    let ip: Ipv4Addr = status.network.expect("network status").ip.parse().expect("pod IP");
    (pod_id, ctr_id, ip)
}

/// HTTP/1.0 GET from the host, retried while httpd starts.
fn http_get(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("GET http://{addr}/ failed: {other:?}"),
        }
    }
}

async fn remove_pod(cri: &mut CriClient, pod_id: &str, ctr_id: &str) {
    cri.runtime.stop_container(StopContainerRequest { container_id: ctr_id.into(), timeout: 2 }).await.expect("StopContainer");
    cri.runtime.remove_container(RemoveContainerRequest { container_id: ctr_id.into() }).await.expect("RemoveContainer");
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod_id.into() }).await.expect("StopPodSandbox");
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod_id.into() }).await.expect("RemovePodSandbox");
}

async fn counts(cri: &mut CriClient) -> (usize, usize) {
    let pods = cri.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap().into_inner().items.len();
    let ctrs = cri.runtime.list_containers(ListContainersRequest { filter: None }).await.unwrap().into_inner().containers.len();
    (pods, ctrs)
}


fn mounted_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    rkube_agent::runtime::containerd::mounts_under(&info, dir).into_iter().map(|p| p.display().to_string()).collect()
}

#[test]
fn cri_pod_lifecycle_on_private_containerd() {
    in_netns("rkt-cri", || async move {
        // Two instances at once, each with its own podCIDR (unlikely to clash with real networks).
        let (a, b) = tokio::join!(
            PrivateContainerd::start(PrivateContainerdConfig::new("10.213.7.0/24".parse().unwrap())),
            PrivateContainerd::start(PrivateContainerdConfig::new("10.213.8.0/24".parse().unwrap())),
        );
        let (a, b) = (a.expect("start containerd A"), b.expect("start containerd B"));
        assert_ne!(a.socket(), b.socket());
        assert_ne!(a.network().bridge, b.network().bridge);

        let mut cri = a.client().await.unwrap();
        let version = cri.version().await.unwrap();
        assert_eq!(version.runtime_name, "containerd");
        assert_eq!(version.runtime_api_version, "v1");
        for image in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
            assert!(cri.image_present(image).await.unwrap(), "{image} imported");
        }
        assert!(!cri.image_present("docker.io/rkube/absent:1").await.unwrap());

        // A pod in each runtime, in parallel.
        let mut cri_b = b.client().await.unwrap();
        let (a_logs, b_logs) = (a.layout().pod_logs.clone(), b.layout().pod_logs.clone());
        let ((pod_a, ctr_a, ip_a), (pod_b, ctr_b, ip_b)) =
            tokio::join!(run_web_pod(&mut cri, "web-a", &a_logs, 8080), run_web_pod(&mut cri_b, "web-b", &b_logs, 8081));
        assert!(a.network().subnet.contains(&ip_a), "{ip_a} in {}", a.network().subnet);
        assert!(b.network().subnet.contains(&ip_b), "{ip_b} in {}", b.network().subnet);
        assert_ne!(ip_a, a.network().gateway(), "the gateway address is the bridge's");
        assert!(link_exists(&a.network().bridge) && link_exists(&b.network().bridge));

        // Host → pod over each private bridge.
        let page_a = tokio::task::spawn_blocking(move || http_get(SocketAddr::from((ip_a, 8080)))).await.unwrap();
        assert!(page_a.starts_with("HTTP/1.") && page_a.contains(PAGE), "{page_a}");
        let page_b = tokio::task::spawn_blocking(move || http_get(SocketAddr::from((ip_b, 8081)))).await.unwrap();
        assert!(page_b.contains(PAGE), "{page_b}");

        // Each runtime sees only its own pod.
        assert_eq!(counts(&mut cri).await, (1, 1));
        assert_eq!(counts(&mut cri_b).await, (1, 1));

        // ExecSync: output and exit codes come back.
        let exec = |cmd: &[&str]| ExecSyncRequest { container_id: ctr_a.clone(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 };
        let out = cri.runtime.exec_sync(exec(&["cat", "/www/index.html"])).await.unwrap().into_inner();
        assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stdout).trim()), (0, PAGE));
        let out = cri.runtime.exec_sync(exec(&["sh", "-c", "echo oops >&2; exit 3"])).await.unwrap().into_inner();
        assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stderr).trim()), (3, "oops"));
        let out = cri.runtime.exec_sync(exec(&["hostname"])).await.unwrap().into_inner();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web-a");

        // The container log is written in the CRI format under the sandbox's log directory.
        let status = cri
            .runtime
            .container_status(ContainerStatusRequest { container_id: ctr_a.clone(), verbose: false })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
        assert_eq!(status.image.unwrap().image, BUSYBOX_IMAGE);

        // Tear down pod A through CRI; B's pod stays until B's Drop/stop removes it.
        remove_pod(&mut cri, &pod_a, &ctr_a).await;
        assert_eq!(counts(&mut cri).await, (0, 0));
        assert_eq!(counts(&mut cri_b).await, (1, 1));
        let _ = (pod_b, ctr_b);

        // stop(): B still has a pod, which tear-down removes via CRI.
        let (a_dir, a_bridge) = (a.layout().dir.clone(), a.network().bridge.clone());
        let (b_dir, b_bridge, b_sock) = (b.layout().dir.clone(), b.network().bridge.clone(), b.socket().to_path_buf());
        drop(cri);
        drop(cri_b);
        a.stop().await.expect("stop A");
        b.stop().await.expect("stop B");
        for (dir, bridge) in [(&a_dir, &a_bridge), (&b_dir, &b_bridge)] {
            assert!(!dir.exists(), "{} removed", dir.display());
            assert!(!link_exists(bridge), "bridge {bridge} removed");
            assert_eq!(mounted_under(dir), Vec::<String>::new());
        }
        assert!(!b_sock.exists());
    });
}

/// Drop alone (as on a panic) must also clean up a runtime with a live pod.
#[test]
fn drop_cleans_up_running_pod() {
    in_netns("rkt-drop", || async move {
        let ctrd = PrivateContainerd::start(PrivateContainerdConfig::new("10.213.9.0/24".parse().unwrap())).await.expect("start");
        let mut cri = ctrd.client().await.unwrap();
        let logs = ctrd.layout().pod_logs.clone();
        let (_pod, _ctr, ip) = run_web_pod(&mut cri, "web-c", &logs, 8082).await;
        let page = tokio::task::spawn_blocking(move || http_get(SocketAddr::from((ip, 8082)))).await.unwrap();
        assert!(page.contains(PAGE), "{page}");
        let dir = ctrd.layout().dir.clone();
        let bridge = ctrd.network().bridge.clone();
        let socket = ctrd.socket().to_string_lossy().into_owned();
        drop(cri);
        drop(ctrd);
        assert!(!dir.exists(), "{} removed", dir.display());
        assert!(!link_exists(&bridge), "bridge {bridge} removed");
        assert_eq!(mounted_under(&dir), Vec::<String>::new());
        // No shim is left serving our (gone) socket.
        let shims = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|c| c.split(|b| *b == 0).any(|a| a == socket.as_bytes()))
            .count();
        assert_eq!(shims, 0, "shims still running for {socket}");
    });
}

/// containerd dies with a pod running (CRI cannot help any more): Drop must
/// still kill the shim and the pod's processes, free its netns and bridge.
#[test]
fn drop_cleans_up_after_containerd_crash() {
    in_netns("rkt-crash", || async move {
        let ctrd = PrivateContainerd::start(PrivateContainerdConfig::new("10.213.10.0/24".parse().unwrap())).await.expect("start");
        let mut cri = ctrd.client().await.unwrap();
        let logs = ctrd.layout().pod_logs.clone();
        let (pod_id, _ctr, ip) = run_web_pod(&mut cri, "web-d", &logs, 8083).await;
        let sandbox_id = pod_id.clone();
        let page = tokio::task::spawn_blocking(move || http_get(SocketAddr::from((ip, 8083)))).await.unwrap();
        assert!(page.contains(PAGE), "{page}");
        let netns = cri
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod_id.clone(), verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info
            .get("info")
            .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
            .and_then(|v| v["runtimeSpec"]["linux"]["namespaces"].as_array().cloned())
            .and_then(|ns| ns.iter().find(|n| n["type"] == "network").and_then(|n| n["path"].as_str().map(String::from)))
            .expect("netns path in verbose sandbox status");
        assert!(Path::new(&netns).exists());
        assert_eq!(processes_with_args(&["httpd", "-f", "-p", "8083"]), 1, "httpd of web-d running");
        drop(cri);
        let pid = ctrd.pid().unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        let (dir, bridge, net_name) = (ctrd.layout().dir.clone(), ctrd.network().bridge.clone(), ctrd.network().name.clone());
        let (pods_chain, masq_chain) = ctrd.network().chains();
        let rules = iptables_rules();
        for chain in [&pods_chain, &masq_chain] {
            assert!(rules.contains(&format!("-j {chain}")), "node rules of {net_name}: jump to {chain} missing:\n{rules}");
        }
        drop(ctrd);
        // The node's chains and jumps are gone, and no rule names the pod.
        let rules = iptables_rules();
        assert!(!rules.contains(&net_name), "{rules}");
        assert!(!rules.contains(&pods_chain) && !rules.contains(&masq_chain), "{rules}");
        assert!(!rules.contains(&format!("{ip}/32")), "{rules}");
        assert!(!Path::new(&netns).exists(), "netns {netns} removed");
        let cache: Vec<String> = std::fs::read_dir("/var/lib/cni/results")
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(!cache.iter().any(|f| f.contains(&net_name) || f.contains(&sandbox_id)), "CNI cache left: {cache:?}");
        assert!(!dir.exists(), "{} removed", dir.display());
        assert!(!link_exists(&bridge), "bridge {bridge} removed");
        assert_eq!(mounted_under(&dir), Vec::<String>::new());
        // The pod's httpd was killed. (Checked through /proc, not by dialling the
        // pod IP: with the bridge gone that address would route off the machine.)
        assert_eq!(processes_with_args(&["httpd", "-f", "-p", "8083"]), 0, "httpd of web-d still running");
    });
}

/// The filter and nat tables as `iptables-save` prints them.
fn iptables_rules() -> String {
    let out = std::process::Command::new("iptables-save").output().expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many processes have a command line starting with `prefix`.
fn processes_with_args(prefix: &[&str]) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.len() >= prefix.len() && prefix.iter().zip(&args).all(|(p, a)| p.as_bytes() == *a)
        })
        .count()
}

/// The pod network's node-wide rules (kubenet's way: FORWARD accepts the
/// bridge's traffic; what pods send beyond the non-masquerade CIDR leaves
/// with the node's address) are what takes a pod's packets off its node.
///
/// The node and a host outside it are network namespaces joined by a veth,
/// neither with a route off the machine. The node's FORWARD policy is DROP,
/// and the outside host has no route back to the pods: a pod's request only
/// arrives because the node accepts and masquerades it, and the server sees
/// the node's address. With the rules removed the same request gets nowhere.
#[test]
fn node_rules_take_pod_traffic_beyond_the_node() {
    let outside = Netns::new("rko");
    // The outside host: busybox httpd with a CGI script that says who asked.
    let www = tempfile::tempdir().unwrap();
    let cgi = www.path().join("cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap();
    std::fs::write(cgi.join("who"), "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"from $REMOTE_ADDR\"\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(cgi.join("who")).status().unwrap();
    outside.spawn(&["busybox", "httpd", "-f", "-p", "8080", "-h", &www.path().to_string_lossy()], &www.path().join("httpd.log"));
    let outside_name = outside.name.clone();
    in_netns("rkn", move || async move {
        ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", &outside_name]);
        ip(&["addr", "add", "10.213.98.1/24", "dev", "eth0"]);
        ip(&["link", "set", "eth0", "up"]);
        ip(&["-n", &outside_name, "addr", "add", "10.213.98.2/24", "dev", "eth1"]);
        ip(&["-n", &outside_name, "link", "set", "eth1", "up"]);
        run_checked(std::process::Command::new("sysctl").args(["-q", "-w", "net.ipv4.ip_forward=1"]));
        run_checked(std::process::Command::new("iptables").args(["-w", "-P", "FORWARD", "DROP"]));
        let ctrd = PrivateContainerd::start(PrivateContainerdConfig::new("10.213.11.0/24".parse().unwrap())).await.expect("start");
        let mut cri = ctrd.client().await.unwrap();
        let (_pod, ctr, pod_ip) = run_web_pod(&mut cri, "net-out", &ctrd.layout().pod_logs.clone(), 8084).await;
        let ask = ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: ["sh", "-c", "printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.213.98.2 8080"].map(String::from).to_vec(),
            timeout: 10,
        };
        // httpd in the other namespace may still be starting: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let out = cri.runtime.exec_sync(ask.clone()).await.unwrap().into_inner();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("from ") || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(answer.contains("from ") && answer.contains("10.213.98.1"), "the server should see the node's address: {answer:?}");
        assert!(!answer.contains(&pod_ip.to_string()), "{answer:?}");
        // Without the node's rules the packet is dropped in FORWARD.
        assert_eq!(ctrd.network().remove_node_rules(None), Vec::<String>::new());
        let out = cri.runtime.exec_sync(ask).await.unwrap().into_inner();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("from "), "reached the server without the node rules: {out:?}");
        drop(cri);
        ctrd.stop().await.expect("tear-down");
    });
}
