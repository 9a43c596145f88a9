//! Leader election against a real apiserver: one leader at a time, a standby
//! takes over when the leader dies, a finished leader releases the lease,
//! and a frozen leader (SIGSTOP longer than the lease) notices it lost the
//! lease before it acts again.
//!
//! Each test starts its own etcd and apiserver (`e2e::Cluster`).

mod machinery_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use machinery::leader_election::{LeaderElectionConfig, LeaderElector, Outcome};
use machinery_common::*;

const NS: &str = "default";
use tokio::sync::oneshot;

/// Short timings so the tests take seconds (client-go's rules still hold:
/// lease > renew deadline > 1.2 × retry period).
fn fast() -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(250),
        release_on_cancel: true,
    }
}

const WAIT: Duration = Duration::from_secs(20);

fn wall_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

async fn lease(cluster: &e2e::Cluster, name: &str) -> Lease {
    Api::<Lease>::namespaced(cluster.client().await, NS).get(name).await.unwrap()
}

/// Starts an elector whose work signals when it starts and then runs until
/// cancelled. Returns (started signal, the task).
async fn candidate(
    client: kube::Client,
    ns: &str,
    id: &str,
) -> (oneshot::Receiver<u128>, tokio::task::JoinHandle<Outcome>) {
    let (tx, rx) = oneshot::channel();
    let elector = LeaderElector::new(client, ns, "lock", id, fast()).unwrap();
    let task = tokio::spawn(elector.run(
        move |_leadership| async move {
            let _ = tx.send(wall_ms());
            std::future::pending::<()>().await
        },
        || {},
    ));
    (rx, task)
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_dies() {
    let cluster = e2e::Cluster::start();
    let (a_started, a) = candidate(cluster.client().await, NS, "a").await;
    tokio::time::timeout(WAIT, a_started).await.unwrap().unwrap();
    let (b_client, sent) = recording_client(&cluster.api.url).await;
    let (mut b_started, b) = candidate(b_client, NS, "b").await;

    // While `a` renews, `b` stays a standby. Proof that `b` looked long
    // enough to have taken over from a silent `a`: it read the lease more
    // than a lease duration (and a retry) after it first saw it, and then
    // sent its next request — it had decided on what it read.
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/lock");
    let waited = fast().lease_duration + fast().retry_period;
    eventually("b to look at the lease for longer than a lease duration", WAIT, || async {
        let sent = sent.lock().unwrap();
        let first = sent.iter().find(|r| r.path == lease_path)?.answered?;
        let late = sent.iter().position(|r| r.path == lease_path && r.answered.is_some_and(|a| a >= first + waited))?;
        (sent.len() > late + 1).then_some(())
    })
    .await;
    let tried: Vec<Sent> = sent.lock().unwrap().iter().filter(|r| r.method != http::Method::GET).cloned().collect();
    assert!(tried.is_empty(), "b tried to write while a was renewing: {tried:?}");
    assert!(b_started.try_recv().is_err(), "b became leader while a was renewing");
    let l = lease(&cluster, "lock").await;
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.renew_time.unwrap().0 > spec.acquire_time.unwrap().0, "a never renewed");

    // `a` dies without releasing: `b` waits out the lease, then takes over.
    a.abort();
    let died = wall_ms();
    let b_at = tokio::time::timeout(WAIT, b_started).await.expect("b never took over").unwrap();
    // b must wait for the lease to expire by its own clock, not jump in.
    assert!(b_at - died >= 1000, "b took over {} ms after a died", b_at - died);
    let spec = lease(&cluster, "lock").await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b.abort();
}

#[tokio::test]
async fn finished_leader_releases_the_lease() {
    let cluster = e2e::Cluster::start();
    let stopped = Arc::new(Mutex::new(false));
    let elector = LeaderElector::new(cluster.client().await, NS, "lock", "a", fast()).unwrap();
    let outcome = tokio::time::timeout(
        WAIT,
        elector.run(|l| async move { assert!(l.is_leading()) }, {
            let stopped = stopped.clone();
            move || *stopped.lock().unwrap() = true
        }),
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert!(*stopped.lock().unwrap(), "on_stopped_leading not called");
    // Released as client-go does: no holder, 1 s duration.
    let spec = lease(&cluster, "lock").await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(""));
    assert_eq!(spec.lease_duration_seconds, Some(1));
    // So the next candidate gets it at its first try.
    let (b_started, b) = candidate(cluster.client().await, NS, "b").await;
    tokio::time::timeout(Duration::from_millis(1000), b_started).await.expect("b did not take the released lease").unwrap();
    assert_eq!(lease(&cluster, "lock").await.spec.unwrap().lease_transitions, Some(1));
    b.abort();
}

