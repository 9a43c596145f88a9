//! Pure generation of the `iptables-restore` input, in kube-proxy's iptables
//! mode style (pkg/proxy/iptables/proxier.go, `syncProxyRules`).
//!
//! What a student sees in `iptables -t nat -S`:
//!
//! ```text
//! PREROUTING / OUTPUT ──► KUBE-SERVICES ──(clusterIP:port)──► KUBE-SVC-<hash>
//!                                │                              │ -m statistic 1/n, 1/(n-1), …
//!                                │                              ▼
//!                                │                         KUBE-SEP-<hash>  (MARK-MASQ if hairpin, DNAT)
//!                                └─(last rule, dst-type LOCAL)─► KUBE-NODEPORTS ─► KUBE-EXT-<hash> ─► KUBE-SVC-<hash>
//! POSTROUTING ──► KUBE-POSTROUTING: MASQUERADE what KUBE-MARK-MASQ marked (0x4000)
//! ```
//!
//! and in the filter table, `KUBE-SERVICES` / `KUBE-EXTERNAL-SERVICES`
//! REJECT traffic for service ports that have no endpoints (a fast
//! "connection refused" instead of a timeout).
//!
//! The whole ruleset for both tables is one text, fed to one
//! `iptables-restore --noflush`. Declaring a chain (`:KUBE-SVC-X - [0:0]`)
//! flushes it, so each sync rewrites the chains it names and leaves every
//! other chain — including rules other programs wrote — alone. A *partial*
//! sync (KEP-3453) names only the top-level chains plus the chains of the
//! services that changed; chains that disappeared are flushed and `-X`ed.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::ProxiedPort;

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
/// Blocks martian traffic to 127/8 that `route_localnet` (needed for
/// NodePorts on 127.0.0.1) would otherwise let in (kubernetes/kubernetes#90259).
///
/// Ownership, a divergence to know about: upstream this chain is kubelet's
/// (kubelet creates it and the jumps from INPUT/OUTPUT; kube-proxy's
/// iptables mode also writes the same localnet rule into it, noting that
/// kubelet keeps an identical copy). rkube-proxy declares the chain in its restore, which
/// *flushes* it, and writes the jumps itself: it is the only writer on an
/// rkube node (rkube-agent writes no iptables rules). Next to a real
/// kubelet, any other rule that kubelet keeps here (older kubelets' `-m mark
/// --mark 0x8000/0x8000 -j DROP`) would be dropped at every full sync until
/// kubelet re-adds it. The name is kept because it is the one students see
/// in upstream's `iptables -L`; only written with `localhost_nodeports`.
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

/// Prefixes of the per-service chains this proxy owns. Stale chains with one
/// of these prefixes are deleted; any other chain is never touched.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] = ["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"];

/// Upstream switches to "large cluster mode" (no per-endpoint comments, ~40%
/// less text) above this many endpoints.
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

pub fn is_service_chain(name: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Go's `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Settings that shape the rules (kube-proxy flags of the same meaning).
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// `--masquerade-bit` 14 → mark `0x4000`.
    pub masquerade_mark: String,
    /// `--cluster-cidr`: traffic to a cluster IP from outside it is
    /// masqueraded (upstream's `localDetector.IfNotLocal()`).
    pub cluster_cidr: Option<Ipv4Net>,
    /// `--masquerade-all`: masquerade every cluster-IP connection.
    pub masquerade_all: bool,
    /// `--iptables-localhost-nodeports` (default true): NodePorts answer on
    /// 127.0.0.1 (needs `route_localnet=1`).
    pub localhost_nodeports: bool,
    /// `--nodeport-addresses`: empty = every local address.
    pub nodeport_addresses: Vec<Ipv4Addr>,
    /// Add `--random-fully` to MASQUERADE (kernel ≥ 3.13 and iptables ≥ 1.6.2).
    pub random_fully: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            masquerade_mark: "0x4000".into(),
            cluster_cidr: None,
            masquerade_all: false,
            localhost_nodeports: true,
            nodeport_addresses: Vec::new(),
            random_fully: false,
        }
    }
}

/// A rule in a built-in chain that sends traffic into ours. Not declared as
/// part of the restore (we must not flush PREROUTING); inserted with `-I`
/// only when a check of `iptables-save` found it missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    pub table: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub comment: Option<&'static str>,
    pub extra: &'static str,
}

