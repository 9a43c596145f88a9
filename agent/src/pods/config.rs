//! From a Pod to CRI requests (the kubelet's `generatePodSandboxConfig` and
//! `generateContainerConfig`): pure functions, so what we ask the runtime
//! for can be read and tested without a runtime.
//!
//! The labels matter: the kubelet finds its sandboxes and containers again
//! (after a restart) by the `io.kubernetes.*` labels it set on them
//! ([`crate::labels`]), not by any state of its own.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use proto::runtime::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};

use crate::labels::{CONTAINER_NAME_LABEL, INIT_CONTAINER_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};

/// Marks the kubelet's own objects (`io.kubernetes.container.logpath` is gone; this is kept).
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// CPU shares for a request in millicores (`MilliCPUToShares`): 1024 per
/// core, at least 2 (the kernel's minimum).
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return 2;
    }
    (milli * 1024 / 1000).max(2)
}

/// CFS quota for a limit in millicores over a 100 ms period (`MilliCPUToQuota`): at least 1 ms.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / 1000).max(1000)
}

/// The sandbox's log directory: `<root>/<namespace>_<name>_<uid>` (as `/var/log/pods`).
pub fn pod_log_dir(root: &Path, pod: &Pod) -> String {
    let m = &pod.metadata;
    root.join(format!("{}_{}_{}", m.namespace.as_deref().unwrap_or("default"), m.name.as_deref().unwrap_or(""), m.uid.as_deref().unwrap_or("")))
        .to_string_lossy()
        .into_owned()
}

fn pod_identity_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    [
        (POD_NAME_LABEL.to_string(), m.name.clone().unwrap_or_default()),
        (POD_NAMESPACE_LABEL.to_string(), m.namespace.clone().unwrap_or_default()),
        (POD_UID_LABEL.to_string(), m.uid.clone().unwrap_or_default()),
    ]
    .into()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.as_ref();
    NamespaceOption {
        network: if host_network(pod) { NamespaceMode::Node } else { NamespaceMode::Pod } as i32,
        pid: if spec.and_then(|s| s.share_process_namespace).unwrap_or(false) { NamespaceMode::Pod } else { NamespaceMode::Container } as i32,
        ipc: if spec.and_then(|s| s.host_ipc).unwrap_or(false) { NamespaceMode::Node } else { NamespaceMode::Pod } as i32,
        ..Default::default()
    }
}

/// `RunPodSandbox`'s config.
pub fn sandbox_config(pod: &Pod, attempt: u32, log_root: &Path) -> PodSandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.extend(pod_identity_labels(pod));
    let mut annotations: HashMap<String, String> = m.annotations.clone().unwrap_or_default().into_iter().collect();
    annotations.insert("kubernetes.io/config.source".into(), "api".into());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let psc = spec.security_context.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().or_else(|| m.name.clone()).unwrap_or_default();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: m.name.clone().unwrap_or_default(), uid: m.uid.clone().unwrap_or_default(), namespace: m.namespace.clone().unwrap_or_default(), attempt }),
        hostname: if host_network(pod) { String::new() } else { hostname },
        log_directory: pod_log_dir(log_root, pod),
        labels,
        annotations,
        port_mappings,
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc.run_as_user.map(|v| proto::runtime::v1::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| proto::runtime::v1::Int64Value { value: v }),
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                ..Default::default()
            }),
            sysctls: psc.sysctls.iter().flatten().map(|s| (s.name.clone(), s.value.clone())).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// An environment variable's value: `value`, or the downward-API `fieldRef`s
/// a pod commonly uses. `$(VAR)` references to earlier variables are expanded.
pub fn env(pod: &Pod, c: &Container, pod_ip: &str, host_ip: &str) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = Vec::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &out)
        } else if let Some(f) = e.value_from.as_ref().and_then(|vf| vf.field_ref.as_ref()) {
            let m = &pod.metadata;
            match f.field_path.as_str() {
                "metadata.name" => m.name.clone().unwrap_or_default(),
                "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
                "metadata.uid" => m.uid.clone().unwrap_or_default(),
                "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
                "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
                "status.podIP" => pod_ip.to_string(),
                "status.hostIP" => host_ip.to_string(),
                _ => String::new(),
            }
        } else {
            String::new()
        };
        out.push(KeyValue { key: e.name.clone(), value });
    }
    out
}

