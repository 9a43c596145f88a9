//! High availability: several apiservers on one 3-member etcd cluster:
//!
//! - master leases: the `kubernetes` Service's Endpoints list exactly the
//!   live apiservers; a kill -9'd one is pruned once its lease expires, a
//!   restarted one comes back, one stopped cleanly leaves at once;
//! - consistency: writes through any apiserver reach the watchers of every
//!   apiserver in the same order with the same resourceVersions;
//! - allocation: concurrent Service creates through different apiservers
//!   never get the same ClusterIP or NodePort.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use e2e::eventually_blocking;
use e2e::ha::{client_for, EtcdCluster, HaApiServer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use serde_json::json;

/// The addresses in `default/kubernetes` Endpoints, and its ports.
fn master_endpoints(url: &str) -> (Vec<String>, Vec<(String, i64, String)>) {
    let r = e2e::http(url, "GET", "/api/v1/namespaces/default/endpoints/kubernetes", None, b"");
    if r.status != 200 {
        return (vec![], vec![]);
    }
    let v = r.json();
    let subsets = v["subsets"].as_array().cloned().unwrap_or_default();
    let mut ips: Vec<String> = subsets.iter().flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default()).filter_map(|a| a["ip"].as_str().map(str::to_string)).collect();
    ips.sort();
    let ports = subsets
        .iter()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| (p["name"].as_str().unwrap_or("").to_string(), p["port"].as_i64().unwrap_or(0), p["protocol"].as_str().unwrap_or("").to_string()))
        .collect();
    (ips, ports)
}

/// The etcd revision of an apiserver's master lease key (`None`: no key).
async fn lease_revision(c: &etcd_client::Client, ip: &str) -> Option<i64> {
    let mut c = c.clone();
    c.get(format!("/registry/masterleases/{ip}"), None).await.ok()?.kvs().first().map(|kv| kv.mod_revision())
}

fn ips(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_leases_keep_the_kubernetes_endpoints_to_the_live_apiservers() {
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    // TTL 3 s: reconciled every 2 s (upstream: 15 s and 10 s).
    let flags = ["--master-endpoint-reconcile-ttl=3s", "--secure-port=6443"];
    let mut apis: Vec<HaApiServer> = (0..3).map(|i| HaApiServer::start(&etcd.endpoints(), dir.path(), i, &flags)).collect();
    let url = apis[0].url.clone();
    let all = ips(&["127.0.0.10", "127.0.0.11", "127.0.0.12"]);
    eventually_blocking("the three apiservers listed", Duration::from_secs(15), || (master_endpoints(&url).0 == all).then_some(()));
    let (_, ports) = master_endpoints(&url);
    assert_eq!(ports, [("https".to_string(), 6443, "TCP".to_string())]);
    let ep = e2e::http(&url, "GET", "/api/v1/namespaces/default/endpoints/kubernetes", None, b"").json();
    assert_eq!(ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], "true", "{ep}");
    let svc = e2e::http(&url, "GET", "/api/v1/namespaces/default/services/kubernetes", None, b"").json();
    assert_eq!(svc["spec"]["ports"], json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]), "{svc}");

    // The leases themselves: one key per apiserver, each on an etcd lease
    // of the TTL, holding an Endpoints record with its address.
    let mut c = etcd.client().await;
    let resp = c.get("/registry/masterleases/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    let keys: Vec<String> = resp.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect();
    assert_eq!(keys, ["/registry/masterleases/127.0.0.10", "/registry/masterleases/127.0.0.11", "/registry/masterleases/127.0.0.12"]);
    for kv in resp.kvs() {
        let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
        assert_eq!(v["kind"], "Endpoints");
        assert_eq!(v["subsets"][0]["addresses"][0]["ip"], kv.key_str().unwrap().rsplit('/').next().unwrap());
        assert_ne!(kv.lease(), 0, "a master lease key must carry an etcd lease");
        let ttl = c.lease_time_to_live(kv.lease(), None).await.unwrap();
        assert!(ttl.granted_ttl() == 3 && ttl.ttl() <= 3, "granted {} left {}", ttl.granted_ttl(), ttl.ttl());
    }

    // kill -9: no goodbye; pruned once its lease expires (TTL + one interval at most).
    let killed = Instant::now();
    apis[2].proc.kill9();
    eventually_blocking("the killed apiserver pruned", Duration::from_secs(10), || (master_endpoints(&url).0 == all[..2]).then_some(()));
    let pruned_after = killed.elapsed();
    eprintln!("kill -9'd apiserver pruned from the kubernetes endpoints after {pruned_after:?}");
    assert!(pruned_after >= Duration::from_secs(1), "pruned before its lease could expire: {pruned_after:?}");

    // It comes back: listed again within one interval.
    apis[2].restart();
    eventually_blocking("the restarted apiserver listed again", Duration::from_secs(8), || (master_endpoints(&url).0 == all).then_some(()));

    // A clean stop (SIGTERM) removes it at once, without waiting for the TTL.
    let stopped = Instant::now();
    let st = apis[1].proc.terminate(Duration::from_secs(10)).expect("apiserver exits on SIGTERM");
    assert!(st.success(), "{st}");
    eventually_blocking("the stopped apiserver removed", Duration::from_secs(2), || (master_endpoints(&url).0 == ips(&["127.0.0.10", "127.0.0.12"])).then_some(()));
    eprintln!("SIGTERM'd apiserver removed after {:?}", stopped.elapsed());
    // And stays out: nobody re-adds a stopped apiserver. Proof that both
    // survivors' reconcilers ran since: each pass begins by rewriting the
    // apiserver's own lease key, so two rewrites of each mean a whole pass
    // (lease, then Endpoints) began and ended after the stop.
    let survivors = ["127.0.0.10", "127.0.0.12"];
    let seen: std::sync::Mutex<Vec<Vec<i64>>> = std::sync::Mutex::new(vec![Vec::new(); survivors.len()]);
    e2e::eventually("two lease rewrites by each survivor", Duration::from_secs(20), || async {
        for (i, ip) in survivors.iter().enumerate() {
            if let Some(r) = lease_revision(&c, ip).await {
                let mut seen = seen.lock().unwrap();
                if seen[i].last() != Some(&r) {
                    seen[i].push(r);
                }
            }
        }
        seen.lock().unwrap().iter().all(|revs| revs.len() >= 3).then_some(())
    })
    .await;
    assert_eq!(master_endpoints(&url).0, ips(&survivors));
}

