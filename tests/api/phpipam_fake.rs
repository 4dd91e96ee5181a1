//! The phpIPAM backend against the stateful fake phpIPAM, and the fake against the recordings.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipam_gateway::backends::{Backend, CallContext, Claim};
use ipam_gateway::domain::{IpamError, Lookup, Mac, Owner, RecordChanges, RecordDetails};
use serde_json::Value;

use crate::support::gateway_process::run_check;
use crate::support::matrix::{BackendKind, LAB_BLOCK, spawn_lab};
use crate::support::phpipam::{Exchange, backend, config};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};
use crate::support::{AppOptions, TestApp, spawn_with};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn owner(s: &str) -> Owner {
    Owner::parse(s).expect("owner")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Same status, same envelope keys, same `data` shape (object keys; for lists, the keys of
/// every record present in both by id), same error message.
pub(crate) fn assert_conforms(ex: &Exchange, status: u16, got: &Value) {
    let name = &ex.name;
    assert_eq!(status, ex.status(), "{name}: status ({got})");
    let want = ex.body();
    if want.is_null() {
        return;
    }
    assert_eq!(keys(got), keys(want), "{name}: envelope keys");
    if ex.status() >= 400 {
        assert_eq!(got["message"], want["message"], "{name}: error message");
    }
    match (&want["data"], &got["data"]) {
        (Value::Object(_), Value::Object(_)) => {
            assert_eq!(keys(&got["data"]), keys(&want["data"]), "{name}: data keys");
        }
        (Value::Array(w), Value::Array(g)) => {
            assert!(!g.is_empty(), "{name}: empty list");
            for wi in w {
                if let Some(gi) = g.iter().find(|gi| gi.get("id") == wi.get("id")) {
                    assert_eq!(keys(gi), keys(wi), "{name}: keys of record {}", wi["id"]);
                }
            }
            if w[0].get("id").is_none() {
                assert_eq!(keys(&g[0]), keys(&w[0]), "{name}: record keys");
            }
        }
        (Value::Null, Value::Null) => {}
        (w, g) => assert_eq!(
            std::mem::discriminant(w),
            std::mem::discriminant(g),
            "{name}: data type ({w} vs {g})"
        ),
    }
}

/// Replays a recorded request against the fake (the recorded Admin token replaced by a live one).
pub(crate) async fn replay(fake: &FakePhpipam, token: &str, which: &str) -> (Exchange, u16, Value) {
    let ex = Exchange::load(which);
    let client = reqwest::Client::new();
    let path = ex.raw["request"]["path"].as_str().expect("path");
    let mut req = client.request(
        ex.method().parse().expect("method"),
        format!("{}{}", fake.url, path),
    );
    for (k, v) in ex.raw["request"]["headers"].as_object().expect("headers") {
        let v = v.as_str().unwrap_or_default();
        match k.to_ascii_lowercase().as_str() {
            "phpipam-token" if v == "f1xture-t0ken" => req = req.header("phpipam-token", token),
            "phpipam-token" | "authorization" | "content-type" => req = req.header(k, v),
            _ => {}
        }
    }
    if let Some(raw) = ex.raw["request"]["body_raw"].as_str() {
        req = req.body(raw.to_owned());
    }
    let resp = req.send().await.expect("fake answers");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (ex, status, body)
}

#[tokio::test]
async fn the_fake_answers_like_the_recorded_phpipam() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    for which in [
        "01", "03", "25", "28", "35", "49", "50", "51", "53", "54", "64", "65", "67", "74", "76",
        "81", "91", "92", "96",
    ] {
        let (ex, status, body) = replay(&fake, &token, which).await;
        assert_conforms(&ex, status, &body);
    }
    // Fill the /28 (fixtures 96–97 took 14 addresses), then it is full (98).
    while fake.addresses_in(8).len() < 14 {
        let (_, status, _) = replay(&fake, &token, "96").await;
        assert_eq!(status, 201);
    }
    for which in ["98", "104", "105", "113", "114", "116", "139", "138", "141"] {
        let (ex, status, body) = replay(&fake, &token, which).await;
        assert_conforms(&ex, status, &body);
    }
}

/// The set-up exchanges 15–19 (`POST subnets/`) and 23 (the gateway address), replayed on the lab
/// emptied of its subnets and addresses, answer as recorded (same ids, same `data`) and rebuild
/// the lab's subnets; 20–22 are refused with the recorded status and message.
#[tokio::test]
async fn the_fake_creates_subnets_like_the_recorded_phpipam() {
    let lab = FakeState::lab();
    let mut bare = FakeState::lab();
    bare.subnets.clear();
    bare.addresses.clear();
    bare.next_subnet = 7;
    bare.next_address = 11;
    let fake = FakePhpipam::start_with(bare).await;
    let token = fake.login("Admin");
    for which in ["15", "16", "17", "18", "19", "20", "21", "22", "23"] {
        let (ex, status, body) = replay(&fake, &token, which).await;
        assert_conforms(&ex, status, &body);
        if status == 201 {
            let name = &ex.name;
            assert_eq!(body["id"], ex.body()["id"], "{name}: id");
            assert_eq!(body["data"], ex.body()["data"], "{name}: data");
        }
    }
    fake.with(|s| {
        let ids: Vec<u64> = s.subnets.keys().copied().collect();
        assert_eq!(ids, lab.subnets.keys().copied().collect::<Vec<_>>());
        for (id, want) in &lab.subnets {
            let got = &s.subnets[id];
            assert_eq!(
                (
                    got.cidr,
                    got.section,
                    &got.description,
                    got.master,
                    got.vlan,
                    got.nameserver,
                    got.is_pool,
                    got.vra_range
                ),
                (
                    want.cidr,
                    want.section,
                    &want.description,
                    want.master,
                    want.vlan,
                    want.nameserver,
                    want.is_pool,
                    want.vra_range
                ),
                "subnet {id}"
            );
        }
        let gw = &s.addresses[&11];
        assert_eq!(
            (gw.subnet, gw.ip, gw.is_gateway),
            (7, ip("10.10.0.1"), true)
        );
    });
}

/// `POST subnets/` under a `masterSubnetId` (no recording: INFERRED from phpIPAM 1.8.2's source,
/// see `create_subnet` in the fake): inside the master and clear of its children, or refused.
#[tokio::test]
async fn the_fake_nests_created_subnets_inside_their_master() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let req = client
            .post(format!("{}/api/gateway/subnets/", fake.url))
            .header("phpipam-token", &token)
            .json(&body);
        async move {
            let resp = req.send().await.expect("fake answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let child = |subnet: &str, mask: &str, master: &str| {
        serde_json::json!({"subnet": subnet, "mask": mask, "sectionId": "3",
            "masterSubnetId": master, "description": "child"})
    };

    let (status, body) = post(child("10.30.1.0", "24", "10")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"], "10.30.1.0/24");
    let id: u64 = body["id"].as_str().expect("string id").parse().expect("id");
    let sn = fake.with(|s| s.subnets[&id].clone());
    assert_eq!((sn.master, sn.section), (10, 3));

    for (body, want_status, want_message) in [
        (
            child("10.30.1.128", "25", "10"),
            409,
            "Subnet overlaps with 10.30.1.0/24",
        ),
        (
            child("10.30.0.0", "16", "10"),
            409,
            "Subnet is not within boundaries of its master subnet",
        ),
        (
            child("10.31.0.0", "24", "10"),
            409,
            "Subnet is not within boundaries of its master subnet",
        ),
        (
            child("10.30.2.0", "24", "999"),
            404,
            "Master Subnet does not exist (id=999)",
        ),
        (
            serde_json::json!({"subnet": "10.30.2.0", "mask": "24", "sectionId": "3"}),
            409,
            "Subnet 10.30.2.0/24 overlaps with 10.30.0.0/16 (Container for on-demand networks) in section Gateway",
        ),
        (
            serde_json::json!({"subnet": "10.60.0.0", "mask": "24", "sectionId": "3", "nope": 1}),
            400,
            "Invalid request key nope",
        ),
    ] {
        let before = fake.with(|s| s.subnets.len());
        let (status, got) = post(body.clone()).await;
        assert_eq!(status, want_status, "{body}: {got}");
        assert_eq!(got["message"], want_message, "{body}");
        assert_eq!(
            fake.with(|s| s.subnets.len()),
            before,
            "{body}: nothing created"
        );
    }
    // A sibling that does not overlap is fine.
    let (status, body) = post(child("10.30.2.0", "24", "10")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn lifecycle_against_the_fake() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();

    let status = b.check(&cx).await.expect("check");
    assert_eq!((status.networks, status.blocks), (3, 1));
    let nets = b.networks(&cx).await.expect("networks");
    assert_eq!(nets[0].gateway, Some(ip("10.10.0.1")));
    assert_eq!(nets[0].vlan, Some(100));

    let mk = |o: &str, addr: Option<&str>, net: &str| ipam_gateway::domain::AllocateIn {
        network: net.into(),
        owner: owner(o),
        address: addr.map(ip),
        details: RecordDetails {
            aliases: Vec::new(),
            hostname: Some(format!("{o}.lab.local")),
            description: None,
            mac: None,
        },
    };
    let a = b
        .allocate(&cx, &mk("vm-a", None, "7"))
        .await
        .expect("next free");
    assert_eq!(a.address, ip("10.10.0.2"), "the gateway 10.10.0.1 is taken");
    let s = b
        .allocate(&cx, &mk("vm-b", Some("10.10.0.50"), "7"))
        .await
        .expect("specific");
    assert_eq!(s.address, ip("10.10.0.50"));
    let dup = b
        .allocate(&cx, &mk("vm-c", Some("10.10.0.50"), "7"))
        .await
        .expect_err("dup");
    assert!(matches!(dup, IpamError::Conflict(_)), "{dup:?}");

    let found = b
        .find(&cx, &Lookup::Owner(owner("vm-b")))
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].address, ip("10.10.0.50"));
    assert_eq!(found[0].owner, Some(owner("vm-b")));
    assert!(
        b.find(&cx, &Lookup::Owner(owner("nobody")))
            .await
            .expect("find")
            .is_empty()
    );

    let changes = RecordChanges {
        aliases: None,
        mac: Some(Mac::parse("00:50:56:01:02:03").expect("mac")),
        hostname: Some("renamed".into()),
        description: None,
    };
    b.update(&cx, "7", s.address, &changes)
        .await
        .expect("update");
    let after = b
        .find(
            &cx,
            &Lookup::Address {
                address: s.address,
                network: Some("7".into()),
            },
        )
        .await
        .expect("find");
    assert_eq!(after[0].details.hostname.as_deref(), Some("renamed"));
    assert_eq!(after[0].details.mac, changes.mac);

    b.release(&cx, "7", s.address).await.expect("release");
    b.release(&cx, "7", s.address).await.expect("release again");
    assert!(
        b.find(&cx, &Lookup::Owner(owner("vm-b")))
            .await
            .expect("find")
            .is_empty()
    );
    let gw = b
        .release(&cx, "7", ip("10.10.0.1"))
        .await
        .expect_err("gateway");
    assert!(matches!(gw, IpamError::Conflict(_)), "{gw:?}");

    // IPv6: phpIPAM offers `::` first; the gateway reserves it and takes the next free one.
    let v6 = b.allocate(&cx, &mk("vm-6", None, "9")).await.expect("v6");
    assert_eq!(v6.address, ip("2001:db8:10::2"));
    let anycast = fake
        .addresses_in(9)
        .into_iter()
        .find(|a| a.ip == ip("2001:db8:10::"));
    assert!(
        anycast.is_some_and(|a| a.owner.is_none()),
        "anycast kept reserved, unowned"
    );

    // Not exposed (pool 11 has custom_vRA_Range 0) and unknown networks are NotFound.
    let hidden = b
        .allocate(&cx, &mk("x", None, "11"))
        .await
        .expect_err("hidden");
    assert!(matches!(hidden, IpamError::NotFound(_)), "{hidden:?}");

    // On-demand network: carve, allocate in it, cannot delete while used, then delete twice.
    let carve = ipam_gateway::domain::CarveRequest {
        block: "10".into(),
        prefix_len: 26,
        owner: owner("vra:net-1"),
        name: Some("app net".into()),
        subnet: None,
    };
    let n = b.allocate_network(&cx, &carve).await.expect("carve");
    assert_eq!(n.cidr.to_string(), "10.30.0.0/26");
    assert_eq!(n.gateway, Some(ip("10.30.0.1")));
    let listed = b.networks(&cx).await.expect("networks");
    let carved = listed
        .iter()
        .find(|x| x.backend_id == n.backend_id)
        .expect("carved is listed");
    assert_eq!(carved.owner, Some(owner("vra:net-1")));
    assert_eq!(carved.block.as_deref(), Some("10"));
    assert_eq!(carved.name, "app net");
    assert_eq!(carved.gateway, Some(ip("10.30.0.1")));
    let inside = b
        .allocate(&cx, &mk("vm-n", None, &n.backend_id))
        .await
        .expect("alloc");
    assert_eq!(inside.address, ip("10.30.0.2"));
    let busy = b
        .release_network(&cx, &n.backend_id)
        .await
        .expect_err("busy");
    assert!(matches!(busy, IpamError::Conflict(_)), "{busy:?}");
    b.release(&cx, &n.backend_id, inside.address)
        .await
        .expect("release");
    b.release_network(&cx, &n.backend_id).await.expect("delete");
    b.release_network(&cx, &n.backend_id)
        .await
        .expect("delete again");
    let not_carved = b.release_network(&cx, "7").await.expect_err("not carved");
    assert!(
        matches!(not_carved, IpamError::Conflict(_)),
        "{not_carved:?}"
    );
}

#[tokio::test]
async fn expired_tokens_cost_one_login() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    b.check(&cx).await.expect("check");
    b.check(&cx).await.expect("check again");
    assert_eq!(fake.logins(), 1, "the token is kept and reused");
    fake.expire_tokens();
    b.check(&cx).await.expect("re-login then success");
    assert_eq!(fake.logins(), 2);
}

