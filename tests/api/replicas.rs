//! Two replicas, one IPAM: vRA retries an allocation after its timeout, the load balancer sends
//! the retry to the other replica, and the first attempt is still in flight — so the same owner
//! is asked of two gateways at once. On a real phpIPAM 37 of 60 owners ended up holding two
//! addresses that way, on an Infoblox grid 7 of 40 (issue 11, point 6).
//!
//! Two full gateways (two [`ipam_gateway::Application`]s) share one stateful fake, each through
//! its own [`FaultProxy`] that delays every request by [`LATENCY`] — the network between a
//! replica and the IPAM (the fakes answer in microseconds; the recorded phpIPAM reports 3–5 ms
//! of its own work per call on loopback, `"time"` in `fixtures/phpipam/49-…json`, `84-…json`,
//! and a grid across a WAN takes longer). Without that delay the first attempt would be done
//! before the retry's lookup and the race would not happen. Each test counts how many owners
//! really raced (both attempts took an address) and asserts a minimum, so it cannot pass by
//! accident.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::resilience_proxy::{Fault, FaultProxy};
use crate::support::infoblox_fake::{FakeWapi, FakeWapiState};
use crate::support::matrix::{
    BackendKind, LAB_NETWORKS, PhpipamLab, infoblox_config, phpipam_config, seed_infoblox,
    seed_phpipam,
};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};
use crate::support::{AppOptions, TestApp, spawn_with};
use crate::vra_common::{filled, placeholders, vra};

/// Delay each replica's proxy adds to every request to the IPAM.
const LATENCY: Duration = Duration::from_millis(25);

enum Upstream {
    Phpipam(FakePhpipam, PhpipamLab),
    Infoblox(FakeWapi),
}

/// Two gateways on one fake IPAM, each behind its own slow proxy.
struct TwoReplicas {
    apps: [Arc<TestApp>; 2],
    proxies: [FaultProxy; 2],
    upstream: Upstream,
}

impl TwoReplicas {
    async fn start(kind: BackendKind) -> TwoReplicas {
        let (upstream, target) = match kind {
            BackendKind::Phpipam => {
                let mut state = FakeState::empty();
                let lab = seed_phpipam(&mut state);
                let fake = FakePhpipam::start_with(state).await;
                let url = fake.url.clone();
                (Upstream::Phpipam(fake, lab), url)
            }
            BackendKind::Infoblox => {
                let mut state = FakeWapiState::empty();
                seed_infoblox(&mut state);
                let fake = FakeWapi::start_with(state).await;
                let url = fake.url.clone();
                (Upstream::Infoblox(fake), url)
            }
            BackendKind::Embedded => panic!("the embedded store is single-instance"),
        };
        let proxies = [
            FaultProxy::start(&target).await,
            FaultProxy::start(&target).await,
        ];
        let mut apps = Vec::new();
        for p in &proxies {
            let config = match &upstream {
                Upstream::Phpipam(_, lab) => phpipam_config(&p.url, lab),
                Upstream::Infoblox(_) => infoblox_config(&p.url),
            };
            let app = spawn_with(AppOptions {
                config,
                ..Default::default()
            })
            .await;
            apps.push(Arc::new(app));
        }
        for p in &proxies {
            p.set(Fault::Slow(LATENCY));
        }
        let [a, b]: [Arc<TestApp>; 2] = apps.try_into().unwrap_or_else(|_| panic!("two apps"));
        TwoReplicas {
            apps: [a, b],
            proxies,
            upstream,
        }
    }

    /// Addresses the IPAM holds for `owner` (per the fake, not through a gateway).
    fn held_by(&self, owner: &str) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = match &self.upstream {
            Upstream::Phpipam(fake, _) => fake.with(|s| {
                s.addresses
                    .values()
                    .filter(|a| a.owner.as_deref() == Some(owner))
                    .map(|a| a.ip)
                    .collect()
            }),
            Upstream::Infoblox(fake) => fake
                .objects("record:host")
                .iter()
                .filter(|o| o.ea("ipamgw-owner").as_deref() == Some(owner))
                .flat_map(|o| {
                    o.fields
                        .get("ipv4addrs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["ipv4addr"].as_str()?.parse().ok())
                        .collect::<Vec<IpAddr>>()
                })
                .collect(),
        };
        out.sort();
        out
    }

