//! The sync state machine: kube-proxy's `Proxier` (iptables mode).
//!
//! The caller (informers watching Services and Endpoints) reports changes
//! with `on_service_update/delete` and `on_endpoints_update/delete`. Those
//! only record the change and mark the Service *dirty*; the rules are
//! written later by one sync that covers every change since the last one:
//!
//! - **Batching** (`min_sync_period`): syncs are at least this far apart, so
//!   a burst of endpoint changes (a rollout) costs one `iptables-restore`.
//! - **Partial sync** (KEP-3453): a sync rewrites the top-level chains
//!   (`KUBE-SERVICES`, `KUBE-NODEPORTS`, …) plus only the per-service chains
//!   of dirty Services; chains that disappeared are deleted.
//! - **Full sync**: every chain is rewritten. At start (adopting chains a
//!   previous run left, found with `iptables-save`), every `sync_period`,
//!   and after a failed restore (the kernel state is then unknown).
//! - **Failure**: a failed restore is logged with the line it failed on,
//!   counted, and retried after `retry_period` as a full sync.
//!
//! Syncs never run before both informers have listed everything
//! (`on_services_synced` / `on_endpoints_synced`): a proxy that started
//! writing rules with half the Services would cut traffic to the rest.
//!
//! Everything here runs commands in the network namespace of the calling
//! thread; [`Proxier::run`] spawns its sync thread from the caller's thread,
//! so the whole proxier lives in the namespace it was started in.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::conntrack::{Cleanup, Conntrack};
use crate::iptables::{saved_chains, Iptables};
use crate::model::{self, NamespacedName, Protocol, ProxiedPort};
use crate::rules::{self, Entry, Extras, JumpRule, RulesConfig, TopChains};

/// kube-proxy's flags of the same names.
#[derive(Debug, Clone)]
pub struct ProxierConfig {
    pub rules: RulesConfig,
    /// `--iptables-min-sync-period` (upstream default 1s).
    pub min_sync_period: Duration,
    /// `--iptables-sync-period` (upstream default 30s): full resync period.
    pub sync_period: Duration,
    /// Delay before retrying after a failed restore.
    pub retry_period: Duration,
    /// `/healthz` fails when a change has waited longer than this.
    pub health_timeout: Duration,
    /// Keep the text of each restore in the [`SyncReport`] (benchmarks).
    pub keep_text: bool,
}

impl Default for ProxierConfig {
    fn default() -> Self {
        ProxierConfig {
            rules: RulesConfig::default(),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            retry_period: Duration::from_secs(5),
            health_timeout: Duration::from_secs(60),
            keep_text: false,
        }
    }
}

/// What kind of sync to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Partial unless a full sync is due or needed.
    Auto,
    /// Rewrite every chain, trusting our record of what is in the kernel.
    Full,
    /// Full, after reading the kernel's tables with `iptables-save` to find
    /// stale chains of ours and missing jumps from the built-in chains.
    FullInspect,
}

/// The outcome of one sync.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// False when the sync was skipped (not initialized yet).
    pub ran: bool,
    pub full: bool,
    pub inspected: bool,
    pub services_written: usize,
    pub nat_rules_written: usize,
    pub nat_rules_total: usize,
    pub filter_rules: usize,
    pub chains_deleted: usize,
    pub jumps_added: usize,
    /// Top-level chains (`KUBE-SERVICES`, …) rewritten: all of them in a
    /// full sync; in a partial sync only those whose rules changed.
    pub top_chains_written: usize,
    pub bytes: usize,
    /// Whole sync, including rendering and bookkeeping.
    pub duration: Duration,
    /// `iptables-save` part of it (inspect syncs only).
    pub save_duration: Duration,
    /// `iptables-restore` part of it.
    pub restore_duration: Duration,
    pub conntrack_cleanups: usize,
    /// The restore input, when `keep_text` is set.
    pub text: Option<String>,
}