/// The leader loses its connection (a partition): it must give up within
/// the renew deadline, cancelling its work, before the standby takes over.
#[tokio::test]
async fn partitioned_leader_steps_down_before_standby_takes_over() {
    let cluster = e2e::Cluster::start();
    let proxy = Proxy::start(&cluster.api.url).await;
    let a_stopped = Arc::new(Mutex::new(None::<u128>));
    let work_dropped = Arc::new(Mutex::new(None::<u128>));
    let (a_tx, a_started) = oneshot::channel();
    let a = tokio::spawn({
        let (a_stopped, work_dropped) = (a_stopped.clone(), work_dropped.clone());
        let elector = LeaderElector::new(client_for(&proxy.url).await, NS, "lock", "a", fast()).unwrap();
        elector.run(
            move |_| async move {
                // Records when the work is cancelled (dropped).
                struct OnDrop(Arc<Mutex<Option<u128>>>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        *self.0.lock().unwrap() = Some(wall_ms());
                    }
                }
                let _guard = OnDrop(work_dropped);
                let _ = a_tx.send(());
                std::future::pending::<()>().await
            },
            move || *a_stopped.lock().unwrap() = Some(wall_ms()),
        )
    });
    tokio::time::timeout(WAIT, a_started).await.unwrap().unwrap();
    let (b_started, b) = candidate(cluster.client().await, NS, "b").await;

    proxy.cut();
    let outcome = tokio::time::timeout(WAIT, a).await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::LostLeadership);
    let b_at = tokio::time::timeout(WAIT, b_started).await.unwrap().unwrap();
    let stopped = a_stopped.lock().unwrap().expect("on_stopped_leading not called");
    let dropped = work_dropped.lock().unwrap().expect("leader's work not cancelled");
    assert!(dropped <= stopped && stopped < b_at, "a stopped at {stopped}, work dropped at {dropped}, b led at {b_at}");
    b.abort();
}

/// Runs as a child process (see below): campaigns as `RKUBE_LE_ID` against
/// the apiserver at `RKUBE_LE_URL` and, while
/// leading, prints `ACT <wall ms>` every 20 ms if it may act, `REFUSED` if
/// its Leadership says no. On losing the lease prints `LOST` and exits 3 —
/// what a component does.
#[tokio::test]
#[ignore = "helper: run by frozen_leader_notices_lost_lease_before_acting"]
async fn leader_child_process() {
    let Ok(id) = std::env::var("RKUBE_LE_ID") else { return };
    let url = std::env::var("RKUBE_LE_URL").unwrap();
    let elector = LeaderElector::new(client_for(&url).await, NS, "lock", &id, fast()).unwrap();
    let outcome = elector
        .run(
            |l| async move {
                loop {
                    if l.is_leading() {
                        println!("ACT {}", wall_ms());
                    } else {
                        println!("REFUSED {}", wall_ms());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            || println!("LOST {}", wall_ms()),
        )
        .await;
    assert_eq!(outcome, Outcome::LostLeadership);
    std::process::exit(3);
}

/// A frozen leader must not act again: SIGSTOP the leader for longer than the
/// lease, let the standby take over, SIGCONT → the old leader notices it
/// lost the lease before it acts again, and exits.
#[tokio::test]
async fn frozen_leader_notices_lost_lease_before_acting() {
    let cluster = e2e::Cluster::start();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["leader_child_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("RKUBE_LE_ID", "frozen")
        .env("RKUBE_LE_URL", &cluster.api.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // Usually already exited; then this is a harmless no-op.
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).stderr(Stdio::null()).status();
        }
    }
    let pid = child.id();
    let _kill = Kill(pid);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Wait until the child leads and acts.
    tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.recv().await {
            if l.starts_with("ACT ") {
                break;
            }
        }
    })
    .await
    .expect("child never acted as leader");

    let (b_started, b) = candidate(cluster.client().await, NS, "standby").await;
    assert!(Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap().success());
    let stopped_at = wall_ms();
    let b_at = tokio::time::timeout(WAIT, b_started).await.expect("standby never took over").unwrap();
    assert!(Command::new("kill").args(["-CONT", &pid.to_string()]).status().unwrap().success());

    let mut after = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.recv().await {
            let lost = l.starts_with("LOST");
            after.push(l);
            if lost {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("child never noticed it lost the lease; printed {after:?}"));
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(3), "child output after SIGCONT: {after:?}");
    // Nothing acted between the standby taking over and the child noticing.
    // `after` may begin with lines printed before the freeze, up to the
    // millisecond of `stopped_at` (taken once the SIGSTOP was sent); any
    // line printed after SIGCONT is stamped later than that.
    let acted: Vec<&String> = after
        .iter()
        .filter(|l| l.strip_prefix("ACT ").and_then(|t| t.parse::<u128>().ok()).is_some_and(|t| t > stopped_at))
        .collect();
    assert!(acted.is_empty(), "old leader acted after being frozen (standby led since {b_at}): {acted:?}");
    let spec = lease(&cluster, "lock").await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("standby"));
    b.abort();
}