    /// Addresses held in a lab network other than its gateway (per the fake).
    fn used_in(&self, name: &str) -> Vec<IpAddr> {
        let net = LAB_NETWORKS
            .iter()
            .find(|n| n.name == name)
            .expect("lab network");
        let gateway: IpAddr = net.gateway.parse().expect("gateway");
        let all: Vec<IpAddr> = match &self.upstream {
            Upstream::Phpipam(fake, lab) => {
                let id = lab
                    .subnets
                    .iter()
                    .find(|(n, _)| *n == name)
                    .expect("subnet")
                    .1;
                fake.addresses_in(id).iter().map(|a| a.ip).collect()
            }
            Upstream::Infoblox(fake) => fake.used_in(net.address_space, net.cidr),
        };
        all.into_iter().filter(|a| *a != gateway).collect()
    }

    /// Address records the replicas deleted (each release of a record is one `DELETE`).
    fn deletions(&self) -> usize {
        let record = |(method, path): &(String, String)| {
            method == "DELETE"
                && match self.upstream {
                    Upstream::Phpipam(..) => path.contains("/addresses/"),
                    Upstream::Infoblox(_) => path.contains("/record:host/"),
                }
        };
        self.proxies
            .iter()
            .flat_map(FaultProxy::log)
            .filter(|(k, _)| record(k))
            .map(|(_, n)| n)
            .sum()
    }

    async fn stop(self) {
        for app in self.apps {
            if let Ok(app) = Arc::try_unwrap(app) {
                app.stop().await;
            }
        }
        drop(self.proxies);
        drop(self.upstream);
    }
}

/// One attempt's answer: status, body, and when it was in flight.
struct Attempt {
    status: StatusCode,
    body: Value,
    started: Instant,
    ended: Instant,
}

async fn attempt(app: &TestApp, inputs: Value, after: Duration) -> Attempt {
    tokio::time::sleep(after).await;
    let started = Instant::now();
    let (status, body) = vra(app, "allocate-ip", &inputs).await;
    Attempt {
        status,
        body,
        started,
        ended: Instant::now(),
    }
}

/// The addresses of one vRA answer, per `ipAllocationId`.
fn addresses(out: &Value) -> Vec<(String, Vec<String>)> {
    out["ipAllocations"]
        .as_array()
        .unwrap_or_else(|| panic!("no ipAllocations in {out:#}"))
        .iter()
        .map(|a| {
            let id = a["ipAllocationId"].as_str().expect("id").to_owned();
            let ips = a["ipAddresses"]
                .as_array()
                .expect("ipAddresses")
                .iter()
                .map(|ip| ip.as_str().expect("ip").to_owned())
                .collect();
            (id, ips)
        })
        .collect()
}