impl JumpRule {
    /// The rule spec as written after `-I <from>`.
    pub fn spec(&self) -> String {
        let mut s = String::new();
        if !self.extra.is_empty() {
            s.push_str(self.extra);
            s.push(' ');
        }
        if let Some(c) = self.comment {
            let _ = write!(s, "-m comment --comment \"{c}\" ");
        }
        let _ = write!(s, "-j {}", self.to);
        s
    }

    /// Does one line of `iptables-save` output implement this jump? The
    /// saved form may order matches differently, so look for the pieces.
    pub fn matches_saved(&self, line: &str) -> bool {
        let Some(rest) = line.strip_prefix("-A ") else { return false };
        let mut words = rest.split(' ');
        if words.next() != Some(self.from) {
            return false;
        }
        if !line.ends_with(&format!("-j {}", self.to)) {
            return false;
        }
        match self.comment {
            Some(c) => line.contains(&format!("--comment \"{c}\"")) || line.contains(&format!("--comment {c} ")),
            None => true,
        }
    }
}

/// Upstream's `iptablesJumpChains` (+ the KUBE-FIREWALL jumps, which
/// upstream kubelet makes; see [`KUBE_FIREWALL`]).
pub fn jump_rules(cfg: &RulesConfig) -> Vec<JumpRule> {
    let new = "-m conntrack --ctstate NEW";
    let mut v = vec![
        JumpRule { table: "filter", from: "INPUT", to: KUBE_EXTERNAL_SERVICES, comment: Some("kubernetes externally-visible service portals"), extra: new },
        JumpRule { table: "filter", from: "FORWARD", to: KUBE_EXTERNAL_SERVICES, comment: Some("kubernetes externally-visible service portals"), extra: new },
        JumpRule { table: "filter", from: "FORWARD", to: KUBE_SERVICES, comment: Some("kubernetes service portals"), extra: new },
        JumpRule { table: "filter", from: "OUTPUT", to: KUBE_SERVICES, comment: Some("kubernetes service portals"), extra: new },
        JumpRule { table: "filter", from: "FORWARD", to: KUBE_FORWARD, comment: Some("kubernetes forwarding rules"), extra: "" },
        JumpRule { table: "nat", from: "OUTPUT", to: KUBE_SERVICES, comment: Some("kubernetes service portals"), extra: "" },
        JumpRule { table: "nat", from: "PREROUTING", to: KUBE_SERVICES, comment: Some("kubernetes service portals"), extra: "" },
        JumpRule { table: "nat", from: "POSTROUTING", to: KUBE_POSTROUTING, comment: Some("kubernetes postrouting rules"), extra: "" },
    ];
    if cfg.localhost_nodeports {
        v.push(JumpRule { table: "filter", from: "INPUT", to: KUBE_FIREWALL, comment: None, extra: "" });
        v.push(JumpRule { table: "filter", from: "OUTPUT", to: KUBE_FIREWALL, comment: None, extra: "" });
    }
    v
}

/// The nat chains a service port owns in the kernel after a sync, in the
/// order they are declared. Used both to write them and to find stale ones.
pub fn active_chains<'a>(p: &'a ProxiedPort) -> impl Iterator<Item = &'a str> + 'a {
    let has = p.has_endpoints();
    let ext = (has && p.externally_accessible()).then_some(p.ext_chain.as_str());
    let svc = has.then_some(p.svc_chain.as_str());
    ext.into_iter().chain(svc).chain(p.endpoints.iter().map(|e| e.chain.as_str()))
}

/// One service port to render, and whether its own chains are written
/// (always in a full sync; only for changed services in a partial sync).
pub struct Entry<'a> {
    pub port: &'a ProxiedPort,
    pub write_chains: bool,
}

/// What, besides the services, this restore must do.
#[derive(Default)]
pub struct Extras<'a> {
    /// Service chains to flush and delete (`-X`).
    pub delete_nat_chains: &'a [String],
    /// Jump rules found missing from the built-in chains.
    pub add_jumps: &'a [JumpRule],
    /// The top-level chains as the kernel holds them (what the last
    /// successful restore wrote). A top-level chain whose rules are the same
    /// now is left out of the restore. `None`: write every top-level chain.
    pub applied_top_chains: Option<&'a TopChains>,
}