/// Two gateways (replicas) on one fake, allocating at once.
async fn allocate_concurrently(fake: &FakePhpipam, subnet: &str, n: usize) -> (Vec<IpAddr>, usize) {
    let replica = || -> Arc<dyn Backend> { Arc::new(backend(&fake.url, "")) };
    crate::support::allocate_from_two_replicas([replica(), replica()], subnet, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_200_allocations_one_small_subnet_no_duplicates() {
    let fake = FakePhpipam::start().await;
    let (got, exhausted) = allocate_concurrently(&fake, "8", 200).await;
    let unique: HashSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "no address handed out twice: {got:?}"
    );
    assert_eq!(got.len(), 14, "a /28 has 14 hosts");
    assert_eq!(exhausted, 186);
    assert_eq!(fake.addresses_in(8).len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_200_allocations_one_large_subnet_all_distinct() {
    let fake = FakePhpipam::start().await;
    let (got, exhausted) = allocate_concurrently(&fake, "7", 200).await;
    let unique: HashSet<IpAddr> = got.iter().copied().collect();
    assert_eq!((unique.len(), exhausted), (200, 0));
    assert!(!unique.contains(&ip("10.10.0.1")), "never the gateway");
    let records = fake.addresses_in(7);
    assert_eq!(records.len(), 201, "200 allocations + the gateway");
    assert!(
        records
            .iter()
            .filter(|a| !a.is_gateway)
            .all(|a| a.owner.is_some())
    );
}

/// Two full gateway `Application`s on one fake, `n` concurrent `POST /api/v1/allocations` (owners
/// `vm-0`…) split between them over HTTP, into the subnet named `subnet`. Returns the addresses
/// given (201) and how many answers were a clean exhaustion (409 `exhausted`); any other answer
/// fails the test.
async fn allocate_over_http(fake: &FakePhpipam, subnet: &str, n: usize) -> (Vec<IpAddr>, usize) {
    let mut apps: Vec<Arc<TestApp>> = Vec::new();
    for _ in 0..2 {
        let app = spawn_with(AppOptions {
            config: config(&fake.url, ""),
            tls: false,
            metrics: false,
        })
        .await;
        apps.push(Arc::new(app));
    }
    // Both instances route the same id to the same phpIPAM subnet (and have verified the
    // client's password once, so the burst measures allocation, not argon2).
    let net = apps[0].network_id(subnet).await;
    assert_eq!(apps[1].network_id(subnet).await, net);
    let mut tasks = Vec::new();
    for i in 0..n {
        let app = apps[i % 2].clone();
        let body = serde_json::json!({"owner": format!("vm-{i}"), "networks": [net]});
        tasks.push(tokio::spawn(async move {
            let resp = app
                .post("/api/v1/allocations", &body)
                .send()
                .await
                .expect("gateway answers");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json body");
            (i, status, body)
        }));
    }
    let mut got = Vec::new();
    let mut exhausted = 0;
    for t in tasks {
        let (i, status, body) = t.await.expect("task");
        match status {
            201 => {
                assert_eq!(body["owner"], format!("vm-{i}"), "{body}");
                got.push(ip(body["address"].as_str().expect("address")));
            }
            409 if body["error"]["code"] == "exhausted" => exhausted += 1,
            _ => panic!("every failure must be a clean 409 exhausted, got {status}: {body}"),
        }
    }
    for app in apps {
        Arc::into_inner(app).expect("tasks done").stop().await;
    }
    (got, exhausted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateway_applications_200_http_allocations_one_small_subnet_no_duplicates() {
    let fake = FakePhpipam::start().await;
    let (got, exhausted) = allocate_over_http(&fake, "Tiny /28 for exhaustion tests", 200).await;
    let unique: HashSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "no address handed out twice: {got:?}"
    );
    assert_eq!((got.len(), exhausted), (14, 186), "a /28 has 14 hosts");
    let records = fake.addresses_in(8);
    assert_eq!(records.len(), 14, "nothing taken beyond what was answered");
    let recorded: HashSet<IpAddr> = records.iter().map(|a| a.ip).collect();
    assert_eq!(
        recorded, unique,
        "phpIPAM holds exactly the addresses given"
    );
    let owners: HashSet<&str> = records.iter().filter_map(|a| a.owner.as_deref()).collect();
    assert_eq!(owners.len(), 14, "each record carries its own owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateway_applications_200_http_allocations_one_large_subnet_all_distinct() {
    let fake = FakePhpipam::start().await;
    let (got, exhausted) = allocate_over_http(&fake, "Gateway test /24", 200).await;
    let unique: HashSet<IpAddr> = got.iter().copied().collect();
    assert_eq!((unique.len(), exhausted), (200, 0));
    assert!(!unique.contains(&ip("10.10.0.1")), "never the gateway");
    assert_eq!(
        fake.addresses_in(7).len(),
        201,
        "200 allocations + the gateway"
    );
}

/// On every backend, a network carved from the lab block is listed (and allocated from) exactly
/// as the carve described it: range after its gateway, the block's DNS servers and domain.
/// On phpIPAM the listing used to drop the block's DNS domain (custom fields are not copied into
/// carved subnets) and start the range on the gateway address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carved_networks_are_listed_as_they_were_carved_on_every_backend() {
    for &kind in BackendKind::ALL {
        let app = spawn_lab(kind, false).await;
        let blocks: Value = app
            .get("/api/v1/blocks")
            .send()
            .await
            .expect("blocks")
            .json()
            .await
            .expect("json");
        let block = blocks["blocks"][0]["id"]
            .as_str()
            .expect("block id")
            .to_owned();
        let resp = app
            .post(
                "/api/v1/networks",
                &serde_json::json!({"block": block, "prefix_len": 28, "owner": "project-a"}),
            )
            .send()
            .await
            .expect("carve");
        assert_eq!(resp.status(), 201, "{kind}");
        let carved: Value = resp.json().await.expect("json");
        let id = carved["id"].as_str().expect("id");
        assert_eq!(carved["dns_domain"], LAB_BLOCK.domain, "{kind}: {carved}");
        assert_eq!(
            carved["dns_servers"],
            serde_json::json!(LAB_BLOCK.dns_servers),
            "{kind}"
        );
        let listed: Value = app
            .get(&format!("/api/v1/networks/{id}"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        for key in [
            "name",
            "cidr",
            "range_start",
            "range_end",
            "gateway",
            "dns_servers",
            "dns_domain",
            "dns_search_domains",
            "address_space",
            "block",
            "owner",
        ] {
            assert_eq!(
                listed[key], carved[key],
                "{kind}: {key}: {listed} vs {carved}"
            );
        }
        let resp = app
            .post(
                "/api/v1/allocations",
                &serde_json::json!({"owner": "vm-on-carved", "networks": [id]}),
            )
            .send()
            .await
            .expect("allocate");
        assert_eq!(resp.status(), 201, "{kind}");
        let a: Value = resp.json().await.expect("json");
        assert_eq!(a["address"], carved["range_start"], "{kind}: first address");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_gateway_serves_phpipam_networks_over_http() {
    let fake = FakePhpipam::start().await;
    let app = spawn_with(AppOptions {
        config: config(&fake.url, ""),
        tls: false,
        metrics: false,
    })
    .await;
    let resp = app.get("/api/v1/networks").send().await.expect("list");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    let names: Vec<&str> = body["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{body}");
    assert!(names.contains(&"Gateway test /24"), "{names:?}");
    let status = app.ipam.check("ipam").await.expect("check");
    assert_eq!((status.networks, status.blocks), (3, 1));
    app.stop().await;
}

#[tokio::test]
async fn the_check_command_reports_reachable_authenticated_and_counts() {
    let fake = FakePhpipam::start().await;
    let (code, text) = run_check(&config(&fake.url, "")).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("reachable, authenticated, 3 subnet(s) exposed, 1 block(s)"),
        "{text}"
    );
    assert!(text.contains("phpipam"), "{text}");
}

#[tokio::test]
async fn the_check_command_fails_on_a_wrong_password_without_printing_it() {
    let fake = FakePhpipam::start().await;
    let (code, text) = run_check(&config(
        &fake.url,
        "username = \"Admin\"\npassword = \"not-the-password\"",
    ))
    .await;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("Invalid username or password"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

#[test]
fn the_example_config_is_valid() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/phpipam.example.toml"),
    )
    .expect("example config")
    .replace(
        "\"env:IPAMGW_VRA_PASSWORD_HASH\"",
        "\"$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo\"",
    )
    .replace("\"env:IPAMGW_PHPIPAM_PASSWORD\"", "\"example\"");
    let s = ipam_gateway::config::Settings::from_toml(&text).expect("example validates");
    assert_eq!(s.backends[0].name(), "phpipam");
}

/// The set-up facts `check` relies on, as recorded: custom field definitions (43, 44), an unknown
/// address key refused (63), an empty PATCH that changes nothing (79), a write through the
/// read-only app `gatewayro` refused before anything happens (126) while its reads work.
#[tokio::test]
async fn the_fake_knows_custom_fields_and_read_only_apps_like_the_recorded_phpipam() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    // 49–51 create the addresses 13–15 the later recordings use.
    for which in ["43", "44", "63", "49", "50", "51", "79", "126"] {
        let (ex, status, body) = replay(&fake, &token, which).await;
        assert_conforms(&ex, status, &body);
    }
    let (_, _, body) = replay(&fake, &token, "44").await;
    assert_eq!(
        body["data"]["custom_vm_id"]["name"], "custom_vm_id",
        "keyed by field name"
    );
    // 126 wrote nothing; 79 changed nothing.
    assert!(
        fake.addresses_in(7)
            .iter()
            .all(|a| a.ip != ip("10.10.0.71")),
        "the read-only app's write was refused"
    );
    let a15 = fake.with(|s| s.addresses[&15].clone());
    assert_eq!(a15.ip, ip("10.10.0.50"));

    let client = reqwest::Client::new();
    let send = |m: reqwest::Method, app: &str, path: &str, body: Value| {
        let req = client
            .request(m, format!("{}/api/{app}/{path}", fake.url))
            .header("phpipam-token", token.clone());
        if body.is_null() { req } else { req.json(&body) }.send()
    };
    // Reads through the read-only app work (fixture 127); every write method is refused.
    let r = send(reqwest::Method::GET, "gatewayro", "sections/", Value::Null)
        .await
        .expect("read");
    assert_eq!(r.status(), 200);
    for m in ["POST", "PATCH", "PUT", "DELETE"] {
        let r = send(
            m.parse().expect("method"),
            "gatewayro",
            "addresses/15/",
            serde_json::json!({}),
        )
        .await
        .expect("write");
        assert_eq!(r.status(), 401, "{m}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["message"], "invalid permissions", "{m}");
    }
    // The check's probe on a writable app: the id is looked up first (81), nothing is written.
    let r = send(
        reqwest::Method::PATCH,
        "gateway",
        "addresses/0/",
        serde_json::json!({}),
    )
    .await
    .expect("probe");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["message"], "Address does not exist");
    // A PATCH naming an undefined field is refused like the POST of 63.
    let r = send(
        reqwest::Method::PATCH,
        "gateway",
        "addresses/15/",
        serde_json::json!({"custom_nosuch": "x"}),
    )
    .await
    .expect("patch");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["message"], "Invalid request key custom_nosuch");
    // Without address custom fields: 404 "No custom fields defined", and custom_vm_id is unknown.
    fake.with(|s| s.address_fields.clear());
    let r = send(
        reqwest::Method::GET,
        "gateway",
        "addresses/custom_fields/",
        Value::Null,
    )
    .await
    .expect("fields");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["message"], "No custom fields defined");
    let r = send(
        reqwest::Method::POST,
        "gateway",
        "addresses/first_free/7/",
        serde_json::json!({"custom_vm_id": "vm-1"}),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 400);
}

/// An address's `note` is a `text` column: what is written is answered whole, lines and all
/// (every recorded address carries `note`, fixture 74); more than 65,535 bytes is the
/// strict-mode 500 naming the column (INFERRED from 146–150) and nothing is written.
#[tokio::test]
async fn the_fake_keeps_an_address_note_whole_up_to_its_text_column() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    // 49–51 create the addresses 13–15.
    for which in ["49", "50", "51"] {
        replay(&fake, &token, which).await;
    }
    let client = reqwest::Client::new();
    let url = format!("{}/api/gateway/addresses/15/", fake.url);
    let note = format!(
        "rack 12\nipamgw-names: {}",
        "b.lab.example.com ".repeat(100)
    );
    let r = client
        .patch(&url)
        .header("phpipam-token", token.clone())
        .json(&serde_json::json!({ "note": note }))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let (status, body) = get(&fake, &token, "addresses/15/").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["note"], note.as_str());

    let r = client
        .patch(&url)
        .header("phpipam-token", token.clone())
        .json(&serde_json::json!({ "note": "x".repeat(65_536) }))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.expect("json");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("Data too long for column 'note'"),
        "{message}"
    );
    let (_, body) = get(&fake, &token, "addresses/15/").await;
    assert_eq!(body["data"]["note"], note.as_str(), "nothing written");
}

/// Issue 11: the gateway is never handed out (here in the middle of a /28, where phpIPAM holds
/// it as an address record with `is_gateway = 1`); filling the subnet ends in a clean
/// exhaustion. The same guarantee on the other backends:
/// `infoblox_routers::infoblox_never_hands_out_the_gateway`,
/// `allocations::embedded_never_hands_out_the_gateway`.
#[tokio::test]
async fn phpipam_never_hands_out_the_gateway() {
    let fake = FakePhpipam::start().await;
    fake.with(|s| s.add_gateway(8, "10.20.0.7"));
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    let mut got = Vec::new();
    let mut last = None;
    for i in 0..20 {
        let req = ipam_gateway::domain::AllocateIn {
            network: "8".into(),
            owner: owner(&format!("fill-{i}")),
            address: None,
            details: RecordDetails::default(),
        };
        match b.allocate(&cx, &req).await {
            Ok(a) => got.push(a.address),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    let want: Vec<IpAddr> = (1..=14)
        .filter(|h| *h != 7)
        .map(|h| ip(&format!("10.20.0.{h}")))
        .collect();
    assert_eq!(got, want, "every host but the gateway .7");
    assert!(
        matches!(&last, Some(IpamError::Exhausted(_))),
        "then exhausted: {last:?}"
    );
}

/// `GET` on the fake with a live token: status and JSON body.
async fn get(fake: &FakePhpipam, token: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/gateway/{path}", fake.url))
        .header("phpipam-token", token)
        .send()
        .await
        .expect("fake answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The lookups allocation and listings use, against the recordings: a subnet's addresses (84),
/// filtered (85), none (87), and every gateway address (152); an unknown subnet's sub-resource
/// is 404 "Invalid subnet Id (N)" (89's answer to `usage/`, from the same `validate_subnet_id`).
#[tokio::test]
async fn the_fake_answers_subnet_and_gateway_lookups_like_the_recorded_phpipam() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    for which in ["84", "85", "87", "152"] {
        let (ex, status, body) = replay(&fake, &token, which).await;
        assert_conforms(&ex, status, &body);
    }
    let (status, body) = get(&fake, &token, "subnets/99999/addresses/").await;
    let recorded = Exchange::load("89");
    assert_eq!(
        (status, &body["message"]),
        (recorded.status(), &recorded.body()["message"])
    );
}

#[tokio::test]
async fn the_fake_filters_loosely_like_php_and_the_gateway_keeps_exact_owners() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    let mk = |o: &str| ipam_gateway::domain::AllocateIn {
        network: "7".into(),
        owner: owner(o),
        address: None,
        details: RecordDetails::default(),
    };
    let ten = b.allocate(&cx, &mk("10")).await.expect("owner 10");
    // PHP 8: "10" == "1e1" (numeric strings compare as numbers), "10" != "10a".
    let (status, body) = get(
        &fake,
        &token,
        "subnets/7/addresses/?filter_by=owner&filter_value=1e1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["owner"], "10");
    let (status, _) = get(
        &fake,
        &token,
        "subnets/7/addresses/?filter_by=owner&filter_value=10a",
    )
    .await;
    assert_eq!(status, 404);
    // What phpIPAM matched loosely is not the owner's: "1e1" gets an address of its own.
    assert!(
        b.find_owner_in(&cx, &owner("1e1"), "7")
            .await
            .expect("lookup")
            .is_empty()
    );
    let other = match b.claim(&cx, &mk("1e1")).await.expect("claim") {
        Claim::Taken(a) => a,
        Claim::Held(a) => panic!("owner 1e1 was given owner 10's {}", a.address),
    };
    assert_ne!(other.address, ten.address);
    let held = b.find_owner_in(&cx, &owner("10"), "7").await.expect("10");
    assert_eq!(
        held.iter().map(|a| a.address).collect::<Vec<_>>(),
        [ten.address]
    );
}

#[tokio::test]
async fn the_fake_counts_the_rows_phpipam_reads() {
    let mut s = FakeState::lab();
    let unrelated = s.add_unrelated_addresses(5_000);
    let fake = FakePhpipam::start_with(s).await;
    let token = fake.login("Admin");
    let total = 5_002; // the lab's two gateways and the unrelated rows
    assert_eq!(fake.addresses_in(unrelated).len(), 5_000);
    for (path, rows) in [
        ("addresses/?filter_by=owner&filter_value=nobody", total),
        ("addresses/?filter_by=is_gateway&filter_value=1", total),
        ("subnets/7/addresses/?filter_by=owner&filter_value=x", 1),
        ("subnets/8/addresses/", 1),
        (&format!("subnets/{unrelated}/addresses/"), 5_000),
        ("sections/3/subnets/", 5),
        ("vlan/", 1),
        ("vlan/3/", 1),
    ] {
        let before = fake.with(|s| s.rows);
        get(&fake, &token, path).await;
        assert_eq!(fake.with(|s| s.rows) - before, rows, "{path}");
    }
}

#[tokio::test]
async fn unrelated_addresses_read_like_other_rows_and_refuse_writes() {
    let mut s = FakeState::lab();
    let unrelated = s.add_unrelated_addresses(50_000);
    let fake = FakePhpipam::start_with(s).await;
    let token = fake.login("Admin");
    let (status, body) = get(&fake, &token, "addresses/search/172.16.0.7/").await;
    assert_eq!(
        (status, &body["data"][0]["owner"]),
        (200, &"other-7".into())
    );
    let id = body["data"][0]["id"].as_u64().expect("id");
    let (status, by_id) = get(&fake, &token, &format!("addresses/{id}/")).await;
    assert_eq!((status, &by_id["data"]["ip"]), (200, &"172.16.0.7".into()));
    let (status, body) = get(
        &fake,
        &token,
        "addresses/?filter_by=owner&filter_value=other-49999",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["data"][0]["ip"], "172.16.195.79");
    let (_, gateways) = get(
        &fake,
        &token,
        "addresses/?filter_by=is_gateway&filter_value=1",
    )
    .await;
    assert_eq!(gateways["data"].as_array().map(Vec::len), Some(2));
    let (status, body) = get(
        &fake,
        &token,
        &format!(
            "subnets/{unrelated}/addresses/?filter_by=hostname&filter_value=host-3.other.example"
        ),
    )
    .await;
    assert_eq!(
        (status, &body["data"][0]["ip"]),
        (200, &"172.16.0.3".into())
    );
    let (_, sections) = get(&fake, &token, "sections/").await;
    let section = sections["data"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == "unrelated"))
        .and_then(|x| x["id"].as_u64())
        .expect("section");
    let (_, subnets) = get(&fake, &token, &format!("sections/{section}/subnets/")).await;
    assert_eq!(subnets["data"][0]["usage"]["used"], "50000");

    let client = reqwest::Client::new();
    let send = |m: reqwest::Method, path: String, body: Value| {
        let r = client
            .request(m, format!("{}/api/gateway/{path}", fake.url))
            .header("phpipam-token", &token);
        if body.is_null() { r } else { r.json(&body) }.send()
    };
    for (m, path, body) in [
        (
            reqwest::Method::PATCH,
            format!("addresses/{id}/"),
            serde_json::json!({"hostname": "x"}),
        ),
        (
            reqwest::Method::DELETE,
            format!("addresses/{id}/"),
            Value::Null,
        ),
        (
            reqwest::Method::POST,
            format!("addresses/first_free/{unrelated}/"),
            serde_json::json!({}),
        ),
        (
            reqwest::Method::POST,
            "addresses/".to_owned(),
            serde_json::json!({"ip": "172.16.200.1", "subnetId": unrelated}),
        ),
    ] {
        let r = send(m.clone(), path.clone(), body).await.expect("answer");
        assert_eq!(r.status().as_u16(), 501, "{m} {path}");
    }
    let r = send(
        reqwest::Method::DELETE,
        format!("subnets/{unrelated}/"),
        Value::Null,
    )
    .await
    .expect("answer");
    assert_eq!(r.status().as_u16(), 200);
    assert!(fake.addresses_in(unrelated).is_empty());
    let (status, _) = get(&fake, &token, "addresses/search/172.16.0.7/").await;
    assert_eq!(status, 404);
}

/// The lab plus 20,000 addresses in a subnet the gateway does not expose.
async fn lab_with_unrelated_addresses() -> FakePhpipam {
    let mut s = FakeState::lab();
    s.add_unrelated_addresses(20_000);
    s.log = Some(Vec::new());
    FakePhpipam::start_with(s).await
}

#[tokio::test]
async fn allocating_reads_the_candidate_subnet_not_the_whole_ipam() {
    let fake = lab_with_unrelated_addresses().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    b.check(&cx).await.expect("inventory");
    let (rows, logged) = fake.with(|s| (s.rows, s.log.as_ref().map_or(0, Vec::len)));
    let req = ipam_gateway::domain::AllocateIn {
        network: "7".into(),
        owner: owner("vra:vm-1/nic0"),
        address: None,
        details: RecordDetails::default(),
    };
    // As the service allocates: look the owner up, take an address, look it up again; then a
    // retry of the same request finds it.
    let taken = match b.claim(&cx, &req).await.expect("claim") {
        Claim::Taken(a) => a,
        Claim::Held(a) => panic!("nothing was held, got {}", a.address),
    };
    let after = b
        .find_owner_in(&cx, &req.owner, "7")
        .await
        .expect("lookup after");
    let key = |a: &ipam_gateway::domain::AllocationInfo| {
        (
            a.network.clone(),
            a.address,
            a.owner.clone(),
            a.reference.clone(),
        )
    };
    assert_eq!(after.iter().map(key).collect::<Vec<_>>(), [key(&taken)]);
    match b.claim(&cx, &req).await.expect("retry") {
        Claim::Held(a) => assert_eq!(a.address, taken.address),
        Claim::Taken(a) => panic!("a retry took a second address {}", a.address),
    }
    let (read, requests) = fake.with(|s| {
        let log = s.log.as_ref().expect("log");
        (s.rows - rows, log[logged..].to_vec())
    });
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("/api/gateway/addresses/?")),
        "no filter over every address: {requests:?}"
    );
    // Subnet 7 holds 1–2 rows; four requests read them (three lookups and first_free).
    assert!(
        read <= 8,
        "{read} rows read for one allocation: {requests:?}"
    );

    // The native API's search by owner alone legitimately reads every address.
    let before = fake.with(|s| s.rows);
    let found = b
        .find(&cx, &Lookup::Owner(req.owner.clone()))
        .await
        .expect("find");
    assert_eq!(found.iter().map(key).collect::<Vec<_>>(), [key(&taken)]);
    assert!(fake.with(|s| s.rows) - before >= 20_000);
}

/// A fake with `n` exposed subnets, each with a gateway on its first host and a VLAN of its own.
fn subnets_with_gateways_and_vlans(n: usize) -> FakeState {
    let mut s = FakeState::empty();
    // Subnet ids from 100: the test config's block is subnet 10.
    s.next_subnet = 100;
    let section = s.add_section("Gateway", "bench");
    for i in 0..n {
        let vlan = s.add_vlan(100 + i as u64, &format!("vlan-{i}"));
        let cidr = format!("10.{}.{}.0/24", i / 256, i % 256);
        let id = s.add_subnet(section, &cidr, &format!("net-{i}"), |sn| {
            sn.vra_range = 1;
            sn.vlan = Some(vlan);
        });
        s.add_gateway(id, &format!("10.{}.{}.1", i / 256, i % 256));
    }
    s.log = Some(Vec::new());
    s
}

#[tokio::test]
async fn a_cold_listing_costs_the_same_requests_for_10_and_1000_subnets() {
    let mut costs = Vec::new();
    for n in [10, 1_000] {
        let fake = FakePhpipam::start_with(subnets_with_gateways_and_vlans(n)).await;
        let nets = backend(&fake.url, "")
            .networks(&CallContext::default())
            .await
            .expect("networks");
        assert_eq!(nets.len(), n);
        for (i, net) in nets.iter().enumerate() {
            let gw: IpAddr = format!("10.{}.{}.1", i / 256, i % 256).parse().expect("ip");
            assert_eq!(
                (net.gateway, net.vlan),
                (Some(gw), Some(100 + i as u16)),
                "{}",
                net.cidr
            );
        }
        let log = fake.with(|s| s.log.clone().expect("log"));
        costs.push(log.len());
        assert_eq!(
            log.iter()
                .map(|r| r.split('?').next().unwrap_or(r))
                .collect::<Vec<_>>(),
            [
                "POST /api/gateway/user/",
                "GET /api/gateway/sections/",
                "GET /api/gateway/sections/1/subnets/",
                "GET /api/gateway/addresses/",
                "GET /api/gateway/vlan/",
            ],
            "{n} subnets"
        );
    }
    assert_eq!(costs[0], costs[1]);
}

#[tokio::test]
async fn a_subnet_added_after_a_listing_has_its_gateway_and_vlan_looked_up_alone() {
    let fake = FakePhpipam::start_with(subnets_with_gateways_and_vlans(20)).await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    b.networks(&cx).await.expect("first listing");
    let (gw, vlan) = fake.with(|s| {
        let vlan = s.add_vlan(999, "new");
        let section = s.sections[0].id;
        let id = s.add_subnet(section, "10.99.0.0/24", "new", |sn| {
            sn.vra_range = 1;
            sn.vlan = Some(vlan);
        });
        s.log = Some(Vec::new());
        (s.add_gateway(id, "10.99.0.1"), vlan)
    });
    let nets = b.networks(&cx).await.expect("second listing");
    let new = nets.iter().find(|n| n.name == "new").expect("new subnet");
    assert_eq!((new.gateway, new.vlan), (Some(ip("10.99.0.1")), Some(999)));
    let log = fake.with(|s| s.log.clone().expect("log"));
    assert_eq!(
        log,
        [
            "GET /api/gateway/sections/".to_owned(),
            "GET /api/gateway/sections/1/subnets/".to_owned(),
            format!("GET /api/gateway/addresses/{gw}/"),
            format!("GET /api/gateway/vlan/{vlan}/"),
        ]
    );
}

#[tokio::test]
async fn an_ipam_without_addresses_answers_500_and_the_owner_search_finds_nothing() {
    let mut s = FakeState::empty();
    let section = s.add_section("Gateway", "no addresses yet");
    s.add_subnet(section, "10.10.0.0/24", "empty", |sn| sn.vra_range = 1);
    let fake = FakePhpipam::start_with(s).await;
    let token = fake.login("Admin");
    let (status, body) = get(
        &fake,
        &token,
        "addresses/?filter_by=owner&filter_value=vm-1",
    )
    .await;
    assert_eq!(
        (status, &body["message"]),
        (500, &"Unable to read addresses".into())
    );
    let b = backend(&fake.url, "");
    let found = b
        .find(&CallContext::default(), &Lookup::Owner(owner("vm-1")))
        .await
        .expect("nothing, not an error");
    assert!(found.is_empty());
}
