//! A gateway killed (SIGKILL) in the middle of a 2-NIC vRA allocate-ip on phpIPAM or Infoblox, then vRA's
//! retry of the very same request against a fresh gateway process: no leaked and no doubled
//! address. The owner marker written with the first NIC's address lets the retry find it.
//!
//! The real binary runs as a process; the stateful fake and a fault proxy run in the test. The
//! proxy holds the second NIC's allocation (phpIPAM `POST addresses/first_free/{dmz}/`, WAPI
//! `POST record:host` for next_available_ip in 10.30.0.0/26), so the kill lands after the first
//! address is taken and before (or, in the `..._after_...` case, right after) the second. On
//! Infoblox the two NICs' host records share the machine's name: the grid answers NIC 1's first
//! POST "already exists" and the gateway posts again under an owner-specific name
//! (`<name>-<hash>`); in the `..._after_...` case that second POST, the one that creates the
//! record, is the one whose answer is lost.

use std::path::Path;
use std::time::Duration;

use axum::http::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::resilience_proxy::{Fault, FaultProxy};
use crate::support::DEMO_PASSWORD;
use crate::support::gateway_process::{GatewayProcess, Stderr};
use crate::support::infoblox_fake::{FakeWapi, FakeWapiState};
use crate::support::matrix::{
    BackendKind, LAB_NETWORKS, LabNetwork, PhpipamLab, infoblox_config, phpipam_config,
    seed_infoblox, seed_phpipam,
};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};
use crate::vra_common::{fill, fixture};

/// `ipam-gateway --config <file> serve` in `dir` on a free loopback port (plain HTTP); dropping
/// it is the SIGKILL.
fn start(dir: &Path, config: &Path) -> GatewayProcess {
    let gw = GatewayProcess::with_config(dir, config, &[], Stderr::Discard);
    assert!(
        gw.base_url.starts_with("http://"),
        "no http URL in {:?}",
        gw.banner
    );
    gw
}

fn subnet(lab: &PhpipamLab, name: &str) -> u64 {
    lab.subnets
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| *id)
        .unwrap_or_else(|| panic!("no subnet {name}"))
}

fn lab_net(name: &str) -> &'static LabNetwork {
    LAB_NETWORKS
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no lab network {name}"))
}

/// The fake behind the proxy, and what the test needs to know of it.
enum Upstream {
    Phpipam(FakePhpipam, PhpipamLab),
    Infoblox(FakeWapi),
}

impl Upstream {
    async fn start(kind: BackendKind) -> Upstream {
        match kind {
            BackendKind::Phpipam => {
                let mut state = FakeState::empty();
                let lab = seed_phpipam(&mut state);
                Upstream::Phpipam(FakePhpipam::start_with(state).await, lab)
            }
            BackendKind::Infoblox => {
                let mut state = FakeWapiState::empty();
                seed_infoblox(&mut state);
                Upstream::Infoblox(FakeWapi::start_with(state).await)
            }
            BackendKind::Embedded => panic!("a remote backend"),
        }
    }

    fn url(&self) -> &str {
        match self {
            Upstream::Phpipam(f, _) => &f.url,
            Upstream::Infoblox(f) => &f.url,
        }
    }

    fn config(&self, url: &str) -> String {
        match self {
            Upstream::Phpipam(_, lab) => phpipam_config(url, lab),
            Upstream::Infoblox(_) => infoblox_config(url),
        }
    }

    /// The second NIC's allocation request to hold: (path, body text), and how many requests on
    /// that path the allocate-ip makes before it. `creating`: the request that takes the address
    /// (on Infoblox, NIC 1's POST after the grid refused the shared name), rather than the first.
    fn second_nic(&self, creating: bool, machine: &str) -> (String, Option<String>, usize) {
        match self {
            Upstream::Phpipam(_, lab) => (
                format!(
                    "/api/gateway/addresses/first_free/{}/",
                    subnet(lab, "lab-dmz")
                ),
                None,
                0,
            ),
            // NIC 0's POST, then NIC 1's under the shared name ("already exists"), then NIC 1's
            // under `<name>-<hash of owner and network>`: only that one names `<name>-…`.
            Upstream::Infoblox(_) if creating => (
                "/wapi/v2.12/record:host".to_owned(),
                Some(format!("\"name\":\"{machine}-")),
                2,
            ),
            Upstream::Infoblox(_) => (
                "/wapi/v2.12/record:host".to_owned(),
                // The next-available-IP search of the create names the network.
                Some(format!("\"network\":\"{}\"", lab_net("lab-dmz").cidr)),
                1,
            ),
        }
    }

    /// Addresses taken in a lab network (its gateway address excluded), with the owner marker
    /// where the fake shows it.
    fn taken(&self, name: &str) -> Vec<(String, Option<String>)> {
        let net = lab_net(name);
        match self {
            Upstream::Phpipam(f, lab) => f
                .addresses_in(subnet(lab, name))
                .into_iter()
                .filter(|a| !a.is_gateway)
                .map(|a| (a.ip.to_string(), a.owner))
                .collect(),
            Upstream::Infoblox(f) => f
                .used_in(net.address_space, net.cidr)
                .into_iter()
                .map(|a| a.to_string())
                .filter(|a| a != net.gateway)
                .map(|a| (a, None))
                .collect(),
        }
    }
}

