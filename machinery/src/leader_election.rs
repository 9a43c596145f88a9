//! Leader election over a `coordination.k8s.io/v1` Lease (client-go's
//! `tools/leaderelection` with a `LeaseLock`), behind `--leader-elect`.
//!
//! Several copies of the scheduler or controller manager can run for
//! availability, but only one may act at a time. They agree through one
//! Lease object (`kube-system/kube-scheduler`, say):
//!
//! ```text
//! spec:
//!   holderIdentity: node-a_4f1c…      who leads
//!   leaseDurationSeconds: 15          how long others must wait before taking over
//!   acquireTime / renewTime           when it was taken / last renewed (informational)
//!   leaseTransitions: 3               how many times leadership changed hands
//! ```
//!
//! The rules (client-go's `tryAcquireOrRenew`):
//!
//! - A candidate takes the lease if nobody holds it, or if the record has not
//!   changed for `leaseDurationSeconds` **as measured by the candidate's own
//!   clock, since the candidate last saw the record change**. `renewTime` is
//!   written for humans but never trusted for expiry: the leader's wall clock
//!   may be wrong. This is why a candidate must watch the record for a full
//!   lease duration before taking over, even at start-up.
//! - Writes are compare-and-swap: the update carries the `resourceVersion`
//!   that was read, so two candidates racing for an expired lease cannot both
//!   win (the loser gets 409 Conflict).
//! - The leader renews every `retry_period`. If it cannot renew for
//!   `renew_deadline` (< lease duration), it stops leading *before* anybody
//!   else may take over.
//!
//! **After losing leadership the process must stop acting at once, and
//! components exit** (upstream: `klog.Fatalf("leaderelection lost")`): the
//! work started while leading may hold state that is no longer true, and a
//! restart is the simplest correct way to start again as a candidate.
//! [`LeaderElector::run`] drops (cancels) the leader's future as soon as it
//! notices, calls `on_stopped_leading`, and returns
//! [`Outcome::LostLeadership`]; the component's `main` then exits non-zero.
//!
//! A leader that is frozen (SIGSTOP, a long GC-like stall, a suspended VM)
//! longer than the lease duration may wake up after someone else took over.
//! Its timers fire late, so it cannot rely on the renew loop running first.
//! Two defences: the renew loop checks its *local monotonic* deadline before
//! anything else and gives up without asking the apiserver if it has passed;
//! and [`Leadership::is_leading`] — which the leader's work should check
//! before each write — reports false as soon as the deadline has passed,
//! whatever the other tasks have done yet.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

/// Timings, with client-go's (and kube-scheduler's) defaults.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// How long a non-leader waits, after last seeing the record change,
    /// before it may take over. Default 15 s.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up. Default 10 s.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews. Default 2 s.
    pub retry_period: Duration,
    /// When the leader's work ends normally, clear the holder so a standby
    /// takes over at once instead of after a lease duration. Default true.
    pub release_on_cancel: bool,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }
}

impl LeaderElectionConfig {
    /// client-go refuses configurations where leadership could overlap.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lease_duration > self.renew_deadline,
            "leaseDuration must be greater than renewDeadline"
        );
        // client-go: renewDeadline > JitterFactor(1.2) * retryPeriod.
        anyhow::ensure!(
            self.renew_deadline.as_secs_f64() > 1.2 * self.retry_period.as_secs_f64(),
            "renewDeadline must be greater than retryPeriod*1.2"
        );
        anyhow::ensure!(self.lease_duration >= Duration::from_secs(1), "leaseDuration must be at least 1s");
        Ok(())
    }
}

/// A unique identity for this process: `hostname_<random hex>` (client-go
/// components use `hostname_<uuid>`).
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}_{:016x}", rand::thread_rng().gen::<u64>())
}

/// The part of the Lease the election reads and writes (client-go's
/// `LeaderElectionRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder_identity: String,
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<DateTime<Utc>>,
    pub renew_time: Option<DateTime<Utc>>,
    pub leader_transitions: i32,
}