/// Prometheus metrics, named as upstream's (`kubeproxy_` prefix).
pub struct Metrics {
    pub registry: Registry,
    pub sync_duration: Histogram,
    pub sync_full_duration: Histogram,
    pub sync_partial_duration: Histogram,
    pub last_sync_timestamp: Gauge<f64, AtomicU64>,
    pub rules_total: Family<Vec<(String, String)>, Gauge>,
    pub restore_failures: Counter,
    pub partial_restore_failures: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("kubeproxy");
        let h = || Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let m = Metrics {
            sync_duration: h(),
            sync_full_duration: h(),
            sync_partial_duration: h(),
            last_sync_timestamp: Gauge::default(),
            rules_total: Family::default(),
            restore_failures: Counter::default(),
            partial_restore_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", m.sync_duration.clone());
        registry.register("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", m.sync_full_duration.clone());
        registry.register(
            "sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.sync_partial_duration.clone(),
        );
        registry.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync_timestamp.clone(),
        );
        registry.register(
            "sync_proxy_rules_iptables_total",
            "Total number of iptables rules owned by kube-proxy",
            m.rules_total.clone(),
        );
        registry.register(
            "sync_proxy_rules_iptables_restore_failures",
            "Cumulative proxy iptables restore failures",
            m.restore_failures.clone(),
        );
        registry.register(
            "sync_proxy_rules_iptables_partial_restore_failures",
            "Cumulative proxy iptables partial restore failures",
            m.partial_restore_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

struct State {
    services: HashMap<NamespacedName, Service>,
    endpoints: HashMap<NamespacedName, Endpoints>,
    /// The desired model, per Service, as of the last sync.
    ports: BTreeMap<NamespacedName, Vec<ProxiedPort>>,
    /// Services whose model must be rebuilt and chains rewritten.
    dirty: BTreeSet<NamespacedName>,
    services_synced: bool,
    endpoints_synced: bool,
    need_full: bool,
    need_inspect: bool,
    /// Our per-service nat chains that the kernel holds (as far as we know).
    kernel_chains: HashSet<String>,
    /// The top-level chains as the last successful restore left them; a
    /// partial sync skips those that would not change. `None` when unknown
    /// (start, after a failure).
    applied_top_chains: Option<TopChains>,
    /// Large-cluster mode (no per-endpoint comments) of the applied rules.
    applied_large_cluster: Option<bool>,
    pending_conntrack: BTreeSet<Cleanup>,
    /// When the oldest not-yet-applied change arrived.
    pending_since: Option<Instant>,
    last_sync_end: Option<Instant>,
    last_full_sync: Option<Instant>,
    retry_at: Option<Instant>,
    last_success: Option<SystemTime>,
    stop: bool,
}

/// The proxy. Share it with `Arc`; all methods take `&self`.
pub struct Proxier {
    cfg: ProxierConfig,
    ipt: Arc<dyn Iptables>,
    ct: Arc<dyn Conntrack>,
    state: Mutex<State>,
    wake: Condvar,
    /// Only one sync at a time.
    sync_lock: Mutex<()>,
    pub metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxier {
    pub fn new(cfg: ProxierConfig, ipt: Arc<dyn Iptables>, ct: Arc<dyn Conntrack>) -> Arc<Self> {
        Arc::new(Proxier {
            cfg,
            ipt,
            ct,
            state: Mutex::new(State {
                services: HashMap::new(),
                endpoints: HashMap::new(),
                ports: BTreeMap::new(),
                dirty: BTreeSet::new(),
                services_synced: false,
                endpoints_synced: false,
                need_full: true,
                need_inspect: true,
                kernel_chains: HashSet::new(),
                applied_top_chains: None,
                applied_large_cluster: None,
                pending_conntrack: BTreeSet::new(),
                pending_since: None,
                last_sync_end: None,
                last_full_sync: None,
                retry_at: None,
                last_success: None,
                stop: false,
            }),
            wake: Condvar::new(),
            sync_lock: Mutex::new(()),
            metrics: Metrics::new(),
        })
    }

    pub fn config(&self) -> &ProxierConfig {
        &self.cfg
    }

    fn mark_dirty(&self, st: &mut State, name: NamespacedName) {
        st.dirty.insert(name);
        st.pending_since.get_or_insert_with(Instant::now);
        self.wake.notify_all();
    }

    /// A Service was added or changed.
    pub fn on_service_update(&self, svc: &Service) {
        let Some(name) = NamespacedName::of(&svc.metadata) else { return };
        let mut st = lock(&self.state);
        let unchanged = st.services.get(&name).is_some_and(|old| old.spec == svc.spec);
        st.services.insert(name.clone(), svc.clone());
        if !unchanged {
            self.mark_dirty(&mut st, name);
        }
    }

    /// A Service was deleted.
    pub fn on_service_delete(&self, svc: &Service) {
        let Some(name) = NamespacedName::of(&svc.metadata) else { return };
        let mut st = lock(&self.state);
        if st.services.remove(&name).is_some() {
            self.mark_dirty(&mut st, name);
        }
    }

    /// An Endpoints object was added or changed.
    pub fn on_endpoints_update(&self, eps: &Endpoints) {
        let Some(name) = NamespacedName::of(&eps.metadata) else { return };
        let mut st = lock(&self.state);
        let unchanged = st.endpoints.get(&name).is_some_and(|old| old.subsets == eps.subsets);
        st.endpoints.insert(name.clone(), eps.clone());
        if !unchanged {
            self.mark_dirty(&mut st, name);
        }
    }

    /// An Endpoints object was deleted.
    pub fn on_endpoints_delete(&self, eps: &Endpoints) {
        let Some(name) = NamespacedName::of(&eps.metadata) else { return };
        let mut st = lock(&self.state);
        if st.endpoints.remove(&name).is_some() {
            self.mark_dirty(&mut st, name);
        }
    }

    /// The Service informer has listed everything.
    pub fn on_services_synced(&self) {
        lock(&self.state).services_synced = true;
        self.wake.notify_all();
    }

    /// The Endpoints informer has listed everything.
    pub fn on_endpoints_synced(&self) {
        lock(&self.state).endpoints_synced = true;
        self.wake.notify_all();
    }

    /// `/healthz`: unhealthy when a change has waited longer than
    /// `health_timeout` without being applied. Returns (healthy, JSON body).
    pub fn healthz(&self) -> (bool, String) {
        let st = lock(&self.state);
        let now = Instant::now();
        let healthy = match st.pending_since {
            Some(t) => now.duration_since(t) <= self.cfg.health_timeout,
            None => true,
        };
        let ts = |t: Option<SystemTime>| t.map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        let body = serde_json::json!({
            "lastUpdated": ts(st.last_success),
            "currentTime": ts(Some(SystemTime::now())),
            "nodeHealthy": healthy,
        });
        (healthy, body.to_string())
    }

    /// The full ruleset for the current Services and Endpoints, as it would
    /// be applied from scratch (with the jumps from the built-in chains),
    /// without touching the kernel: `--dry-run` / `rkube-proxy rules`.
    pub fn render_rules(&self) -> String {
        let st = lock(&self.state);
        let mut ports = BTreeMap::new();
        for (name, svc) in &st.services {
            let p = model::build(svc, st.endpoints.get(name));
            if !p.is_empty() {
                ports.insert(name.clone(), p);
            }
        }
        let entries: Vec<Entry<'_>> = ports.values().flatten().map(|p| Entry { port: p, write_chains: true }).collect();
        let jumps = rules::jump_rules(&self.cfg.rules);
        rules::render(&self.cfg.rules, &entries, &Extras { delete_nat_chains: &[], add_jumps: &jumps, applied_top_chains: None }).text
    }

    /// Read our chains and jumps from the kernel (`iptables-save`).
    fn inspect(&self) -> anyhow::Result<(HashSet<String>, Vec<JumpRule>)> {
        let nat = self.ipt.save("nat")?;
        let filter = self.ipt.save("filter")?;
        let chains: HashSet<String> = saved_chains(&nat).into_iter().filter(|c| rules::is_service_chain(c)).collect();
        let missing = rules::jump_rules(&self.cfg.rules)
            .into_iter()
            .filter(|j| {
                let table = if j.table == "nat" { &nat } else { &filter };
                !table.lines().any(|l| j.matches_saved(l))
            })
            .collect();
        Ok((chains, missing))
    }

    /// Sync now (the sync loop calls this; tests and benchmarks may too).
    pub fn sync(&self, kind: SyncKind) -> anyhow::Result<SyncReport> {
        let _one = lock(&self.sync_lock);
        let start = Instant::now();
        let mut report = SyncReport::default();

        // Decide the kind of sync.
        let (mut full, inspect) = {
            let st = lock(&self.state);
            if !(st.services_synced && st.endpoints_synced) {
                tracing::debug!("not syncing iptables until Services and Endpoints have been received");
                return Ok(report);
            }
            let periodic = st.last_full_sync.is_none_or(|t| start.duration_since(t) >= self.cfg.sync_period);
            match kind {
                SyncKind::FullInspect => (true, true),
                SyncKind::Full => (true, st.need_inspect),
                SyncKind::Auto => (st.need_full || periodic, st.need_inspect || periodic),
            }
        };
        report.ran = true;
        report.inspected = inspect;

        // Read the kernel's view (slow on big tables: outside the state lock).
        let mut inspected: Option<(HashSet<String>, Vec<JumpRule>)> = None;
        if inspect {
            let t = Instant::now();
            match self.inspect() {
                Ok(v) => inspected = Some(v),
                Err(e) => tracing::error!("iptables-save failed, stale chains will not be found: {e:#}"),
            }
            report.save_duration = t.elapsed();
        }

        // Bring the model up to date and render, under the state lock.
        let (text, new_kernel_chains, stale, cleanups, top_chains, large_cluster) = {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let dirty = std::mem::take(&mut st.dirty);
            st.pending_since = None;
            let mut stale: BTreeSet<String> = BTreeSet::new();
            for name in &dirty {
                let new_ports = match st.services.get(name) {
                    Some(svc) => model::build(svc, st.endpoints.get(name)),
                    None => Vec::new(),
                };
                let old_ports = st.ports.remove(name).unwrap_or_default();
                conntrack_cleanups(&old_ports, &new_ports, &mut st.pending_conntrack);
                let new_chains: HashSet<&str> = new_ports.iter().flat_map(rules::active_chains).collect();
                for c in old_ports.iter().flat_map(rules::active_chains) {
                    if !new_chains.contains(c) {
                        stale.insert(c.to_string());
                    }
                }
                if !new_ports.is_empty() {
                    st.ports.insert(name.clone(), new_ports);
                }
            }

            // Crossing the large-cluster threshold changes the text of every
            // service chain (comments on or off), not just the dirty ones.
            let total_endpoints: usize = st.ports.values().flatten().map(|p| p.endpoints.len()).sum();
            let large_cluster = rules::is_large_cluster(total_endpoints);
            if !full && st.applied_large_cluster != Some(large_cluster) {
                full = true;
            }

            let mut add_jumps = Vec::new();
            let kernel_chains = if let Some((chains, jumps)) = inspected {
                add_jumps = jumps;
                chains
            } else {
                std::mem::take(&mut st.kernel_chains)
            };
            let new_kernel_chains: HashSet<String>;
            if full {
                let active: HashSet<String> = st.ports.values().flatten().flat_map(rules::active_chains).map(str::to_string).collect();
                stale = kernel_chains.difference(&active).cloned().collect();
                new_kernel_chains = active;
            } else {
                let mut k = kernel_chains;
                for c in &stale {
                    k.remove(c);
                }
                for name in &dirty {
                    if let Some(ports) = st.ports.get(name) {
                        k.extend(ports.iter().flat_map(rules::active_chains).map(str::to_string));
                    }
                }
                // A chain we thought stale may not exist (e.g. never applied).
                new_kernel_chains = k;
            }
            let stale: Vec<String> = stale.into_iter().collect();
            let entries: Vec<Entry<'_>> = st
                .ports
                .iter()
                .flat_map(|(name, ports)| {
                    let w = full || dirty.contains(name);
                    ports.iter().map(move |p| Entry { port: p, write_chains: w })
                })
                .collect();
            report.services_written = entries.iter().filter(|e| e.write_chains).count();
            // A partial sync leaves out the top-level chains that would not
            // change; a full one rewrites them all (it is also the repair
            // for anything that changed them behind our back).
            let applied_top_chains = if full { None } else { st.applied_top_chains.as_ref() };
            let r = rules::render(
                &self.cfg.rules,
                &entries,
                &Extras { delete_nat_chains: &stale, add_jumps: &add_jumps, applied_top_chains },
            );
            report.top_chains_written = r.top_chains_written;
            report.nat_rules_written = r.nat_rules_written;
            report.nat_rules_total = r.nat_rules_total;
            report.filter_rules = r.filter_rules;
            report.jumps_added = add_jumps.len();
            report.chains_deleted = stale.len();
            let cleanups: Vec<Cleanup> = st.pending_conntrack.iter().cloned().collect();
            (r.text, new_kernel_chains, stale, cleanups, r.top_chains, large_cluster)
        };
        report.full = full;
        report.bytes = text.len();

        // Apply: one iptables-restore for both tables (none when nothing
        // would change).
        let t = Instant::now();
        let result = if text.is_empty() { Ok(()) } else { self.ipt.restore(&text) };
        report.restore_duration = t.elapsed();

        let mut st = lock(&self.state);
        st.last_sync_end = Some(Instant::now());
        match result {
            Ok(()) => {
                st.kernel_chains = new_kernel_chains;
                st.applied_top_chains = Some(top_chains);
                st.applied_large_cluster = Some(large_cluster);
                st.need_full = false;
                st.need_inspect = false;
                st.retry_at = None;
                if full {
                    st.last_full_sync = Some(start);
                }
                st.last_success = Some(SystemTime::now());
                drop(st);
                // Stale UDP flows: only now that the rules no longer send
                // traffic to the removed endpoints. A cleanup that failed
                // stays pending and is tried again at the next sync (at the
                // latest the periodic one): dropping it would leave a UDP
                // client pinned to a dead endpoint until its flow times out.
                let done: Vec<&Cleanup> = cleanups
                    .iter()
                    .filter(|c| match self.ct.clear(c) {
                        Ok(n) => {
                            tracing::debug!(?c, deleted = n, "conntrack cleanup");
                            true
                        }
                        Err(e) => {
                            tracing::warn!("conntrack cleanup failed, will retry at the next sync: {e:#}");
                            false
                        }
                    })
                    .collect();
                {
                    let mut st = lock(&self.state);
                    for c in done {
                        st.pending_conntrack.remove(c);
                    }
                }
                report.conntrack_cleanups = cleanups.len();
                let secs = start.elapsed().as_secs_f64();
                self.metrics.sync_duration.observe(secs);
                if full {
                    self.metrics.sync_full_duration.observe(secs);
                } else {
                    self.metrics.sync_partial_duration.observe(secs);
                }
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
                self.metrics.last_sync_timestamp.set(now);
                self.metrics.rules_total.get_or_create(&vec![("table".into(), "nat".into())]).set(report.nat_rules_total as i64);
                self.metrics.rules_total.get_or_create(&vec![("table".into(), "filter".into())]).set(report.filter_rules as i64);
                tracing::info!(
                    full,
                    services_written = report.services_written,
                    nat_rules = report.nat_rules_total,
                    deleted_chains = stale.len(),
                    elapsed_ms = start.elapsed().as_millis() as u64,
                    "synced iptables rules"
                );
                report.duration = start.elapsed();
                if self.cfg.keep_text {
                    report.text = Some(text);
                }
                Ok(report)
            }
            Err(e) => {
                // The dirty set is consumed and the kernel state unknown: the
                // next sync must be a full one that looks at the kernel first.
                st.need_full = true;
                st.need_inspect = true;
                st.applied_top_chains = None;
                st.applied_large_cluster = None;
                st.retry_at = Some(Instant::now() + self.cfg.retry_period);
                st.pending_since.get_or_insert(start);
                drop(st);
                self.metrics.restore_failures.inc();
                if !full {
                    self.metrics.partial_restore_failures.inc();
                }
                tracing::error!(
                    line = ?e.line,
                    rules = %e.context.join("\n"),
                    "failed to execute iptables-restore: {}; retrying with a full sync in {:?}",
                    e.stderr,
                    self.cfg.retry_period
                );
                Err(e.into())
            }
        }
    }

    /// When the next sync is due, if any.
    fn next_due(&self, st: &State, now: Instant) -> Option<Instant> {
        if !(st.services_synced && st.endpoints_synced) {
            return None;
        }
        let after_min = st.last_sync_end.map(|t| t + self.cfg.min_sync_period);
        let mut due: Vec<Instant> = Vec::new();
        if st.retry_at.is_some() {
            due.extend(st.retry_at);
        } else if !st.dirty.is_empty() || st.need_full {
            due.push(after_min.unwrap_or(now));
        }
        due.push(match st.last_full_sync {
            Some(t) => t + self.cfg.sync_period,
            None => now,
        });
        due.into_iter().min()
    }

    /// The sync loop, blocking the calling thread until [`Proxier::stop`].
    pub fn run_blocking(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return;
            }
            let now = Instant::now();
            match self.next_due(&st, now) {
                Some(t) if t <= now => {
                    drop(st);
                    let _ = self.sync(SyncKind::Auto);
                    st = lock(&self.state);
                }
                Some(t) => st = self.wake.wait_timeout(st, t - now).unwrap_or_else(|p| p.into_inner()).0,
                None => st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// Ask [`Proxier::run_blocking`] (and so [`Proxier::run`]) to return.
    pub fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_all();
    }

    /// Run the sync loop until `shutdown` completes. The loop runs on its own
    /// OS thread (iptables-restore blocks for a while on big tables), spawned
    /// from the calling thread and so in its network namespace.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("proxier-sync".into())
            .spawn(move || {
                me.run_blocking();
                let _ = tx.send(());
            })
            .expect("spawn sync thread");
        shutdown.await;
        self.stop();
        let _ = rx.await;
        let _ = handle.join();
    }
}

/// UDP conntrack entries to flush when a Service's ports change from `old`
/// to `new` (upstream's `conntrack.CleanStaleEntries`).
fn conntrack_cleanups(old: &[ProxiedPort], new: &[ProxiedPort], out: &mut BTreeSet<Cleanup>) {
    // An endpoint that is back (a cleanup for it still pending after a
    // failed attempt) serves again: flushing now would cut its live flows.
    for n in new.iter().filter(|p| p.name.protocol == Protocol::Udp) {
        for ep in &n.endpoints {
            out.remove(&Cleanup::ServiceEndpoint { service_ip: n.cluster_ip, endpoint_ip: ep.ip });
            if let Some(np) = n.node_port {
                out.remove(&Cleanup::NodePortEndpoint { node_port: np, endpoint_ip: ep.ip });
            }
            for ip in &n.external_ips {
                out.remove(&Cleanup::ServiceEndpoint { service_ip: *ip, endpoint_ip: ep.ip });
            }
        }
    }
    for o in old.iter().filter(|p| p.name.protocol == Protocol::Udp) {
        let n = new.iter().find(|p| p.name == o.name);
        for ep in &o.endpoints {
            let still = n.is_some_and(|n| n.endpoints.iter().any(|e| e.addr == ep.addr));
            if !still {
                out.insert(Cleanup::ServiceEndpoint { service_ip: o.cluster_ip, endpoint_ip: ep.ip });
                if let Some(np) = o.node_port {
                    out.insert(Cleanup::NodePortEndpoint { node_port: np, endpoint_ip: ep.ip });
                }
                for ip in &o.external_ips {
                    out.insert(Cleanup::ServiceEndpoint { service_ip: *ip, endpoint_ip: ep.ip });
                }
            }
        }
    }
    for n in new.iter().filter(|p| p.name.protocol == Protocol::Udp && p.has_endpoints()) {
        let had = old.iter().find(|p| p.name == n.name).is_some_and(|o| o.has_endpoints());
        if !had {
            out.insert(Cleanup::ServiceIp { service_ip: n.cluster_ip });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain_names;
    use crate::iptables::RestoreError;
    use serde_json::json;

    /// Records restores; can be told to fail the next one. Its `save`
    /// returns what a kernel holding the last applied chains would show.
    #[derive(Default)]
    struct FakeIptables {
        restores: Mutex<Vec<String>>,
        fail_next: Mutex<bool>,
        saved_nat: Mutex<String>,
        /// `iptables-save` calls (an inspecting sync makes two).
        saves: Mutex<usize>,
    }
    impl Iptables for FakeIptables {
        fn restore(&self, data: &str) -> Result<(), RestoreError> {
            if std::mem::take(&mut *lock(&self.fail_next)) {
                return Err(RestoreError { line: Some(3), context: vec![], stderr: "injected".into() });
            }
            lock(&self.restores).push(data.to_string());
            Ok(())
        }
        fn save(&self, table: &str) -> anyhow::Result<String> {
            *lock(&self.saves) += 1;
            Ok(if table == "nat" { lock(&self.saved_nat).clone() } else { String::new() })
        }
    }
    /// Records the cleanups done; fails the next `.1` calls.
    #[derive(Default)]
    struct FakeConntrack(Mutex<Vec<Cleanup>>, Mutex<usize>);
    impl Conntrack for FakeConntrack {
        fn clear(&self, c: &Cleanup) -> anyhow::Result<u64> {
            let mut fail = lock(&self.1);
            if *fail > 0 {
                *fail -= 1;
                anyhow::bail!("injected conntrack failure");
            }
            lock(&self.0).push(c.clone());
            Ok(1)
        }
    }

    fn svc(ns: &str, name: &str, ip: &str, proto: &str) -> Service {
        serde_json::from_value(json!({"metadata":{"namespace":ns,"name":name},
            "spec":{"clusterIP":ip,"ports":[{"name":"p","port":80,"protocol":proto}]}}))
        .unwrap()
    }
    fn eps(ns: &str, name: &str, ips: &[&str], proto: &str) -> Endpoints {
        let addrs: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({"metadata":{"namespace":ns,"name":name},
            "subsets":[{"addresses":addrs,"ports":[{"name":"p","port":8080,"protocol":proto}]}]}))
        .unwrap()
    }

    fn setup() -> (Arc<Proxier>, Arc<FakeIptables>, Arc<FakeConntrack>) {
        let ipt = Arc::new(FakeIptables::default());
        let ct = Arc::new(FakeConntrack::default());
        let p = Proxier::new(ProxierConfig::default(), ipt.clone(), ct.clone());
        (p, ipt, ct)
    }

    fn chains_declared(text: &str) -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix(':')).map(|l| l.split(' ').next().unwrap().to_string()).collect()
    }

    #[test]
    fn waits_for_initial_lists() {
        let (p, ipt, _) = setup();
        p.on_service_update(&svc("a", "s1", "10.96.0.1", "TCP"));
        assert!(!p.sync(SyncKind::Auto).unwrap().ran);
        p.on_services_synced();
        assert!(!p.sync(SyncKind::Auto).unwrap().ran);
        p.on_endpoints_synced();
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(r.ran && r.full && r.inspected);
        assert_eq!(lock(&ipt.restores).len(), 1);
    }

    #[test]
    fn partial_sync_rewrites_only_changed_service() {
        let (p, ipt, _) = setup();
        p.on_services_synced();
        p.on_endpoints_synced();
        for (n, ip) in [("s1", "10.96.0.1"), ("s2", "10.96.0.2")] {
            p.on_service_update(&svc("a", n, ip, "TCP"));
            p.on_endpoints_update(&eps("a", n, &["10.1.0.1", "10.1.0.2"], "TCP"));
        }
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(r.full);
        assert_eq!(r.services_written, 2);

        // s2 loses an endpoint: only s2's chains are declared.
        p.on_endpoints_update(&eps("a", "s2", &["10.1.0.1"], "TCP"));
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(!r.full);
        assert_eq!((r.services_written, r.chains_deleted), (1, 1));
        let text = lock(&ipt.restores).last().unwrap().clone();
        let s1 = chain_names::service_port_chain_name("a/s1:p", "tcp");
        let s2 = chain_names::service_port_chain_name("a/s2:p", "tcp");
        let gone = chain_names::service_port_endpoint_chain_name("a/s2:p", "tcp", "10.1.0.2:8080");
        let declared = chains_declared(&text);
        assert!(declared.contains(&s2) && !declared.contains(&s1), "{text}");
        assert!(text.contains(&format!("-X {gone}")), "{text}");
        // …and KUBE-SERVICES, whose jump to s2 is unchanged, is not rewritten.
        assert!(!declared.iter().any(|c| c == rules::KUBE_SERVICES), "{text}");
        assert!(!text.contains(&format!("-j {s1}")), "{text}");
        assert!(!text.contains("*filter"), "{text}");
        // The rules metric counts the untouched rules too.
        assert_eq!(r.nat_rules_total, 4 + 2 + (2 + 4) + (1 + 2) + 1);

        // Nothing changed: a partial sync writes nothing, so runs no restore.
        let before = lock(&ipt.restores).len();
        let r = p.sync(SyncKind::Auto).unwrap();
        assert_eq!((r.full, r.services_written, r.top_chains_written, r.bytes), (false, 0, 0, 0));
        assert_eq!(lock(&ipt.restores).len(), before);
    }

    /// After `change` and a partial sync: the top-level chains the restore
    /// rewrote (`table/chain`, in order) and whether the sync was full.
    fn check_top_chains(p: &Proxier, ipt: &FakeIptables, change: &dyn Fn(&Proxier), expected: (&[&str], bool)) {
        let before = lock(&ipt.restores).len();
        change(p);
        let r = p.sync(SyncKind::Auto).unwrap();
        let restores = lock(&ipt.restores);
        let text = if restores.len() > before { restores.last().unwrap().clone() } else { String::new() };
        let mut got = Vec::new();
        let mut table = "";
        for l in text.lines() {
            if let Some(t) = l.strip_prefix('*') {
                table = if t == "nat" { "nat" } else { "filter" };
            }
            if let Some(c) = l.strip_prefix(":KUBE-").map(|c| c.split(' ').next().unwrap()) {
                if !rules::is_service_chain(&format!("KUBE-{c}")) {
                    got.push(format!("{table}/KUBE-{c}"));
                }
            }
        }
        assert_eq!((got.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), r.full), expected, "{text}");
        assert_eq!(r.top_chains_written, expected.0.len());
    }

