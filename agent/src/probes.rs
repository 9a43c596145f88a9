//! Container probes (the kubelet's *prober* and *probe workers*).
//!
//! Each running container with probes gets one probe task (keyed by its
//! container ID, so a restarted container starts over):
//!
//! * **startup** runs first; until it succeeds, liveness and readiness do
//!   not run and the container is not `started`. If it fails
//!   `failureThreshold` times in a row the container is restarted.
//! * **readiness** decides the container's `ready` (and so the pod's Ready
//!   condition and whether Services send it traffic). Without a readiness
//!   probe a started container is ready.
//! * **liveness** failing `failureThreshold` times in a row has the
//!   container killed and restarted (event `Unhealthy`, then `Killing`).
//!
//! Each probe waits `initialDelaySeconds`, then runs every `periodSeconds`
//! with `timeoutSeconds`; the result flips after `successThreshold`
//! successes or `failureThreshold` failures in a row. Handlers: exec
//! (CRI `ExecSync`), httpGet (2xx/3xx is success) and tcpSocket (connect),
//! both to the pod IP — and only when a local route to it exists (never
//! let a probe send a pod-range packet off the machine).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proto::runtime::v1::ExecSyncRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::runtime::cri::CriClient;

/// What the probes concluded so far about one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    pub started: bool,
    pub ready: bool,
    /// Set when liveness (or startup) failed for good: restart the container.
    pub failed: Option<String>,
}

/// Result of one probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Settings with Kubernetes' defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    Timing {
        initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
        period: Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64),
        timeout: Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// Consecutive-result counting: returns the new verdict when it flips.
#[derive(Debug, Default)]
pub struct Counter {
    successes: u32,
    failures: u32,
}

impl Counter {
    /// Feeds one result; `Some(true)` once `success_threshold` successes in
    /// a row were seen, `Some(false)` after `failure_threshold` failures.
    pub fn observe(&mut self, ok: bool, t: &Timing) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= t.success_threshold).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= t.failure_threshold).then_some(false)
        }
    }
}

/// The local-route check lives in `machinery::routes` (the apiserver's
/// proxy uses it too).
pub use machinery::routes::{local_route_exists, route_covers};

fn port_of(c: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name)).and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs a probe once.
pub async fn run_once(cri: &mut CriClient, container_id: &str, c: &Container, pod_ip: &str, p: &Probe) -> Outcome {
    let t = timing(p);
    if let Some(exec) = &p.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let req = ExecSyncRequest { container_id: container_id.into(), cmd: cmd.clone(), timeout: t.timeout.as_secs() as i64 };
        return match tokio::time::timeout(t.timeout + Duration::from_secs(2), cri.runtime.exec_sync(req)).await {
            Err(_) => Outcome::Failure(format!("command {cmd:?} timed out")),
            Ok(Err(e)) => Outcome::Failure(e.message().to_string()),
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if r.exit_code == 0 {
                    Outcome::Success
                } else {
                    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stderr));
                    if out.trim().is_empty() {
                        out = format!("command {cmd:?} exited with {}", r.exit_code);
                    }
                    Outcome::Failure(out)
                }
            }
        };
    }
    let (port, http) = match (&p.http_get, &p.tcp_socket) {
        (Some(h), _) => (port_of(c, &h.port), Some(h)),
        (None, Some(tcp)) => (port_of(c, &tcp.port), None),
        _ => return Outcome::Failure("probe has no handler".into()),
    };
    let Some(port) = port else { return Outcome::Failure("probe port not found".into()) };
    let host = http.and_then(|h| h.host.clone()).unwrap_or_else(|| pod_ip.to_string());
    let Ok(ip) = host.parse::<IpAddr>() else { return Outcome::Failure(format!("invalid probe host {host:?}")) };
    if let IpAddr::V4(v4) = ip {
        if !v4.is_loopback() && !local_route_exists(v4) {
            return Outcome::Failure(format!("no local route to {v4}"));
        }
    }
    let addr = SocketAddr::new(ip, port);
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let Some(h) = http else { return Ok(()) };
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n");
        for hdr in h.http_headers.iter().flatten() {
            req.push_str(&format!("{}: {}\r\n", hdr.name, hdr.value));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_string();
        let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad HTTP response {line:?}"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(t.timeout, attempt).await {
        Err(_) => Outcome::Failure(format!("Get \"http://{addr}\": context deadline exceeded")),
        Ok(Err(e)) => Outcome::Failure(e),
        Ok(Ok(())) => Outcome::Success,
    }
}