impl Record {
    fn from_spec(spec: Option<&LeaseSpec>) -> Record {
        let spec = spec.cloned().unwrap_or_default();
        Record {
            holder_identity: spec.holder_identity.unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            leader_transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    fn to_spec(&self, mut spec: LeaseSpec) -> LeaseSpec {
        spec.holder_identity = Some(self.holder_identity.clone());
        spec.lease_duration_seconds = Some(self.lease_duration_seconds);
        spec.acquire_time = self.acquire_time.map(MicroTime);
        spec.renew_time = self.renew_time.map(MicroTime);
        spec.lease_transitions = Some(self.leader_transitions);
        spec
    }
}

/// What `identity` should write, given the record it read, or None if
/// someone else validly holds the lease. `unchanged_for` is how long, by our
/// own clock, the record has looked exactly like this.
fn next_record(
    current: &Record,
    identity: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
    now: DateTime<Utc>,
) -> Option<Record> {
    let held_by_other = !current.holder_identity.is_empty() && current.holder_identity != identity;
    let expired = unchanged_for >= Duration::from_secs(current.lease_duration_seconds.max(0) as u64);
    if held_by_other && !expired {
        return None;
    }
    let mut next = Record {
        holder_identity: identity.to_string(),
        lease_duration_seconds: lease_duration.as_secs().max(1) as i32,
        acquire_time: Some(now),
        renew_time: Some(now),
        leader_transitions: current.leader_transitions,
    };
    if current.holder_identity == identity {
        // A renewal: keep when we got it.
        next.acquire_time = current.acquire_time;
    } else {
        next.leader_transitions += 1;
    }
    Some(next)
}

/// The result of one try.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds it and has renewed recently enough.
    HeldBy(String),
    /// Our write lost a race (409); try again.
    Conflict,
}

/// Shared view of "am I the leader right now?", given to the leader's work.
#[derive(Clone)]
pub struct Leadership {
    /// Until when (local monotonic time) our last renewal keeps us safe;
    /// None when not leading.
    valid_until: watch::Receiver<Option<Instant>>,
}

impl Leadership {
    /// True while this process leads *and* its last renewal is recent
    /// enough that nobody else can have taken over. Check it before each
    /// action that must happen only on the leader.
    pub fn is_leading(&self) -> bool {
        matches!(*self.valid_until.borrow(), Some(t) if Instant::now() < t)
    }