/// The rules of each top-level chain (`KUBE-SERVICES`, `KUBE-NODEPORTS`, …),
/// as text, keyed by (table, chain).
///
/// Why keep them: with 10,000 services, `KUBE-SERVICES` holds 10,000 rules,
/// and rewriting it costs `iptables-restore` far more than the one service
/// chain that an endpoint change touches. Most changes (a pod replaced, a
/// replica added) leave the top-level chains exactly as they were: the jump
/// `-d <cluster IP> --dport <port> -j KUBE-SVC-<hash>` names the service,
/// not its endpoints. So a partial sync compares each top-level chain with
/// what the last successful restore wrote and sends it only if it differs.
/// A chain's text names every chain it jumps to, so an unchanged top-level
/// chain never points at a chain this restore creates or deletes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopChains(std::collections::BTreeMap<(&'static str, &'static str), String>);

impl TopChains {
    /// The rules (one `-A` line each) of `chain` in `table`.
    pub fn get(&self, table: &str, chain: &str) -> Option<&str> {
        self.0.iter().find(|((t, c), _)| *t == table && *c == chain).map(|(_, s)| s.as_str())
    }
}

/// The restore input plus counts for metrics.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Empty when there is nothing to change.
    pub text: String,
    pub filter_rules: usize,
    /// nat rules in the kernel after this restore (written + untouched).
    pub nat_rules_total: usize,
    /// nat rules actually written by this restore.
    pub nat_rules_written: usize,
    /// Every top-level chain's rules after this restore (written or not):
    /// pass it back as [`Extras::applied_top_chains`] once it is applied.
    pub top_chains: TopChains,
    /// How many top-level chains the text rewrites.
    pub top_chains_written: usize,
}

/// A line buffer that can also just count (for chains a partial sync skips,
/// whose rules still count towards the "rules in the kernel" metric).
struct Buf {
    s: String,
    lines: usize,
}

impl Buf {
    fn new(cap: usize) -> Self {
        Buf { s: String::with_capacity(cap), lines: 0 }
    }
}

macro_rules! emit {
    ($buf:expr, $write:expr, $($arg:tt)*) => {{
        $buf.lines += 1;
        if $write {
            let _ = writeln!($buf.s, $($arg)*);
        }
    }};
}

/// The top-level chains being rendered, one buffer each.
struct TopLevel {
    nat_services: Buf,
    nat_nodeports: Buf,
    nat_postrouting: Buf,
    nat_mark_masq: Buf,
    filter_services: Buf,
    filter_external: Buf,
    filter_forward: Buf,
    /// Only with `localhost_nodeports`.
    filter_firewall: Option<Buf>,
}

impl TopLevel {
    /// (table, chain, rules), in the order they are declared.
    fn into_chains(self) -> Vec<(&'static str, &'static str, Buf)> {
        let mut v = vec![
            ("nat", KUBE_SERVICES, self.nat_services),
            ("nat", KUBE_NODEPORTS, self.nat_nodeports),
            ("nat", KUBE_POSTROUTING, self.nat_postrouting),
            ("nat", KUBE_MARK_MASQ, self.nat_mark_masq),
            ("filter", KUBE_SERVICES, self.filter_services),
            ("filter", KUBE_EXTERNAL_SERVICES, self.filter_external),
            ("filter", KUBE_FORWARD, self.filter_forward),
        ];
        if let Some(fw) = self.filter_firewall {
            v.push(("filter", KUBE_FIREWALL, fw));
        }
        v
    }
}

/// Is the ruleset in "large cluster mode" (no per-endpoint comments)?
pub fn is_large_cluster(total_endpoints: usize) -> bool {
    total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
}

