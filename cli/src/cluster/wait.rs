//! Waiting for the cluster's pieces: polling until a condition holds, and
//! until a component's health endpoint answers 200 while its process still
//! runs (a component that exited fails the wait at once, with its log tail).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::http_get;
use super::spec::Spec;
use super::supervise::Supervisor;

/// Polls `f` until it returns `Ok(Some(v))`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut last = String::from("not yet");
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("{what}: not done after {timeout:?} (last: {last})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fails if a component exited (its log tail in the error).
pub fn ensure_running(sup: &Supervisor, name: &str) -> anyhow::Result<()> {
    if sup.pid(name).is_none() {
        let log = std::fs::read_to_string(sup.log_file(name)).unwrap_or_default();
        let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        bail!("{name} exited; log tail:\n{tail}");
    }
    Ok(())
}

/// Waits until `GET path` on `addr` answers 200, failing if `name` exits.
pub fn wait_healthy(sup: &Supervisor, name: &str, addr: &str, path: &str) -> anyhow::Result<()> {
    wait_for(&format!("{name} {path} on {addr}"), Duration::from_secs(60), || {
        ensure_running(sup, name)?;
        Ok(http_get(addr, path).ok().filter(|(s, _)| *s == 200).map(|_| ()))
    })
}

/// Waits for a control-plane component's health endpoint ([`Spec::health_endpoint`]).
pub fn wait_component_healthy(spec: &Spec, sup: &Supervisor, name: &str) -> anyhow::Result<()> {
    let (addr, path) = spec.health_endpoint(name).with_context(|| format!("no health endpoint for {name}"))?;
    wait_healthy(sup, name, &addr, path)
}