    /// Resolves once this process is no longer (safely) the leader.
    pub async fn lost(&self) {
        let mut rx = self.valid_until.clone();
        loop {
            let until = *rx.borrow_and_update();
            let Some(until) = until else { return };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// How [`LeaderElector::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The leader's work finished on its own (the lease was released if
    /// `release_on_cancel`).
    Finished,
    /// Leadership was lost: the work was cancelled. Exit the process.
    LostLeadership,
}

/// Campaigns for one Lease and runs work while leading.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    config: LeaderElectionConfig,
    /// The record as last read or written, and when (our clock) it last changed.
    observed: Option<(Record, Instant)>,
    valid_until: watch::Sender<Option<Instant>>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        lease_namespace: &str,
        lease_name: &str,
        identity: &str,
        config: LeaderElectionConfig,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        anyhow::ensure!(!identity.is_empty(), "leader election identity must not be empty");
        Ok(LeaderElector {
            api: Api::namespaced(client, lease_namespace),
            name: lease_name.to_string(),
            identity: identity.to_string(),
            config,
            observed: None,
            valid_until: watch::channel(None).0,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A handle that tells whether we currently lead.
    pub fn leadership(&self) -> Leadership {
        Leadership { valid_until: self.valid_until.subscribe() }
    }

    /// Remember `record`; restart the expiry clock if it changed.
    fn observe(&mut self, record: Record) {
        let changed = self.observed.as_ref().is_none_or(|(r, _)| *r != record);
        if changed {
            self.observed = Some((record, Instant::now()));
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: read the Lease, decide,
    /// and write it back with compare-and-swap.
    async fn try_acquire_or_renew(&mut self) -> anyhow::Result<Attempt> {
        // MicroTime: the apiserver keeps microseconds.
        let now = Utc::now().trunc_subsecs(6);
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            // No lease yet: create it, holding it.
            let mut record = next_record(&Record::from_spec(None), &self.identity, Duration::ZERO, self.config.lease_duration, now)
                .expect("an empty record is never held");
            // Creating the lease is not a transition (client-go starts at 0).
            record.leader_transitions = 0;
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(record.to_spec(LeaseSpec::default())),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(record);
                    Ok(Attempt::Leading)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e.into()),
            };
        };
        let current = Record::from_spec(lease.spec.as_ref());
        self.observe(current.clone());
        let unchanged_for = self.observed.as_ref().map(|(_, t)| t.elapsed()).unwrap_or_default();
        let Some(record) = next_record(&current, &self.identity, unchanged_for, self.config.lease_duration, now) else {
            return Ok(Attempt::HeldBy(current.holder_identity));
        };
        let mut updated = lease.clone();
        updated.spec = Some(record.to_spec(lease.spec.clone().unwrap_or_default()));
        // `updated.metadata.resourceVersion` is the one we read: the
        // apiserver rejects the write with 409 if anyone wrote in between.
        match self.api.replace(&self.name, &PostParams::default(), &updated).await {
            Ok(_) => {
                self.observe(record);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// `retry_period` stretched by up to 1.2× at random (client-go's
    /// `wait.JitterUntil(…, 1.2, …)`), so candidates do not retry in lockstep.
    fn jittered_retry(&self) -> Duration {
        self.config.retry_period.mul_f64(1.0 + rand::thread_rng().gen::<f64>() * 1.2)
    }

    /// Wait until this process holds the lease.
    async fn acquire(&mut self) -> Instant {
        let mut last_holder = String::new();
        loop {
            let started = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired lease");
                    return started;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if holder != last_holder {
                        tracing::info!(lease = %self.name, %holder, "lease is held by another candidate; waiting");
                        last_holder = holder;
                    }
                }
                Ok(Attempt::Conflict) => {}
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "error acquiring lease"),
            }
            tokio::time::sleep(self.jittered_retry()).await;
        }
    }

    /// Renew every `retry_period` until that fails for `renew_deadline`;
    /// returns when leadership is lost.
    async fn renew_until_lost(&mut self, mut renewed_at: Instant) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = renewed_at + self.config.renew_deadline;
            // First, before any network round trip: were we asleep (SIGSTOP,
            // a starved runtime) past our deadline? Then another candidate
            // may already lead; stop without asking.
            if Instant::now() >= deadline {
                tracing::warn!(lease = %self.name, "renew deadline passed before we could renew; leadership lost");
                return;
            }
            // Retry within the deadline, as client-go's PollImmediateUntil.
            loop {
                let started = Instant::now();
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Leading)) => {
                        renewed_at = started;
                        self.valid_until.send_replace(Some(started + self.config.renew_deadline));
                        break;
                    }
                    Ok(Ok(Attempt::HeldBy(holder))) => {
                        tracing::warn!(lease = %self.name, %holder, "lease was taken over; leadership lost");
                        return;
                    }
                    Ok(Ok(Attempt::Conflict)) => {}
                    Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "error renewing lease"),
                    Err(_) => {
                        tracing::warn!(lease = %self.name, "failed to renew lease within the renew deadline; leadership lost");
                        return;
                    }
                }
                if tokio::time::timeout_at(deadline, tokio::time::sleep(self.config.retry_period)).await.is_err() {
                    tracing::warn!(lease = %self.name, "failed to renew lease within the renew deadline; leadership lost");
                    return;
                }
            }
        }
    }

    /// Give the lease up so a standby can take over right away.
    async fn release(&mut self) -> anyhow::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let current = Record::from_spec(lease.spec.as_ref());
        if current.holder_identity != self.identity {
            return Ok(());
        }
        let now = Utc::now();
        // client-go's release: empty holder, 1 s duration, transitions kept.
        let record = Record {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: current.leader_transitions,
        };
        lease.spec = Some(record.to_spec(lease.spec.clone().unwrap_or_default()));
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(())
    }

    /// Campaign, then run `on_started_leading(leadership)` while leading.
    ///
    /// - If the work finishes on its own, the lease is released (if
    ///   configured), `on_stopped_leading` runs, and this returns
    ///   [`Outcome::Finished`].
    /// - If leadership is lost, the work's future is dropped at once (it is
    ///   cancelled at its next await), `on_stopped_leading` runs, and this
    ///   returns [`Outcome::LostLeadership`]: the caller should exit the
    ///   process, as Kubernetes components do.
    ///
    /// The campaign itself never gives up; cancel the returned future to
    /// stop campaigning.
    pub async fn run<F, Fut>(mut self, on_started_leading: F, on_stopped_leading: impl FnOnce()) -> Outcome
    where
        F: FnOnce(Leadership) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let acquired_at = self.acquire().await;
        self.valid_until.send_replace(Some(acquired_at + self.config.renew_deadline));
        let work = on_started_leading(self.leadership());
        let outcome = tokio::select! {
            _ = work => Outcome::Finished,
            _ = self.renew_until_lost(acquired_at) => Outcome::LostLeadership,
        };
        self.valid_until.send_replace(None);
        if outcome == Outcome::Finished && self.config.release_on_cancel {
            if let Err(e) = self.release().await {
                tracing::warn!(lease = %self.name, error = %e, "failed to release lease");
            }
        }
        on_stopped_leading();
        outcome
    }
}

