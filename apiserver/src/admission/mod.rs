//! Admission control: plugins that may change (mutate) or refuse (validate)
//! a write after it is authorized and before it is stored
//! (k8s.io/apiserver/pkg/admission, plugin/pkg/admission).
//!
//! kube-apiserver runs the enabled plugins as one ordered chain in two
//! phases: every *mutating* plugin, in order, may rewrite the object
//! (defaults such as `serviceAccountName: default`); then every
//! *validating* plugin, in order, may refuse it (quota exceeded). The order
//! is fixed by the server, not by the flag: `--enable-admission-plugins`
//! only adds to the default set and `--disable-admission-plugins` removes
//! from it.
//!
//! rkube implements five of the default plugins, in upstream's order:
//! - **NamespaceLifecycle** — no new objects in a namespace that does not
//!   exist or is being deleted, and the immortal namespaces (`default`,
//!   `kube-system`, `kube-public`) may not be deleted. It needs live state
//!   (the namespace), so the write checks run it (`security::Checks`,
//!   which the handler hands the registry); here it is only a name in the
//!   chain, so it can be disabled.
//! - [`limit_ranger`] — **LimitRanger**: default container requests/limits
//!   from the namespace's LimitRanges (mutating), and enforce their
//!   min/max (validating).
//! - [`service_account`] — **ServiceAccount**: pods run as the `default`
//!   ServiceAccount unless they name one, and the account must exist
//!   (mutating, checked again when validating).
//! - [`default_toleration_seconds`] — **DefaultTolerationSeconds**: pods
//!   tolerate `not-ready`/`unreachable` nodes for 300 s before eviction.
//! - [`resource_quota`] — **ResourceQuota**: refuse objects that would take
//!   a namespace over its quota (validating; last, so it sees the final
//!   object, defaults included).
//!
//! Every plugin is a pure function over the object and what the apiserver
//! knows about the namespace ([`NamespaceState`]); refusals are
//! [`AdmissionError`]s, which render as Kubernetes' 403
//! `pods "web" is forbidden: <why>`.
//!
//! This file is the chain: it calls the plugins. What the plugins share
//! lives in leaves they import instead of this file — [`attributes`] (the
//! [`Request`] being admitted, upstream `admission.Attributes`) and
//! [`errors`] (the refusal, upstream `admission.NewForbidden`); quantities
//! come from `machinery::quota`.

pub mod attributes;
pub mod errors;

pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod resource_quota;
pub mod service_account;

pub use attributes::{Operation, Request};
pub use errors::AdmissionError;
pub use resource_quota::QuotaState;
// Quantities in milli-units, shared with the resourcequota controller.
pub use machinery::quota::{format_milli, milli};

use k8s_openapi::api::core::v1::LimitRange;
use serde_json::Value;

/// What the plugins read about the request's namespace. The apiserver fills
/// it from its watch cache.
#[derive(Default)]
pub struct NamespaceState<'a> {
    pub limit_ranges: &'a [LimitRange],
    pub quotas: &'a [QuotaState],
    /// Whether a ServiceAccount of this name exists in the namespace; `None`
    /// when the caller cannot tell (the existence check is then skipped).
    /// The apiserver answers for the one account the pod runs as, looked up
    /// before the chain runs (`security::NamespaceInputs::read`).
    pub service_account_exists: Option<&'a dyn Fn(&str) -> bool>,
}

/// The admission plugins rkube implements, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    NamespaceLifecycle,
    LimitRanger,
    ServiceAccount,
    DefaultTolerationSeconds,
    ResourceQuota,
}

/// Every plugin, in chain order (upstream's `AllOrderedPlugins`, restricted
/// to these five; NamespaceLifecycle comes first there too).
pub const ORDERED: &[Plugin] = &[
    Plugin::NamespaceLifecycle,
    Plugin::LimitRanger,
    Plugin::ServiceAccount,
    Plugin::DefaultTolerationSeconds,
    Plugin::ResourceQuota,
];

impl Plugin {
    pub fn name(self) -> &'static str {
        match self {
            Plugin::NamespaceLifecycle => "NamespaceLifecycle",
            Plugin::LimitRanger => "LimitRanger",
            Plugin::ServiceAccount => "ServiceAccount",
            Plugin::DefaultTolerationSeconds => "DefaultTolerationSeconds",
            Plugin::ResourceQuota => "ResourceQuota",
        }
    }

    pub fn from_name(name: &str) -> Option<Plugin> {
        ORDERED.iter().copied().find(|p| p.name() == name)
    }

    /// On by default, as in kube-apiserver.
    pub fn default_enabled(self) -> bool {
        true
    }
}

/// What a successful mutating phase did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Plugins that changed the object.
    pub mutated_by: Vec<&'static str>,
}

/// The enabled plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub plugins: Vec<Plugin>,
    /// DefaultTolerationSeconds' `--default-not-ready-toleration-seconds`
    /// and `--default-unreachable-toleration-seconds` (300 each).
    pub not_ready_toleration_seconds: i64,
    pub unreachable_toleration_seconds: i64,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::with_plugins(ORDERED.iter().copied().filter(|p| p.default_enabled()).collect())
    }
}