/// (type, name, resourceVersion) of every event a watcher saw.
type Seen = Vec<(String, String, String)>;

/// `opened` counts watchers whose first watch request was answered.
async fn watch_all(url: String, ns: String, from: String, want: usize, opened: Arc<AtomicUsize>) -> Seen {
    let api: Api<ConfigMap> = Api::namespaced(client_for(&url).await, &ns);
    let mut seen = Seen::new();
    let mut rv = from;
    let mut first = true;
    // A watch may end (server timeout); resume from the last rv, as informers do.
    while seen.len() < want {
        let stream = api.watch(&WatchParams::default().timeout(60), &rv).await.unwrap();
        if std::mem::take(&mut first) {
            opened.fetch_add(1, Ordering::SeqCst);
        }
        futures::pin_mut!(stream);
        while let Some(ev) = stream.try_next().await.unwrap() {
            let (t, o) = match ev {
                WatchEvent::Added(o) => ("ADDED", o),
                WatchEvent::Modified(o) => ("MODIFIED", o),
                WatchEvent::Deleted(o) => ("DELETED", o),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => panic!("watch error on {url}: {e:?}"),
            };
            rv = o.metadata.resource_version.clone().unwrap();
            seen.push((t.to_string(), o.metadata.name.clone().unwrap(), rv.clone()));
            if seen.len() >= want {
                break;
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_apiserver_sees_every_write_in_the_same_order() {
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let apis: Vec<HaApiServer> = (0..3).map(|i| HaApiServer::start(&etcd.endpoints(), dir.path(), i, &[])).collect();
    let ns = "consistency";
    let c0 = client_for(&apis[0].url).await;
    let created = Api::<Namespace>::all(c0.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let from = created.metadata.resource_version.unwrap();

    // Each writer, on its own apiserver: 20 objects created, each updated
    // twice, every other one deleted: 20 + 40 + 10 events.
    const PER_WRITER: usize = 20;
    let per_writer_events = PER_WRITER * 3 + PER_WRITER / 2;
    let want = per_writer_events * apis.len();
    let opened = Arc::new(AtomicUsize::new(0));
    let watchers: Vec<_> = apis.iter().map(|a| tokio::spawn(watch_all(a.url.clone(), ns.to_string(), from.clone(), want, opened.clone()))).collect();
    // The writes start once every watch is open, so they are delivered live.
    e2e::eventually("every watcher's watch open", Duration::from_secs(30), || async { (opened.load(Ordering::SeqCst) == apis.len()).then_some(()) }).await;
    let writers: Vec<_> = apis
        .iter()
        .enumerate()
        .map(|(w, a)| {
            let url = a.url.clone();
            tokio::spawn(async move {
                let api: Api<ConfigMap> = Api::namespaced(client_for(&url).await, ns);
                let mut acked = Vec::new();
                for i in 0..PER_WRITER {
                    let name = format!("w{w}-{i}");
                    let o = api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": "0"}})).unwrap()).await.unwrap();
                    acked.push(o.metadata.resource_version.unwrap());
                    for v in 1..=2 {
                        let o = api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"data": {"v": v.to_string()}}))).await.unwrap();
                        acked.push(o.metadata.resource_version.unwrap());
                    }
                    if i % 2 == 0 {
                        api.delete(&name, &DeleteParams::default()).await.unwrap();
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let mut streams = Vec::new();
    for w in watchers {
        streams.push(tokio::time::timeout(Duration::from_secs(60), w).await.expect("watchers got every event").unwrap());
    }
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(s.len(), want, "apiserver {i} watcher");
        // Strictly increasing resourceVersions: etcd's order, no repeats.
        let rvs: Vec<i64> = s.iter().map(|(_, _, rv)| rv.parse().unwrap()).collect();
        assert!(rvs.windows(2).all(|w| w[0] < w[1]), "apiserver {i}: resourceVersions out of order");
        assert_eq!(*s, streams[0], "apiserver {i}'s watcher saw a different history than apiserver 0's");
    }
    // Every acknowledged write (through whichever apiserver) is in every stream.
    let in_stream: BTreeSet<String> = streams[0].iter().map(|(_, _, rv)| rv.clone()).collect();
    let missing: Vec<&String> = acked.iter().filter(|rv| !in_stream.contains(*rv)).collect();
    assert!(missing.is_empty(), "acknowledged writes not seen by watchers: {missing:?}");
    let kinds: BTreeMap<String, usize> = streams[0].iter().fold(BTreeMap::new(), |mut m, (t, _, _)| {
        *m.entry(t.clone()).or_default() += 1;
        m
    });
    assert_eq!(kinds, BTreeMap::from([("ADDED".into(), 60), ("MODIFIED".into(), 120), ("DELETED".into(), 30)]));
    // A consistent list through each apiserver agrees too.
    for a in &apis {
        let l = Api::<ConfigMap>::namespaced(client_for(&a.url).await, ns).list(&ListParams::default()).await.unwrap();
        assert_eq!(l.items.len(), 30, "{}", a.url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_service_creates_on_three_apiservers_never_share_an_ip_or_port() {
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    // Small ranges: 61 free ClusterIPs (a /26, less network, broadcast and
    // the kubernetes service's) and 64 NodePorts, so allocators collide a lot.
    let flags = ["--service-cluster-ip-range=10.96.0.0/26", "--service-node-port-range=30000-30063"];
    let apis: Vec<HaApiServer> = (0..3).map(|i| HaApiServer::start(&etcd.endpoints(), dir.path(), i, &flags)).collect();
    const EACH: usize = 18;
    let mut tasks = Vec::new();
    for (a, api) in apis.iter().enumerate() {
        for t in 0..2 {
            let url = api.url.clone();
            tasks.push(tokio::spawn(async move {
                let svcs: Api<Service> = Api::namespaced(client_for(&url).await, "default");
                let mut got = Vec::new();
                for i in 0..EACH / 2 {
                    let name = format!("s{a}-{t}-{i}");
                    let svc: Service = serde_json::from_value(json!({"metadata": {"name": name},
                        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}}))
                    .unwrap();
                    let s = svcs.create(&PostParams::default(), &svc).await.unwrap_or_else(|e| panic!("create {name}: {e}"));
                    let spec = s.spec.unwrap();
                    got.push((name, spec.cluster_ip.unwrap(), spec.ports.unwrap()[0].node_port.unwrap()));
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t.unwrap());
    }
    assert_eq!(all.len(), EACH * 3);
    let ipset: BTreeSet<&String> = all.iter().map(|(_, ip, _)| ip).collect();
    let portset: BTreeSet<i32> = all.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(ipset.len(), all.len(), "a ClusterIP was handed out twice: {all:?}");
    assert_eq!(portset.len(), all.len(), "a NodePort was handed out twice: {all:?}");
    assert!(!ipset.contains(&"10.96.0.1".to_string()), "the kubernetes service's address was reused");
    // What the services hold is what the allocation records say, seen from another apiserver.
    let listed = Api::<Service>::namespaced(client_for(&apis[2].url).await, "default").list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), all.len() + 1);
    // The rest of the range can still be allocated: nothing leaked, nothing double-booked.
    let svcs: Api<Service> = Api::namespaced(client_for(&apis[1].url).await, "default");
    let stream = futures::stream::iter(0..(61 - all.len())).then(|i| {
        let svcs = svcs.clone();
        async move {
            let svc: Service = serde_json::from_value(json!({"metadata": {"name": format!("fill-{i}")}, "spec": {"ports": [{"port": 80}]}})).unwrap();
            svcs.create(&PostParams::default(), &svc).await.map(|s| s.spec.unwrap().cluster_ip.unwrap())
        }
    });
    let filled: Vec<String> = stream.try_collect().await.expect("every remaining address allocates");
    let mut everything: BTreeSet<String> = ipset.into_iter().cloned().collect();
    everything.extend(filled);
    assert_eq!(everything.len(), 61);
    let full = svcs
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "one-too-many"}, "spec": {"ports": [{"port": 80}]}})).unwrap())
        .await;
    assert!(matches!(&full, Err(kube::Error::Api(e)) if e.message.contains("range is full")), "{full:?}");
}