    fn np_svc(ns: &str, name: &str, ip: &str, node_port: u16) -> Service {
        serde_json::from_value(json!({"metadata":{"namespace":ns,"name":name},
            "spec":{"type":"NodePort","clusterIP":ip,"ports":[{"name":"p","port":80,"protocol":"TCP","nodePort":node_port}]}}))
        .unwrap()
    }

    #[test]
    fn partial_sync_skips_unchanged_top_level_chains() {
        let (p, ipt, _) = setup();
        p.on_services_synced();
        p.on_endpoints_synced();
        p.on_service_update(&svc("a", "s1", "10.96.0.1", "TCP"));
        p.on_endpoints_update(&eps("a", "s1", &["10.1.0.1", "10.1.0.2"], "TCP"));
        p.on_service_update(&np_svc("a", "np", "10.96.0.2", 30080));
        p.on_endpoints_update(&eps("a", "np", &["10.1.0.3"], "TCP"));
        let all = [
            "nat/KUBE-SERVICES",
            "nat/KUBE-NODEPORTS",
            "nat/KUBE-POSTROUTING",
            "nat/KUBE-MARK-MASQ",
            "filter/KUBE-SERVICES",
            "filter/KUBE-EXTERNAL-SERVICES",
            "filter/KUBE-FORWARD",
            "filter/KUBE-FIREWALL",
        ];
        let steps: Vec<(&str, Box<dyn Fn(&Proxier)>, (&[&str], bool))> = vec![
            ("first sync is full", Box::new(|_| {}), (&all, true)),
            ("endpoint replaced", Box::new(|p| p.on_endpoints_update(&eps("a", "s1", &["10.1.0.1", "10.1.0.9"], "TCP"))), (&[], false)),
            ("endpoint added to a NodePort service", Box::new(|p| p.on_endpoints_update(&eps("a", "np", &["10.1.0.3", "10.1.0.4"], "TCP"))), (&[], false)),
            ("new service", Box::new(|p| p.on_service_update(&svc("a", "s3", "10.96.0.3", "TCP"))), (&["filter/KUBE-SERVICES"], false)),
            ("it gets endpoints", Box::new(|p| p.on_endpoints_update(&eps("a", "s3", &["10.1.0.5"], "TCP"))), (&["nat/KUBE-SERVICES", "filter/KUBE-SERVICES"], false)),
            ("NodePort service loses its endpoints", Box::new(|p| p.on_endpoints_update(&eps("a", "np", &[], "TCP"))),
                (&["nat/KUBE-SERVICES", "nat/KUBE-NODEPORTS", "filter/KUBE-SERVICES", "filter/KUBE-EXTERNAL-SERVICES"], false)),
            ("service deleted", Box::new(|p| p.on_service_delete(&svc("a", "s1", "10.96.0.1", "TCP"))), (&["nat/KUBE-SERVICES"], false)),
            ("nothing changed", Box::new(|_| {}), (&[], false)),
        ];
        for (what, change, expected) in &steps {
            eprintln!("step: {what}");
            check_top_chains(&p, &ipt, change.as_ref(), *expected);
        }

        // A failed restore: the kernel state is unknown, so the next sync
        // is full and rewrites every top-level chain.
        p.on_endpoints_update(&eps("a", "s3", &["10.1.0.6"], "TCP"));
        *lock(&ipt.fail_next) = true;
        assert!(p.sync(SyncKind::Auto).is_err());
        check_top_chains(&p, &ipt, &|_| {}, (&all, true));
        assert!(lock(&ipt.restores).last().unwrap().contains("--to-destination 10.1.0.6:8080"));
    }

