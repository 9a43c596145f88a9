//! The priorities by name (upstream's in-tree plugin registry,
//! `plugins/registry.go`), with the weights of upstream's default profile.
//! The configuration ([`crate::config`]) picks from these.

use super::{balanced_allocation, image_locality, least_requested, node_affinity, selector_spreading, taint_toleration, Priority};

/// Every priority with upstream's default weight (v1.32 default profile;
/// SelectorSpread, which the default profile replaced by
/// PodTopologySpread's system defaults, gets PodTopologySpread's weight 2).
pub const DEFAULT_WEIGHTS: &[(&str, i64)] = &[
    (least_requested::NAME, 1),
    (balanced_allocation::NAME, 1),
    (image_locality::NAME, 1),
    (node_affinity::NAME, 2),
    (taint_toleration::NAME, 3),
    (selector_spreading::NAME, 2),
];

/// Build a priority from its configured name.
pub fn by_name(name: &str) -> Option<Box<dyn Priority>> {
    Some(match name {
        least_requested::NAME => Box::new(least_requested::LeastRequested),
        balanced_allocation::NAME => Box::new(balanced_allocation::BalancedAllocation),
        image_locality::NAME => Box::new(image_locality::ImageLocality),
        node_affinity::NAME => Box::new(node_affinity::PreferredNodeAffinity),
        taint_toleration::NAME => Box::new(taint_toleration::PreferNoScheduleTaints),
        selector_spreading::NAME => Box::new(selector_spreading::SelectorSpread),
        _ => return None,
    })
}