/// Convenience form of [`LeaderElector::new`] + [`LeaderElector::run`].
pub async fn run<F, Fut>(
    client: Client,
    lease_namespace: &str,
    lease_name: &str,
    identity: &str,
    config: LeaderElectionConfig,
    on_started_leading: F,
    on_stopped_leading: impl FnOnce(),
) -> anyhow::Result<Outcome>
where
    F: FnOnce(Leadership) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let elector = LeaderElector::new(client, lease_namespace, lease_name, identity, config)?;
    Ok(elector.run(on_started_leading, on_stopped_leading).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn rec(holder: &str, duration: i32, acquired: i64, renewed: i64, transitions: i32) -> Record {
        Record {
            holder_identity: holder.into(),
            lease_duration_seconds: duration,
            acquire_time: Some(t(acquired)),
            renew_time: Some(t(renewed)),
            leader_transitions: transitions,
        }
    }

    /// "me" looks at `current`, unchanged for `unchanged_for_secs` by its
    /// own clock, at wall time t(100), with a 15 s lease duration.
    fn check(current: Record, unchanged_for_secs: u64, expect: Option<Record>) {
        let got = next_record(&current, "me", Duration::from_secs(unchanged_for_secs), Duration::from_secs(15), t(100));
        assert_eq!(got, expect, "current: {current:?}, unchanged for {unchanged_for_secs}s");
    }

    #[test]
    fn acquire_and_renew_decisions() {
        // No holder (released lease): take it at once, count a transition.
        check(Record::from_spec(None), 0, Some(rec("me", 15, 100, 100, 1)));
        check(rec("", 1, 90, 90, 4), 0, Some(rec("me", 15, 100, 100, 5)));
        // Held by another and seen changing recently: wait.
        check(rec("other", 15, 0, 95, 2), 14, None);
        // Held by another, unchanged for a full lease duration by *our*
        // clock: expired, take over.
        check(rec("other", 15, 0, 95, 2), 15, Some(rec("me", 15, 100, 100, 3)));
        // The holder's renewTime is far in the past (its clock is wrong, or
        // ours is) but we only just saw the record change: not expired.
        check(rec("other", 15, 0, -10_000, 2), 1, None);
        // …and a renewTime in the future does not protect a dead leader.
        check(rec("other", 15, 0, 10_000, 2), 20, Some(rec("me", 15, 100, 100, 3)));
        // The holder's own lease duration counts, not ours.
        check(rec("other", 60, 0, 95, 2), 20, None);
        // We hold it: renew, keeping acquireTime and the transition count,
        // whatever the elapsed time.
        check(rec("me", 15, 42, 90, 7), 0, Some(rec("me", 15, 42, 100, 7)));
        check(rec("me", 15, 42, 90, 7), 100, Some(rec("me", 15, 42, 100, 7)));
    }

    #[test]
    fn record_round_trips_through_lease_spec() {
        let r = rec("me", 15, 1, 2, 3);
        let spec = r.to_spec(LeaseSpec::default());
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(Record::from_spec(Some(&spec)), r);
        // MicroTime serialises with microseconds, as Kubernetes writes it.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["renewTime"], "2023-11-14T22:13:22.000000Z");
    }

    #[test]
    fn config_validation() {
        assert!(LeaderElectionConfig::default().validate().is_ok());
        let bad = LeaderElectionConfig { renew_deadline: Duration::from_secs(20), ..Default::default() };
        assert!(bad.validate().is_err());
        let bad = LeaderElectionConfig { retry_period: Duration::from_secs(9), ..Default::default() };
        assert!(bad.validate().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_expires_by_local_clock() {
        let (tx, rx) = watch::channel(None);
        let l = Leadership { valid_until: rx };
        assert!(!l.is_leading());
        tx.send_replace(Some(Instant::now() + Duration::from_secs(10)));
        assert!(l.is_leading());
        // Like a SIGSTOP: time passes with nobody running. No message is
        // needed for the handle to know it is no longer safe to act.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!l.is_leading());
        let started = Instant::now();
        l.lost().await;
        assert_eq!(started, Instant::now());
        // `lost` also resolves when the deadline comes while waiting.
        tx.send_replace(Some(Instant::now() + Duration::from_secs(5)));
        l.lost().await;
        assert_eq!(Instant::now() - started, Duration::from_secs(5));
    }

    #[test]
    fn identities_are_unique() {
        assert_ne!(default_identity(), default_identity());
    }
}