/// Render the restore input for `entries` (sorted as the caller wants them
/// to appear; the proxier keeps them sorted by service port name).
///
/// Layout of each table: chain declarations (declaring flushes), missing
/// jumps from built-in chains, the top-level chains' rules, the service
/// chains' rules, then `-X` of deleted chains. Rules of one chain stay in
/// order; iptables-restore does not care how chains interleave.
pub fn render(cfg: &RulesConfig, entries: &[Entry<'_>], extras: &Extras<'_>) -> Rendered {
    let total_endpoints: usize = entries.iter().map(|e| e.port.endpoints.len()).sum();
    let large_cluster = is_large_cluster(total_endpoints);
    let written_eps: usize = entries.iter().filter(|e| e.write_chains).map(|e| e.port.endpoints.len()).sum();
    let written_ports = entries.iter().filter(|e| e.write_chains).count();
    let mark = &cfg.masquerade_mark;

    let mut top = TopLevel {
        nat_services: Buf::new(256 + entries.len() * 160),
        nat_nodeports: Buf::new(256),
        nat_postrouting: Buf::new(256),
        nat_mark_masq: Buf::new(64),
        filter_services: Buf::new(256),
        filter_external: Buf::new(256),
        filter_forward: Buf::new(512),
        filter_firewall: cfg.localhost_nodeports.then(|| Buf::new(256)),
    };
    // The per-service nat chains that this restore rewrites.
    let mut nat_chains = Buf::new(256 + written_eps * 32);
    let mut nat_rules = Buf::new(1024 + written_ports * 300 + written_eps * 300);
    // Rules of skipped chains go here: counted, never formatted.
    let mut skipped = Buf::new(0);

    // Missing jumps from built-in chains go first, after the chain lines
    // (restore needs the target chain declared before a rule names it).
    let mut filter_jumps = String::new();
    let mut nat_jumps = String::new();
    for j in extras.add_jumps {
        let dst = if j.table == "nat" { &mut nat_jumps } else { &mut filter_jumps };
        let _ = writeln!(dst, "-I {} 1 {}", j.from, j.spec());
    }

    emit!(top.nat_postrouting, true, "-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN");
    // Clear the mark so a packet re-traversing the stack is not masqueraded twice.
    emit!(top.nat_postrouting, true, "-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}");
    emit!(
        top.nat_postrouting,
        true,
        "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{}",
        if cfg.random_fully { " --random-fully" } else { "" }
    );
    emit!(top.nat_mark_masq, true, "-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}");

    if let Some(fw) = top.filter_firewall.as_mut() {
        // route_localnet lets packets to 127.0.0.1 be routed; this closes the
        // hole for anything that was not DNATed by us (kubernetes/kubernetes#90259).
        emit!(
            fw,
            true,
            "-A {KUBE_FIREWALL} -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        );
    }

    for e in entries {
        write_service(cfg, e, large_cluster, &mut top, &mut nat_chains, &mut nat_rules, &mut skipped);
    }

    let mut deletes = String::new();
    for chain in extras.delete_nat_chains {
        // Declaring flushes it; then it can be deleted.
        let _ = writeln!(nat_chains.s, ":{chain} - [0:0]");
        let _ = writeln!(deletes, "-X {chain}");
    }

    // Must be the last rule of KUBE-SERVICES: only traffic that matched no
    // cluster IP reaches the NodePort check.
    if cfg.nodeport_addresses.is_empty() {
        let not_lo = if cfg.localhost_nodeports { "" } else { " ! -d 127.0.0.0/8" };
        emit!(
            top.nat_services,
            true,
            "-A {KUBE_SERVICES} -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL{not_lo} -j {KUBE_NODEPORTS}"
        );
    } else {
        for ip in &cfg.nodeport_addresses {
            if ip.is_loopback() && !cfg.localhost_nodeports {
                continue;
            }
            emit!(
                top.nat_services,
                true,
                "-A {KUBE_SERVICES} -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -d {ip} -j {KUBE_NODEPORTS}"
            );
        }
    }

    // Forwarded traffic: drop INVALID (spurious RSTs), accept what we marked
    // and its replies even when the FORWARD policy is DROP.
    emit!(top.filter_forward, true, "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP");
    emit!(
        top.filter_forward,
        true,
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    );
    emit!(
        top.filter_forward,
        true,
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );

    // Decide, per top-level chain, whether this restore rewrites it.
    let mut out = Rendered {
        nat_rules_written: nat_rules.lines,
        nat_rules_total: nat_rules.lines + skipped.lines,
        ..Default::default()
    };
    let (mut nat_top_decl, mut nat_top_rules) = (String::new(), String::new());
    let (mut filter_top_decl, mut filter_top_rules) = (String::new(), String::new());
    for (table, chain, buf) in top.into_chains() {
        let unchanged = extras.applied_top_chains.and_then(|a| a.get(table, chain)).is_some_and(|prev| prev == buf.s);
        let (decl, rules) = if table == "nat" {
            out.nat_rules_total += buf.lines;
            if !unchanged {
                out.nat_rules_written += buf.lines;
            }
            (&mut nat_top_decl, &mut nat_top_rules)
        } else {
            out.filter_rules += buf.lines;
            (&mut filter_top_decl, &mut filter_top_rules)
        };
        if !unchanged {
            let _ = writeln!(decl, ":{chain} - [0:0]");
            rules.push_str(&buf.s);
            out.top_chains_written += 1;
        }
        out.top_chains.0.insert((table, chain), buf.s);
    }

    // nat first (upstream writes filter first): each table commits on its
    // own, and iptables-restore stops at the first error. The nat table is
    // the big one, so if anything fails it fails before either table
    // changed; the small filter table then rarely can fail on its own.
    // A table with nothing to change is left out.
    let mut text = String::with_capacity(
        nat_top_decl.len()
            + nat_chains.s.len()
            + nat_jumps.len()
            + nat_top_rules.len()
            + nat_rules.s.len()
            + deletes.len()
            + filter_top_decl.len()
            + filter_jumps.len()
            + filter_top_rules.len()
            + 64,
    );
    if !(nat_top_decl.is_empty() && nat_chains.s.is_empty() && nat_jumps.is_empty()) {
        text.push_str("*nat\n");
        text.push_str(&nat_top_decl);
        text.push_str(&nat_chains.s);
        text.push_str(&nat_jumps);
        text.push_str(&nat_top_rules);
        text.push_str(&nat_rules.s);
        text.push_str(&deletes);
        text.push_str("COMMIT\n");
    }
    if !(filter_top_decl.is_empty() && filter_jumps.is_empty()) {
        text.push_str("*filter\n");
        text.push_str(&filter_top_decl);
        text.push_str(&filter_jumps);
        text.push_str(&filter_top_rules);
        text.push_str("COMMIT\n");
    }
    out.text = text;
    out
}

fn write_service(
    cfg: &RulesConfig,
    e: &Entry<'_>,
    large_cluster: bool,
    top: &mut TopLevel,
    nat_chains_main: &mut Buf,
    nat_rules_main: &mut Buf,
    skipped: &mut Buf,
) {
    let p = e.port;
    let proto = p.name.protocol.lower();
    let name = &p.name_string;
    let has = p.has_endpoints();

    // --- Top-level chains: always rendered (written if they changed). ---
    if has {
        emit!(
            top.nat_services,
            true,
            "-A {KUBE_SERVICES} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {} --dport {} -j {}",
            p.cluster_ip,
            p.port,
            p.svc_chain
        );
    } else {
        emit!(
            top.filter_services,
            true,
            "-A {KUBE_SERVICES} -m comment --comment \"{name} has no endpoints\" -m {proto} -p {proto} -d {} --dport {} -j REJECT",
            p.cluster_ip,
            p.port
        );
    }
    for ip in &p.external_ips {
        if has {
            emit!(
                top.nat_services,
                true,
                "-A {KUBE_SERVICES} -m comment --comment \"{name} external IP\" -m {proto} -p {proto} -d {ip} --dport {} -j {}",
                p.port,
                p.ext_chain
            );
        } else {
            emit!(
                top.filter_external,
                true,
                "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment \"{name} has no endpoints\" -m {proto} -p {proto} -d {ip} --dport {} -j REJECT",
                p.port
            );
        }
    }
    if let Some(np) = p.node_port {
        if has {
            emit!(
                top.nat_nodeports,
                true,
                "-A {KUBE_NODEPORTS} -m comment --comment {name} -m {proto} -p {proto} --dport {np} -j {}",
                p.ext_chain
            );
        } else {
            emit!(
                top.filter_external,
                true,
                "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment \"{name} has no endpoints\" -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {np} -j REJECT"
            );
        }
    }
    if !has {
        return;
    }

    // --- The service's own chains: only if this sync rewrites them. ---
    let w = e.write_chains;
    let mut discard_chains = Buf::new(0);
    let (nat_chains, nat_rules): (&mut Buf, &mut Buf) = if w {
        (nat_chains_main, nat_rules_main)
    } else {
        // Chain lines are not rules; only rules are counted.
        (&mut discard_chains, skipped)
    };

    // Masquerade cluster-IP traffic that does not come from a pod, so the
    // replies come back through this node.
    if cfg.masquerade_all {
        emit!(
            nat_rules,
            w,
            "-A {} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {} --dport {} -j {KUBE_MARK_MASQ}",
            p.svc_chain,
            p.cluster_ip,
            p.port
        );
    } else if let Some(cidr) = cfg.cluster_cidr {
        emit!(
            nat_rules,
            w,
            "-A {} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {} --dport {} ! -s {cidr} -j {KUBE_MARK_MASQ}",
            p.svc_chain,
            p.cluster_ip,
            p.port
        );
    }

    if p.externally_accessible() {
        emit!(nat_chains, w, ":{} - [0:0]", p.ext_chain);
        // externalTrafficPolicy: Cluster — the endpoint may be on another
        // node, so the reply must come back here: masquerade.
        emit!(
            nat_rules,
            w,
            "-A {} -m comment --comment \"masquerade traffic for {name} external destinations\" -j {KUBE_MARK_MASQ}",
            p.ext_chain
        );
        emit!(nat_rules, w, "-A {} -j {}", p.ext_chain, p.svc_chain);
    }

    emit!(nat_chains, w, ":{} - [0:0]", p.svc_chain);
    let n = p.endpoints.len();
    if let Some(timeout) = p.affinity_timeout {
        // A client seen recently (per endpoint `recent` list) goes back to
        // the same endpoint.
        for ep in &p.endpoints {
            if large_cluster {
                emit!(
                    nat_rules,
                    w,
                    "-A {} -m recent --name {} --rcheck --seconds {timeout} --reap -j {}",
                    p.svc_chain,
                    ep.chain,
                    ep.chain
                );
            } else {
                emit!(
                    nat_rules,
                    w,
                    "-A {} -m comment --comment \"{name} -> {}\" -m recent --name {} --rcheck --seconds {timeout} --reap -j {}",
                    p.svc_chain,
                    ep.addr,
                    ep.chain,
                    ep.chain
                );
            }
        }
    }
    for (i, ep) in p.endpoints.iter().enumerate() {
        // Rule i matches with probability 1/(n-i): overall each endpoint
        // gets 1/n. The last rule matches unconditionally.
        let comment = if large_cluster { String::new() } else { format!(" -m comment --comment \"{name} -> {}\"", ep.addr) };
        if i + 1 < n {
            emit!(
                nat_rules,
                w,
                "-A {}{comment} -m statistic --mode random --probability {} -j {}",
                p.svc_chain,
                probability(n - i),
                ep.chain
            );
        } else {
            emit!(nat_rules, w, "-A {}{comment} -j {}", p.svc_chain, ep.chain);
        }
    }

    for ep in &p.endpoints {
        emit!(nat_chains, w, ":{} - [0:0]", ep.chain);
        let comment = if large_cluster { String::new() } else { format!(" -m comment --comment {name}") };
        // Hairpin: a pod reaching itself through the service must be
        // masqueraded or it would answer itself directly.
        emit!(nat_rules, w, "-A {}{comment} -s {} -j {KUBE_MARK_MASQ}", ep.chain, ep.ip);
        let recent = if p.affinity_timeout.is_some() { format!(" -m recent --name {} --set", ep.chain) } else { String::new() };
        emit!(
            nat_rules,
            w,
            "-A {}{comment}{recent} -m {proto} -p {proto} -j DNAT --to-destination {}",
            ep.chain,
            ep.addr
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_like_go() {
        let got: Vec<String> = [1, 2, 3, 7, 10].iter().map(|n| probability(*n)).collect();
        assert_eq!(got, ["1.0000000000", "0.5000000000", "0.3333333333", "0.1428571429", "0.1000000000"]);
    }

    #[test]
    fn jump_rule_matches_saved_forms() {
        let j = &jump_rules(&RulesConfig::default())[6];
        assert_eq!(j.from, "PREROUTING");
        assert!(j.matches_saved("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"));
        assert!(!j.matches_saved("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"));
        assert!(!j.matches_saved("-A PREROUTING -j KUBE-SERVICES-X"));
        let f = &jump_rules(&RulesConfig::default())[0];
        assert!(f.matches_saved(
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"
        ));
    }
}