impl Chain {
    /// From `--enable-admission-plugins` and `--disable-admission-plugins`
    /// (each a comma-separated list; empty entries ignored). Unknown names
    /// and names in both lists are errors, as kube-apiserver reports them.
    pub fn from_flags(enable: &str, disable: &str) -> Result<Chain, String> {
        let split = |s: &str| s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>();
        let (enable, disable) = (split(enable), split(disable));
        let known = ORDERED.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
        let mut errors = Vec::new();
        for (flag, names) in [("enable-admission-plugins", &enable), ("disable-admission-plugins", &disable)] {
            for n in names {
                if Plugin::from_name(n).is_none() {
                    errors.push(format!("{flag} plugin {n:?} is unknown (rkube implements: {known})"));
                }
            }
        }
        let mut both: Vec<&String> = enable.iter().filter(|n| disable.contains(n)).collect();
        both.sort();
        both.dedup();
        if !both.is_empty() {
            errors.push(format!("{both:?} in enable-admission-plugins and disable-admission-plugins overlapped"));
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let plugins = ORDERED
            .iter()
            .copied()
            .filter(|p| (p.default_enabled() || enable.iter().any(|n| n == p.name())) && !disable.iter().any(|n| n == p.name()))
            .collect();
        Ok(Chain::with_plugins(plugins))
    }

    fn with_plugins(plugins: Vec<Plugin>) -> Chain {
        let d = default_toleration_seconds::DEFAULT_TOLERATION_SECONDS;
        Chain { plugins, not_ready_toleration_seconds: d, unreachable_toleration_seconds: d }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    /// The mutating phase: each enabled mutating plugin in order.
    pub fn admit(&self, req: &Request<'_>, object: &mut Value, ns: &NamespaceState<'_>) -> Result<Admitted, AdmissionError> {
        let mut out = Admitted::default();
        for p in &self.plugins {
            let changed = match p {
                // Run by the write checks (`security.rs`), which read the namespace.
                Plugin::NamespaceLifecycle => false,
                Plugin::LimitRanger => limit_ranger::admit(req, object, ns.limit_ranges),
                Plugin::ServiceAccount => service_account::admit(req, object, ns.service_account_exists)?,
                Plugin::DefaultTolerationSeconds => {
                    default_toleration_seconds::admit(req, object, self.not_ready_toleration_seconds, self.unreachable_toleration_seconds)
                }
                Plugin::ResourceQuota => false,
            };
            if changed {
                out.mutated_by.push(p.name());
            }
        }
        Ok(out)
    }

    /// The validating phase. On success returns, for each quota the object
    /// is charged to, the quota's name and its new usage — which the
    /// apiserver records (in `status.used`) when it stores the object.
    pub fn validate(
        &self,
        req: &Request<'_>,
        object: &Value,
        ns: &NamespaceState<'_>,
    ) -> Result<Vec<(String, resource_quota::Usage)>, AdmissionError> {
        let mut charged = Vec::new();
        for p in &self.plugins {
            match p {
                Plugin::NamespaceLifecycle => {}
                Plugin::LimitRanger => limit_ranger::validate(req, object, ns.limit_ranges)?,
                Plugin::ServiceAccount => service_account::validate(req, object, ns.service_account_exists)?,
                Plugin::DefaultTolerationSeconds => {}
                Plugin::ResourceQuota => charged = resource_quota::validate(req, object, ns.quotas)?,
            }
        }
        Ok(charged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_flags(enable: &str, disable: &str, expected: Result<&[&str], &str>) {
        match (Chain::from_flags(enable, disable), expected) {
            (Ok(chain), Ok(names)) => assert_eq!(chain.names(), names, "{enable} / {disable}"),
            (Err(e), Err(want)) => assert!(e.contains(want), "{e}"),
            (got, want) => panic!("{enable} / {disable}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn plugin_flags() {
        let all: &[&str] = &["NamespaceLifecycle", "LimitRanger", "ServiceAccount", "DefaultTolerationSeconds", "ResourceQuota"];
        check_flags("", "", Ok(all));
        // Order is the server's, not the flag's.
        check_flags("ResourceQuota,LimitRanger", "", Ok(all));
        // The textbook line.
        check_flags("NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,ResourceQuota", "", Ok(all));
        check_flags("", "ServiceAccount, ResourceQuota", Ok(&["NamespaceLifecycle", "LimitRanger", "DefaultTolerationSeconds"]));
        check_flags("", "NamespaceLifecycle", Ok(&all[1..]));
        check_flags("PodSecurity", "", Err(r#"enable-admission-plugins plugin "PodSecurity" is unknown"#));
        check_flags("", "limitranger", Err(r#"disable-admission-plugins plugin "limitranger" is unknown"#));
        check_flags("LimitRanger", "LimitRanger", Err(r#"["LimitRanger"] in enable-admission-plugins and disable-admission-plugins overlapped"#));
    }

    #[test]
    fn quantities_round_trip() {
        for (resource, q, expected) in [
            ("cpu", "500m", "500m"),
            ("requests.cpu", "2", "2"),
            ("limits.cpu", "1.5", "1500m"),
            ("memory", "64Mi", "64Mi"),
            ("requests.memory", "1536Mi", "1536Mi"),
            ("memory", "1Gi", "1Gi"),
            ("memory", "1G", "1G"),
            ("memory", "1000", "1k"),
            ("pods", "10", "10"),
            ("count/deployments.apps", "3", "3"),
            ("pods", "0", "0"),
        ] {
            assert_eq!(format_milli(resource, milli(q).unwrap()), expected, "{resource}={q}");
        }
        assert!(milli("lots").is_err());
    }
}