    #[test]
    fn crossing_large_cluster_threshold_forces_full_sync() {
        let (p, ipt, _) = setup();
        p.on_services_synced();
        p.on_endpoints_synced();
        let ips: Vec<String> = (0..rules::LARGE_CLUSTER_ENDPOINTS_THRESHOLD).map(|i| format!("10.2.{}.{}", i / 250, i % 250 + 1)).collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        p.on_service_update(&svc("a", "big", "10.96.0.1", "TCP"));
        p.on_endpoints_update(&eps("a", "big", &refs, "TCP"));
        p.on_service_update(&svc("a", "small", "10.96.0.2", "TCP"));
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(r.full);
        assert!(lock(&ipt.restores).last().unwrap().contains("-m comment --comment \"a/big:p -> "));
        // One more endpoint (elsewhere) switches comments off everywhere:
        // every service chain is rewritten, not only the changed one.
        p.on_endpoints_update(&eps("a", "small", &["10.1.0.1"], "TCP"));
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(r.full && r.services_written == 2, "{r:?}");
        assert!(!lock(&ipt.restores).last().unwrap().contains("-m comment --comment \"a/big:p -> "));
        // Back to partial once the mode is stable.
        p.on_endpoints_update(&eps("a", "small", &["10.1.0.2"], "TCP"));
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(!r.full && r.services_written == 1, "{r:?}");
    }