/// Every machine's vRA request (`fixture`, one resource each) is sent to replica A and, a
/// moment later while the first is still in flight, to replica B. Checks that each NIC owner
/// holds exactly one address, that both answers name it, and that nothing else is held; returns
/// (owners whose two attempts overlapped in time, owners whose two attempts both took an
/// address).
async fn retried_on_the_other_replica(
    kind: BackendKind,
    fixture: &str,
    machines: usize,
    nics: &[&str],
) -> (usize, usize) {
    let r = TwoReplicas::start(kind).await;
    let before: Vec<Vec<IpAddr>> = nics.iter().map(|net| r.used_in(net)).collect();
    let values = [
        placeholders(&r.apps[0]).await,
        placeholders(&r.apps[1]).await,
    ];
    let resource = |i: usize| format!("/resources/compute/replica-race-{i:03}");
    let mut tasks = Vec::new();
    for i in 0..machines {
        let rid = resource(i);
        let inputs: Vec<Value> = values
            .iter()
            .map(|v| {
                let mut inputs = filled(fixture, v, &[("resource", rid.as_str())]);
                // One host name per machine, as vRA sends (both attempts carry the same).
                inputs["resourceInfo"]["name"] = Value::String(format!("race-vm-{i:03}"));
                inputs
            })
            .collect();
        let [a, b] = [r.apps[0].clone(), r.apps[1].clone()];
        // The retry follows 0–2 request latencies after the first attempt: every interleaving
        // of the two attempts' lookups and allocations occurs somewhere among the machines.
        let delay = LATENCY / 2 * u32::try_from(i % 5).expect("small");
        tasks.push(tokio::spawn(async move {
            let (first, retry) = tokio::join!(
                attempt(&a, inputs[0].clone(), Duration::ZERO),
                attempt(&b, inputs[1].clone(), delay),
            );
            (first, retry)
        }));
    }
    let mut overlapped = 0;
    let mut answered: Vec<String> = Vec::new();
    // Failures are counted over every machine before asserting, so a failure says how many.
    let mut disagreed = Vec::new();
    let mut not_one = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (first, retry) = t.await.expect("task");
        for (which, a) in [("first attempt", &first), ("retry", &retry)] {
            assert_eq!(
                a.status,
                StatusCode::OK,
                "machine {i}, {which} on {kind}: {:#}",
                a.body
            );
        }
        if retry.started < first.ended && first.started < retry.ended {
            overlapped += 1;
        }
        let (one, two) = (addresses(&first.body), addresses(&retry.body));
        if one != two {
            disagreed.push(format!("machine {i}: {one:?} / {two:?}"));
        }
        for (k, (_, ips)) in one.iter().enumerate() {
            assert_eq!(ips.len(), 1, "one address per NIC: {one:?}");
            let owner = format!("vra:{}/nic{k}", resource(i));
            let held: Vec<String> = r.held_by(&owner).iter().map(ToString::to_string).collect();
            if &held != ips {
                not_one.push(format!("{owner} holds {held:?}, answered {ips:?}"));
            }
            answered.extend(ips.iter().cloned());
        }
    }
    // Both replicas took an address for an owner: one of the two was released, or both remain.
    let added: usize = nics
        .iter()
        .zip(&before)
        .map(|(net, before)| r.used_in(net).len() - before.len())
        .sum();
    let raced = added + r.deletions() - machines * nics.len();
    eprintln!(
        "{kind} {fixture}: {machines} machines, {overlapped} overlapped in time, \
         {raced} NIC owners had an address taken by both replicas; {} machines got two \
         different answers, {} NIC owners do not hold exactly the answered address",
        disagreed.len(),
        not_one.len()
    );
    assert!(
        disagreed.is_empty(),
        "{kind}: {} of {machines} machines got different answers from the two replicas: {disagreed:#?}",
        disagreed.len()
    );
    assert!(
        not_one.is_empty(),
        "{kind}: {} of {} NIC owners do not hold exactly the one address both answers name: {not_one:#?}",
        not_one.len(),
        machines * nics.len()
    );
    let distinct: BTreeSet<&String> = answered.iter().collect();
    assert_eq!(
        distinct.len(),
        machines * nics.len(),
        "no address named for two owners"
    );
    for (net, before) in nics.iter().zip(&before) {
        let now = r.used_in(net);
        assert_eq!(
            now.len() - before.len(),
            machines,
            "{kind}: {net} must hold exactly one new address per machine"
        );
    }
    r.stop().await;
    (overlapped, raced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn phpipam_a_retry_on_the_other_replica_gets_the_same_one_address() {
    let (overlapped, raced) =
        retried_on_the_other_replica(BackendKind::Phpipam, "allocate-ip", 60, &["lab-servers"])
            .await;
    assert_eq!(
        overlapped, 60,
        "every retry starts while its first attempt runs"
    );
    assert!(
        raced >= 20,
        "only {raced} of 60 owners raced: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn infoblox_a_retry_on_the_other_replica_gets_the_same_one_address() {
    let (overlapped, raced) =
        retried_on_the_other_replica(BackendKind::Infoblox, "allocate-ip", 60, &["lab-servers"])
            .await;
    assert_eq!(
        overlapped, 60,
        "every retry starts while its first attempt runs"
    );
    assert!(
        raced >= 20,
        "only {raced} of 60 owners raced: the test proves nothing"
    );
}

const TWO_NICS: &[&str] = &["lab-servers", "lab-dmz"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn phpipam_a_two_nic_retry_on_the_other_replica_gets_the_same_two_addresses() {
    let (overlapped, raced) =
        retried_on_the_other_replica(BackendKind::Phpipam, "allocate-ip-2nic", 24, TWO_NICS).await;
    assert_eq!(
        overlapped, 24,
        "every retry starts while its first attempt runs"
    );
    assert!(
        raced >= 10,
        "only {raced} of 48 NIC owners raced: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn infoblox_a_two_nic_retry_on_the_other_replica_gets_the_same_two_addresses() {
    let (overlapped, raced) =
        retried_on_the_other_replica(BackendKind::Infoblox, "allocate-ip-2nic", 24, TWO_NICS).await;
    assert_eq!(
        overlapped, 24,
        "every retry starts while its first attempt runs"
    );
    assert!(
        raced >= 10,
        "only {raced} of 48 NIC owners raced: the test proves nothing"
    );
}

fn record(address: &str, reference: &str) -> ipam_gateway::domain::AllocationInfo {
    ipam_gateway::domain::AllocationInfo {
        network: "7".into(),
        address: address.parse().expect("address"),
        owner: Some(ipam_gateway::domain::Owner::parse("vm-1").expect("owner")),
        details: Default::default(),
        reference: Some(reference.into()),
    }
}

/// phpIPAM: the lower address id was written first (ids are AUTO_INCREMENT), compared as
/// numbers, whatever the addresses; a reference that is not an id ranks last.
#[tokio::test]
async fn phpipam_ranks_the_lower_address_id_first() {
    use std::cmp::Ordering::{Greater, Less};
    let lab = crate::support::matrix::spawn_lab(BackendKind::Phpipam, false).await;
    let b = lab.ipam.backend("ipam").expect("backend").clone();
    let (early, late) = (record("10.20.0.9", "9"), record("10.20.0.3", "10"));
    assert_eq!(
        b.first_written(&early, &late),
        Less,
        "9 before 10, not as text"
    );
    assert_eq!(b.first_written(&late, &early), Greater);
    let odd = record("10.20.0.2", "not-an-id");
    assert_eq!(b.first_written(&late, &odd), Less);
    assert_eq!(b.first_written(&odd, &early), Greater);
    lab.stop().await;
}

/// Infoblox: the lower address was taken first (`func:nextavailableip` hands out the lowest
/// free one), whatever the refs say.
#[tokio::test]
async fn infoblox_ranks_the_lower_address_first() {
    use std::cmp::Ordering::{Greater, Less};
    let lab = crate::support::matrix::spawn_lab(BackendKind::Infoblox, false).await;
    let b = lab.ipam.backend("ipam").expect("backend").clone();
    let low = record(
        "10.20.0.3",
        "record:host/ZG5zLmhvc3QkLl9kZWZhdWx0Lnp6:b/default",
    );
    let high = record(
        "10.20.0.10",
        "record:host/ZG5zLmhvc3QkLl9kZWZhdWx0LmFh:a/default",
    );
    assert_eq!(b.first_written(&low, &high), Less);
    assert_eq!(b.first_written(&high, &low), Greater);
    lab.stop().await;
}