async fn vra_call(
    client: &reqwest::Client,
    gw: &GatewayProcess,
    op: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/vra/v1/{op}", gw.base_url))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .json(body)
        .send()
        .await
}

async fn ranges(client: &reqwest::Client, gw: &GatewayProcess) -> Value {
    let r = client
        .get(format!("{}/api/v1/networks", gw.base_url))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .send()
        .await
        .expect("networks");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

fn result_for<'a>(out: &'a Value, id: &str) -> &'a Value {
    out["ipAllocations"]
        .as_array()
        .expect("ipAllocations")
        .iter()
        .find(|a| a["ipAllocationId"] == id)
        .unwrap_or_else(|| panic!("no result for {id}: {out:#}"))
}

/// `forward`: whether the held second allocation reaches the IPAM before the kill (the IPAM
/// took the address, its answer is lost) or not.
async fn crash_then_retry(kind: BackendKind, forward: bool) {
    let fake = Upstream::start(kind).await;
    let proxy = FaultProxy::start(fake.url()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, fake.config(&proxy.url)).expect("config");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    let gw = start(dir.path(), &config);
    let nets = ranges(&client, &gw).await;
    let id_of = |name: &str| -> String {
        nets["networks"]
            .as_array()
            .expect("networks")
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no network {name}"))["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let resource = format!("/resources/compute/{}", uuid::Uuid::new_v4().simple());
    let mut values = std::collections::BTreeMap::new();
    values.insert("host".to_owned(), gw.base_url.replace("http://", ""));
    values.insert("resource".to_owned(), resource.clone());
    values.insert("range:lab-servers".to_owned(), id_of("lab-servers"));
    values.insert("range:lab-dmz".to_owned(), id_of("lab-dmz"));
    let template = fixture("allocate-ip-2nic");
    let machine = template["resourceInfo"]["name"]
        .as_str()
        .expect("the machine's name")
        .to_owned();
    let request = fill(&template, &values);

    let (hold_path, hold_body, before) = fake.second_nic(forward, &machine);
    proxy.set(Fault::Hold {
        method: Method::POST,
        path: hold_path.clone(),
        body: hold_body,
        forward,
    });
    let pending = {
        let client = client.clone();
        let url = format!("{}/vra/v1/allocate-ip", gw.base_url);
        let body = request.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .basic_auth("demo", Some(DEMO_PASSWORD))
                .json(&body)
                .send()
                .await
        })
    };
    // Wait until the first NIC's address is taken and the second NIC's step is in the proxy.
    let want_dmz = usize::from(forward);
    let mut ready = false;
    for _ in 0..200 {
        if fake.taken("lab-servers").len() == 1
            && proxy.seen("POST", &hold_path) == before + 1
            && fake.taken("lab-dmz").len() == want_dmz
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "{kind}: the first address was not taken: servers {:?}, dmz {:?}; requests {:?}",
        fake.taken("lab-servers"),
        fake.taken("lab-dmz"),
        proxy.log()
    );
    let first = fake.taken("lab-servers");
    drop(gw); // SIGKILL, then reap.
    let lost = pending.await.expect("task");
    assert!(lost.is_err(), "the killed gateway answered: {lost:?}");

    // vRA retries the same request against a new gateway.
    proxy.set(Fault::Pass);
    let gw = start(dir.path(), &config);
    let r = vra_call(&client, &gw, "allocate-ip", &request)
        .await
        .expect("retry answers");
    let status = r.status();
    let out: Value = r.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{out:#}");
    let nic0 = result_for(&out, "nic0-alloc")["ipAddresses"].clone();
    let nic1 = result_for(&out, "nic1-alloc")["ipAddresses"].clone();
    assert_eq!(
        nic0,
        json!([first[0].0]),
        "the retry returns the address already taken"
    );
    let servers_now = fake.taken("lab-servers");
    let dmz_now = fake.taken("lab-dmz");
    assert_eq!(
        servers_now, first,
        "no second address for NIC 0: {servers_now:?}"
    );
    assert_eq!(
        dmz_now.len(),
        1,
        "exactly one address for NIC 1: {dmz_now:?}"
    );
    assert_eq!(nic1, json!([dmz_now[0].0]), "{out:#}");
    for (ip, owner) in servers_now.iter().chain(&dmz_now) {
        let Some(owner) = owner.as_deref() else {
            continue; // the WAPI fake's helper lists addresses only
        };
        assert!(
            owner.contains(resource.as_str()),
            "{ip} carries the resource's owner marker: {owner:?}"
        );
    }
    // A second retry changes nothing.
    let again: Value = vra_call(&client, &gw, "allocate-ip", &request)
        .await
        .expect("again")
        .json()
        .await
        .expect("json");
    assert_eq!(again["ipAllocations"], out["ipAllocations"]);
    assert_eq!(
        fake.taken("lab-servers").len() + fake.taken("lab-dmz").len(),
        2
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phpipam_killed_before_the_second_nic_then_retried_takes_one_new_address() {
    crash_then_retry(BackendKind::Phpipam, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phpipam_killed_after_the_second_nic_reached_the_ipam_then_retried_takes_none() {
    crash_then_retry(BackendKind::Phpipam, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infoblox_killed_before_the_second_nic_then_retried_takes_one_new_address() {
    crash_then_retry(BackendKind::Infoblox, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infoblox_killed_after_the_grid_created_the_second_record_then_retried_takes_none() {
    crash_then_retry(BackendKind::Infoblox, true).await;
}