/// `$(NAME)` → value of an earlier variable; `$$` → `$`; unknown references stay.
pub fn expand(s: &str, vars: &[KeyValue]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let (Some(t), Some(end)) = (tail.strip_prefix("$("), tail.find(')')) {
            let name = &t[..end - 2];
            match vars.iter().rev().find(|kv| kv.key == name) {
                Some(kv) => out.push_str(&kv.value),
                None => out.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The container's cgroup settings from its requests and limits.
pub fn resources(c: &Container) -> LinuxContainerResources {
    let res = c.resources.clone().unwrap_or_default();
    let get = |m: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str, milli: bool| {
        m.as_ref().and_then(|m| m.get(k)).and_then(|q| if milli { machinery::quantity::parse_milli(&q.0).ok() } else { machinery::quantity::parse_value(&q.0).ok() })
    };
    let cpu_limit = get(&res.limits, "cpu", true);
    // A request defaults to the limit.
    let cpu_request = get(&res.requests, "cpu", true).or(cpu_limit).unwrap_or(0);
    let period = 100_000;
    LinuxContainerResources {
        cpu_shares: milli_cpu_to_shares(cpu_request),
        cpu_period: if cpu_limit.is_some() { period } else { 0 },
        cpu_quota: cpu_limit.map(|l| milli_cpu_to_quota(l, period)).unwrap_or(0),
        memory_limit_in_bytes: get(&res.limits, "memory", false).unwrap_or(0),
        ..Default::default()
    }
}

/// `CreateContainer`'s config for attempt `attempt` of `c`.
pub fn container_config(pod: &Pod, c: &Container, image: &str, attempt: u32, init: bool, pod_ip: &str, host_ip: &str) -> ContainerConfig {
    let mut labels = pod_identity_labels(pod);
    labels.insert(CONTAINER_NAME_LABEL.into(), c.name.clone());
    if init {
        labels.insert(INIT_CONTAINER_LABEL.into(), "true".into());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let annotations: HashMap<String, String> = [
        (CONTAINER_RESTART_COUNT.to_string(), attempt.to_string()),
        ("io.kubernetes.container.terminationMessagePath".to_string(), c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into())),
        ("io.kubernetes.pod.terminationGracePeriod".to_string(), spec.termination_grace_period_seconds.unwrap_or(30).to_string()),
    ]
    .into();
    let sc = c.security_context.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: c.name.clone(), attempt }),
        image: Some(ImageSpec { image: image.to_string(), ..Default::default() }),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env(pod, c, pod_ip, host_ip),
        labels,
        annotations,
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources(c)),
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged: sc.privileged.unwrap_or(false),
                run_as_user: sc.run_as_user.or(psc.run_as_user).map(|v| proto::runtime::v1::Int64Value { value: v }),
                run_as_group: sc.run_as_group.or(psc.run_as_group).map(|v| proto::runtime::v1::Int64Value { value: v }),
                readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
                no_new_privs: sc.allow_privilege_escalation == Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "busybox", "command": ["sh"], "args": ["-c", "x"],
                "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-$$-$(Z)"}, {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn sandbox() {
        let s = sandbox_config(&pod(), 2, Path::new("/var/log/pods"));
        let m = s.metadata.unwrap();
        assert_eq!((m.name.as_str(), m.namespace.as_str(), m.uid.as_str(), m.attempt), ("web", "ns1", "u-1", 2));
        assert_eq!(s.hostname, "web");
        assert_eq!(s.log_directory, "/var/log/pods/ns1_web_u-1");
        assert_eq!(s.labels[POD_UID_LABEL], "u-1");
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!((s.port_mappings[0].container_port, s.port_mappings[0].host_port), (80, 8080));
    }

    #[test]
    fn container() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, "docker.io/library/busybox:latest", 3, false, "10.0.0.9", "192.0.2.1");
        assert_eq!(cfg.log_path, "c/3.log");
        assert_eq!(cfg.labels[CONTAINER_NAME_LABEL], "c");
        assert_eq!((cfg.command.clone(), cfg.args.clone()), (vec!["sh".to_string()], vec!["-c".to_string(), "x".to_string()]));
        let envs: Vec<(String, String)> = cfg.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        assert_eq!(envs, [("A".into(), "1".into()), ("B".into(), "1-$-$(Z)".into()), ("P".into(), "10.0.0.9".into())]);
        let r = cfg.linux.unwrap().resources.unwrap();
        assert_eq!((r.cpu_shares, r.cpu_period, r.cpu_quota, r.memory_limit_in_bytes), (256, 100_000, 50_000, 64 << 20));
    }

    fn check_shares(milli: i64, expected: i64) {
        assert_eq!(milli_cpu_to_shares(milli), expected, "{milli}m");
    }

    #[test]
    fn shares() {
        check_shares(0, 2);
        check_shares(1, 2);
        check_shares(1000, 1024);
        check_shares(100, 102);
        assert_eq!(milli_cpu_to_quota(1, 100_000), 1000);
    }
}