    #[test]
    fn failure_is_counted_and_followed_by_full_inspect_sync() {
        let (p, ipt, _) = setup();
        p.on_services_synced();
        p.on_endpoints_synced();
        p.on_service_update(&svc("a", "s1", "10.96.0.1", "TCP"));
        p.sync(SyncKind::Auto).unwrap();
        p.on_endpoints_update(&eps("a", "s1", &["10.1.0.1"], "TCP"));
        *lock(&ipt.fail_next) = true;
        assert!(p.sync(SyncKind::Auto).is_err());
        assert_eq!(p.metrics.restore_failures.get(), 1);
        assert_eq!(p.metrics.partial_restore_failures.get(), 1);
        assert!(p.metrics.encode().contains("kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1"));
        let r = p.sync(SyncKind::Auto).unwrap();
        assert!(r.full && r.inspected);
        assert!(lock(&ipt.restores).last().unwrap().contains("--to-destination 10.1.0.1:8080"));
    }

    #[test]
    fn start_adopts_leftover_chains_and_adds_missing_jumps_once() {
        let (p, ipt, _) = setup();
        *lock(&ipt.saved_nat) = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-LEFTOVER1234567 - [0:0]\n:KUBE-SEP-LEFTOVER1234567 - [0:0]\n:MY-CHAIN - [0:0]\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n".into();
        p.on_services_synced();
        p.on_endpoints_synced();
        let r = p.sync(SyncKind::Auto).unwrap();
        let text = lock(&ipt.restores).last().unwrap().clone();
        assert!(text.contains("-X KUBE-SVC-LEFTOVER1234567") && text.contains("-X KUBE-SEP-LEFTOVER1234567"));
        assert!(!text.contains("MY-CHAIN"));
        assert!(!text.contains("-I PREROUTING"), "PREROUTING jump exists already:\n{text}");
        assert!(text.contains("-I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"));
        assert_eq!(r.jumps_added, rules::jump_rules(&RulesConfig::default()).len() - 1);
    }

