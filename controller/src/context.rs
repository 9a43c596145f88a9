//! What every controller is built from (upstream `ControllerContext` in
//! `cmd/kube-controller-manager/app/controllermanager.go`): the client, the
//! shared informer factory, the work-queue metrics, the flags, and the
//! leadership gate.
//!
//! A leaf module: the manager builds one and hands it to each controller's
//! `new`, and the controllers import only this, never the manager.

use kube::Client;
use machinery::events::EventRecorder;
use machinery::workqueue::{default_rate_limiter, WorkQueue, WorkQueueMetrics};

use crate::controller_utils::Gate;
use crate::informers::InformerFactory;
use crate::options::Options;

/// What every controller is built from.
pub struct Context {
    pub client: Client,
    pub informers: InformerFactory,
    pub metrics: WorkQueueMetrics,
    pub opts: Options,
    pub gate: Gate,
}

impl Context {
    /// A work queue named after its controller, reporting to /metrics
    /// (`workqueue_depth{name="replicaset"}` …).
    pub fn queue(&self, name: &str) -> WorkQueue<String> {
        WorkQueue::with_metrics(name, default_rate_limiter(), &self.metrics)
    }

    /// An event recorder with upstream's per-controller source component.
    pub fn recorder(&self, component: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), component, "")
    }
}