/// Reports an `Unhealthy` event: `(probe kind, message)`.
pub type Reporter = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The probe task of one container. Updates `results` and wakes `notify` on every change.
pub async fn run_container_probes(
    cri: CriClient,
    container_id: String,
    c: Container,
    pod_ip: String,
    results: Arc<Mutex<ProbeResults>>,
    notify: Arc<Notify>,
    report: Reporter,
) {
    let set = |f: &dyn Fn(&mut ProbeResults)| {
        let mut r = results.lock().unwrap();
        let before = r.clone();
        f(&mut r);
        if *r != before {
            notify.notify_one();
        }
    };
    // Startup.
    if let Some(p) = &c.startup_probe {
        let t = timing(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut counter = Counter::default();
        let mut cri = cri.clone();
        loop {
            let out = run_once(&mut cri, &container_id, &c, &pod_ip, p).await;
            if let Outcome::Failure(msg) = &out {
                report("Startup", msg);
            }
            match counter.observe(out == Outcome::Success, &t) {
                Some(true) => break,
                Some(false) => {
                    set(&|r| r.failed = Some("Container failed startup probe, will be restarted".into()));
                    return;
                }
                None => {}
            }
            tokio::time::sleep(t.period).await;
        }
    }
    set(&|r| {
        r.started = true;
        if c.readiness_probe.is_none() {
            r.ready = true;
        }
    });
    let readiness = async {
        let Some(p) = &c.readiness_probe else { return };
        let t = timing(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut counter = Counter::default();
        let mut cri = cri.clone();
        loop {
            let out = run_once(&mut cri, &container_id, &c, &pod_ip, p).await;
            if let Outcome::Failure(msg) = &out {
                report("Readiness", msg);
            }
            if let Some(v) = counter.observe(out == Outcome::Success, &t) {
                set(&|r| r.ready = v);
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(p) = &c.liveness_probe else { return };
        let t = timing(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut counter = Counter::default();
        let mut cri = cri.clone();
        loop {
            let out = run_once(&mut cri, &container_id, &c, &pod_ip, p).await;
            if let Outcome::Failure(msg) = &out {
                report("Liveness", msg);
            }
            if counter.observe(out == Outcome::Success, &t) == Some(false) {
                set(&|r| r.failed = Some(format!("Container {} failed liveness probe, will be restarted", c.name)));
                return;
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::join!(readiness, liveness);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(success: u32, failure: u32) -> Timing {
        Timing { initial_delay: Duration::ZERO, period: Duration::from_secs(1), timeout: Duration::from_secs(1), success_threshold: success, failure_threshold: failure }
    }

    fn check(results: &[bool], timing: Timing, expected: &[Option<bool>]) {
        let mut c = Counter::default();
        let got: Vec<Option<bool>> = results.iter().map(|&ok| c.observe(ok, &timing)).collect();
        assert_eq!(got, expected, "{results:?}");
    }

    #[test]
    fn thresholds() {
        check(&[false, false, false], t(1, 3), &[None, None, Some(false)]);
        check(&[false, false, true, false], t(1, 3), &[None, None, Some(true), None]);
        check(&[true, true, false, true, true], t(2, 1), &[None, Some(true), Some(false), None, Some(true)]);
    }

    #[test]
    fn defaults() {
        let tm = timing(&Probe::default());
        assert_eq!((tm.period, tm.timeout, tm.success_threshold, tm.failure_threshold), (Duration::from_secs(10), Duration::from_secs(1), 1, 3));
    }
}