    #[test]
    fn udp_endpoint_removal_flushes_conntrack_after_apply() {
        let (p, _, ct) = setup();
        p.on_services_synced();
        p.on_endpoints_synced();
        p.on_service_update(&svc("a", "dns", "10.96.0.10", "UDP"));
        p.sync(SyncKind::Auto).unwrap();
        p.on_endpoints_update(&eps("a", "dns", &["10.1.0.1", "10.1.0.2"], "UDP"));
        p.sync(SyncKind::Auto).unwrap();
        p.on_endpoints_update(&eps("a", "dns", &["10.1.0.1"], "UDP"));
        p.sync(SyncKind::Auto).unwrap();
        let got = lock(&ct.0).clone();
        let sip = "10.96.0.10".parse().unwrap();
        assert_eq!(
            got,
            vec![
                Cleanup::ServiceIp { service_ip: sip },
                Cleanup::ServiceEndpoint { service_ip: sip, endpoint_ip: "10.1.0.2".parse().unwrap() },
            ]
        );
    }

    #[test]
    fn run_loop_batches_changes() {
        let ipt = Arc::new(FakeIptables::default());
        let cfg = ProxierConfig { min_sync_period: Duration::from_millis(300), ..Default::default() };
        let p = Proxier::new(cfg, ipt.clone(), Arc::new(FakeConntrack::default()));
        p.on_services_synced();
        p.on_endpoints_synced();
        let runner = {
            let p = p.clone();
            std::thread::spawn(move || p.run_blocking())
        };
        // First (full) sync happens right away.
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&ipt.restores).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A burst of changes inside one min-sync-period → one more restore.
        for i in 0..20 {
            p.on_service_update(&svc("a", &format!("s{i}"), &format!("10.96.0.{}", i + 1), "TCP"));
        }
        // Proof the loop is through the burst: a second restore, and no
        // change left waiting for a sync (nothing dirty, no retry due).
        let settled = || {
            let st = lock(&p.state);
            lock(&ipt.restores).len() >= 2 && st.dirty.is_empty() && !st.need_full && st.retry_at.is_none()
        };
        assert!(wait_for(settled), "the burst was not synced");
        p.stop();
        runner.join().unwrap();
        let restores = lock(&ipt.restores);
        assert_eq!(restores.len(), 2, "expected 1 full + 1 batched sync");
        assert_eq!(restores[1].matches("has no endpoints").count(), 20);
        // Each successful sync is observed once in the duration histogram.
        assert!(p.metrics.encode().contains("kubeproxy_sync_proxy_rules_duration_seconds_count 2\n"), "{}", p.metrics.encode());
    }

    /// Wait (up to 5 s) until `f` holds.
    fn wait_for(f: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn run_loop(p: &Arc<Proxier>) -> std::thread::JoinHandle<()> {
        let p = p.clone();
        std::thread::spawn(move || p.run_blocking())
    }

    #[test]
    fn run_loop_resyncs_fully_every_sync_period() {
        // `--sync-period`: with no change at all, the loop still rewrites
        // every chain after reading the kernel back (repairing anything
        // changed behind the proxy's back), once per period.
        let ipt = Arc::new(FakeIptables::default());
        let cfg = ProxierConfig { min_sync_period: Duration::ZERO, sync_period: Duration::from_millis(150), ..Default::default() };
        let p = Proxier::new(cfg, ipt.clone(), Arc::new(FakeConntrack::default()));
        p.on_service_update(&svc("a", "s1", "10.96.0.1", "TCP"));
        p.on_services_synced();
        p.on_endpoints_synced();
        let runner = run_loop(&p);
        let resynced = wait_for(|| lock(&ipt.restores).len() >= 3);
        p.stop();
        runner.join().unwrap();
        assert!(resynced, "no periodic resyncs: {} restores", lock(&ipt.restores).len());
        let restores = lock(&ipt.restores);
        for (i, text) in restores.iter().enumerate() {
            assert!(chains_declared(text).iter().any(|c| c == rules::KUBE_SERVICES), "restore {i} not full:\n{text}");
            assert!(text.contains("a/s1:p has no endpoints"), "restore {i} lost s1:\n{text}");
        }
        // Every one inspected first: iptables-save of nat and filter.
        assert_eq!(*lock(&ipt.saves), 2 * restores.len());
        // Not a busy loop: about one sync per period.
        assert!(restores.len() <= 5, "{} restores", restores.len());
    }

    #[test]
    fn run_loop_retries_a_failed_restore_with_a_full_sync() {
        let ipt = Arc::new(FakeIptables::default());
        let cfg = ProxierConfig {
            min_sync_period: Duration::ZERO,
            sync_period: Duration::from_secs(3600),
            retry_period: Duration::from_millis(100),
            ..Default::default()
        };
        let p = Proxier::new(cfg, ipt.clone(), Arc::new(FakeConntrack::default()));
        p.on_service_update(&svc("a", "s1", "10.96.0.1", "TCP"));
        p.on_services_synced();
        p.on_endpoints_synced();
        p.sync(SyncKind::Auto).unwrap();
        let saves = *lock(&ipt.saves);
        // A change whose restore fails; nobody calls sync again by hand.
        p.on_endpoints_update(&eps("a", "s1", &["10.1.0.1"], "TCP"));
        *lock(&ipt.fail_next) = true;
        let started = Instant::now();
        let runner = run_loop(&p);
        let retried = wait_for(|| lock(&ipt.restores).len() >= 2);
        let waited = started.elapsed();
        p.stop();
        runner.join().unwrap();
        assert!(retried, "the loop never retried");
        assert_eq!(p.metrics.restore_failures.get(), 1);
        assert!(waited >= Duration::from_millis(100), "retried before retry_period: {waited:?}");
        let restores = lock(&ipt.restores);
        assert_eq!(restores.len(), 2, "the initial sync and the retry");
        let text = &restores[1];
        assert!(text.contains("--to-destination 10.1.0.1:8080"), "{text}");
        assert!(chains_declared(text).iter().any(|c| c == rules::KUBE_SERVICES), "retry not full:\n{text}");
        assert_eq!(*lock(&ipt.saves), saves + 2, "retry did not inspect the kernel");
        assert!(p.healthz().0);
    }

    /// A UDP service whose endpoint 10.1.0.2 has just left, and whose
    /// conntrack cleanup for it failed (so it is still pending).
    fn udp_endpoint_left_and_its_cleanup_failed() -> (Arc<Proxier>, Arc<FakeConntrack>) {
        let (p, _, ct) = setup();
        p.on_services_synced();
        p.on_endpoints_synced();
        p.on_service_update(&svc("a", "dns", "10.96.0.10", "UDP"));
        p.on_endpoints_update(&eps("a", "dns", &["10.1.0.1", "10.1.0.2"], "UDP"));
        p.sync(SyncKind::Auto).unwrap();
        lock(&ct.0).clear();
        p.on_endpoints_update(&eps("a", "dns", &["10.1.0.1"], "UDP"));
        *lock(&ct.1) = 1;
        p.sync(SyncKind::Auto).unwrap();
        assert!(lock(&ct.0).is_empty(), "the cleanup failed");
        (p, ct)
    }

    #[test]
    fn failed_conntrack_cleanup_is_retried_at_the_next_sync() {
        let (p, ct) = udp_endpoint_left_and_its_cleanup_failed();
        let gone = Cleanup::ServiceEndpoint { service_ip: "10.96.0.10".parse().unwrap(), endpoint_ip: "10.1.0.2".parse().unwrap() };
        // The next sync (nothing changed: no restore at all) tries again…
        let r = p.sync(SyncKind::Auto).unwrap();
        assert_eq!((r.bytes, r.conntrack_cleanups), (0, 1));
        assert_eq!(*lock(&ct.0), vec![gone]);
        // …and once done it is not repeated.
        assert_eq!(p.sync(SyncKind::Auto).unwrap().conntrack_cleanups, 0);
        assert_eq!(lock(&ct.0).len(), 1);
    }

    #[test]
    fn pending_cleanup_of_an_endpoint_that_came_back_is_dropped() {
        let (p, ct) = udp_endpoint_left_and_its_cleanup_failed();
        // 10.1.0.2 comes back before the retry: its flows are live again.
        p.on_endpoints_update(&eps("a", "dns", &["10.1.0.1", "10.1.0.2"], "UDP"));
        let r = p.sync(SyncKind::Auto).unwrap();
        assert_eq!(r.conntrack_cleanups, 0);
        assert!(lock(&ct.0).is_empty(), "flushed a live endpoint: {:?}", lock(&ct.0));
    }
}
