//! Issue 11, point 2: a network's router is never handed out on Infoblox, whether a record holds
//! it or it is named only by the `routers` DHCP option (or the `gateway_ea` attribute), as on
//! many real grids. Against the stateful fake WAPI, whose networks reserve nothing for their
//! router unless seeded so (`FakeWapiState::add_network`), and which honours `exclude` as a grid
//! does (see its module documentation for the sources).

use std::net::IpAddr;

use ipam_gateway::backends::infoblox::InfobloxBackend;
use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::domain::{
    AllocateIn, IpamError, Lookup, Mac, Owner, RecordChanges, RecordDetails,
};
use serde_json::{Value, json};

use crate::support::infoblox::{Exchange, backend, config};
use crate::support::infoblox_fake::{FakeWapi, FakeWapiState, SeedNetwork};
use crate::support::{AppOptions, spawn_with};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn owner(s: &str) -> Owner {
    Owner::parse(s).expect("owner")
}

/// A /28 whose router 10.70.0.1 is named only by its `routers` option.
const BARE: &str = "default/10.70.0.0/28";
/// An IPv6 /125 (::1–::7 usable) whose router ::1 is named only by the `Gateway` EA.
const BARE6: &str = "default/2001:db8:70::/125";
/// A /29 with two routers in its `routers` option (.1, .6) and a third in its `Gateway` EA (.5).
const MULTI: &str = "default/10.71.0.0/29";
/// lab-servers: its router 10.20.0.1 is held by a reservation (a fixed address, no owner).
const SERVERS: &str = "default/10.20.0.0/24";

/// The lab plus networks whose routers no record holds.
fn bare_lab() -> FakeWapiState {
    let mut s = FakeWapiState::lab();
    let seed = |cidr: &str, gateway: &str, comment: &str| SeedNetwork {
        view: "default".into(),
        cidr: cidr.into(),
        comment: comment.into(),
        gateway: Some(gateway.into()),
        domain: Some("lab.example.com".into()),
        eas: vec![("vRA-Enabled".into(), "true".into())],
        ..SeedNetwork::default()
    };
    s.add_network(seed("10.70.0.0/28", "10.70.0.1", "bare-router"));
    s.add_network(seed(
        "2001:db8:70::/125",
        "2001:db8:70::1",
        "bare-router-v6",
    ));
    let multi = s.add_network(seed("10.71.0.0/29", "10.71.0.1", "two-routers"));
    let net = s.objects.get_mut(&multi).expect("seeded");
    net.fields["options"][0]["value"] = json!("10.71.0.1,10.71.0.6");
    net.fields["extattrs"]["Gateway"] = json!({"value": "10.71.0.5"});
    s
}

fn mk(o: &str, addr: Option<&str>, net: &str) -> AllocateIn {
    AllocateIn {
        network: net.into(),
        owner: owner(o),
        address: addr.map(ip),
        details: RecordDetails {
            aliases: Vec::new(),
            hostname: Some(o.to_owned()),
            description: None,
            mac: None,
        },
    }
}

/// Allocates in `net` until the grid has nothing left: what was handed out, and the error.
async fn fill(b: &InfobloxBackend, net: &str, tag: &str) -> (Vec<IpAddr>, IpamError) {
    let cx = CallContext::default();
    let mut got = Vec::new();
    for i in 0..64 {
        match b.allocate(&cx, &mk(&format!("{tag}-{i}"), None, net)).await {
            Ok(a) => got.push(a.address),
            Err(e) => return (got, e),
        }
    }
    panic!("{net} never ran out: {got:?}");
}

fn assert_exhausted(e: &IpamError, cidr: &str) {
    let IpamError::Exhausted(msg) = e else {
        panic!("Exhausted expected, got {e:?}");
    };
    assert!(
        msg.contains(cidr) && msg.contains("Cannot find 1 available IP address"),
        "{msg}"
    );
}

#[tokio::test]
async fn infoblox_never_hands_out_the_gateway() {
    for style in ["host", "fixed_address", "a_ptr"] {
        let fake = FakeWapi::start_with(bare_lab()).await;
        let b = backend(&fake.url, &format!("record_style = \"{style}\""));
        let (got, e) = fill(&b, BARE, "vm").await;
        let want: Vec<IpAddr> = (2..=14).map(|h| ip(&format!("10.70.0.{h}"))).collect();
        assert_eq!(got, want, "{style}: every host but the router, in order");
        // Only the router is left: the grid answers like fixture 11, the gateway says so.
        assert_exhausted(&e, "10.70.0.0/28");
        assert_eq!(
            fake.used_in("default", "10.70.0.0/28"),
            want,
            "{style}: nothing holds the router"
        );
    }
}

#[tokio::test]
async fn infoblox_never_hands_out_the_ipv6_gateway_named_by_the_gateway_ea() {
    for style in ["host", "fixed_address", "a_ptr"] {
        let fake = FakeWapi::start_with(bare_lab()).await;
        let b = backend(&fake.url, &format!("record_style = \"{style}\""));
        let (got, e) = fill(&b, BARE6, "vm6").await;
        let want: Vec<IpAddr> = (2..=7).map(|h| ip(&format!("2001:db8:70::{h}"))).collect();
        assert_eq!(got, want, "{style}: every address but the router ::1");
        assert_exhausted(&e, "2001:db8:70::/125");
    }
}

#[tokio::test]
async fn infoblox_never_hands_out_any_router_of_a_network() {
    let fake = FakeWapi::start_with(bare_lab()).await;
    let b = backend(&fake.url, "");
    let (got, e) = fill(&b, MULTI, "vm").await;
    assert_eq!(
        got,
        [ip("10.71.0.2"), ip("10.71.0.3"), ip("10.71.0.4")],
        "both routers option values and the Gateway EA are left out"
    );
    assert_exhausted(&e, "10.71.0.0/29");
    // The network still describes its first router as the gateway.
    let nets = b.networks(&CallContext::default()).await.expect("networks");
    let multi = nets.iter().find(|n| n.backend_id == MULTI).expect("listed");
    assert_eq!(multi.gateway, Some(ip("10.71.0.1")));
}

#[tokio::test]
async fn infoblox_refuses_a_specific_request_for_the_router_address_naming_address() {
    let fake = FakeWapi::start_with(bare_lab()).await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    for (net, router) in [
        (BARE, "10.70.0.1"),
        (BARE6, "2001:db8:70::1"),
        (MULTI, "10.71.0.6"),
        (MULTI, "10.71.0.5"),
        (SERVERS, "10.20.0.1"),
    ] {
        let before = fake.with(|s| s.objects.len());
        let e = b
            .allocate(&cx, &mk("vm-r", Some(router), net))
            .await
            .expect_err("the router");
        match &e {
            IpamError::InvalidInput { field, why } => {
                assert_eq!(field, "address", "{e:?}");
                assert!(why.contains(router) && why.contains("gateway"), "{why}");
            }
            other => panic!("{net} {router}: InvalidInput expected, got {other:?}"),
        }
        assert_eq!(
            fake.with(|s| s.objects.len()),
            before,
            "{router}: nothing created"
        );
    }
    // Through the native API: a 400 naming the field.
    let app = spawn_with(AppOptions {
        config: config(&fake.url, ""),
        tls: false,
        metrics: false,
    })
    .await;
    let id = app.network_id("bare-router").await;
    let resp = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": "vm-http", "networks": [id], "address": "10.70.0.1"}),
        )
        .send()
        .await
        .expect("allocate");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["field"], "address", "{body}");
    app.stop().await;
}

/// What an older gateway left behind: a host record of an owner holding the router address.
async fn leftover_router_host(fake: &FakeWapi, addr: &str, o: &str) {
    let status = reqwest::Client::new()
        .post(format!("{}/wapi/v2.12/record:host", fake.url))
        .basic_auth("admin", Some("infoblox"))
        .json(&json!({
            "name": format!("{}.lab.example.com", o.replace(':', "-")),
            "configure_for_dns": false,
            "network_view": "default",
            "comment": format!("ipam-gateway: {o}"),
            "extattrs": {"ipamgw-owner": {"value": o}},
            "ipv4addrs": [{"ipv4addr": addr, "configure_for_dhcp": false}],
        }))
        .send()
        .await
        .expect("create")
        .status();
    assert_eq!(status, 201);
}

#[tokio::test]
async fn infoblox_releases_and_updates_a_router_address_only_when_the_gateway_made_it() {
    let fake = FakeWapi::start_with(bare_lab()).await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    // An allocation of the router, as an older version handed it out to an Avi VIP.
    leftover_router_host(&fake, "10.70.0.1", "avi:vip-1").await;
    let held = b
        .find(&cx, &Lookup::Owner(owner("avi:vip-1")))
        .await
        .expect("find");
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].network.as_str(), held[0].address),
        (BARE, ip("10.70.0.1"))
    );
    // UpdateIpamRecord: the owner's record changes.
    let mac = Mac::parse("00:50:56:aa:bb:01").expect("mac");
    let u = b
        .update(
            &cx,
            BARE,
            ip("10.70.0.1"),
            &RecordChanges {
                mac: Some(mac.clone()),
                ..RecordChanges::default()
            },
        )
        .await
        .expect("update of the owner's record");
    assert_eq!(u.details.mac, Some(mac));
    // DeleteIpamRecord: released, the router is free of records again.
    b.release(&cx, BARE, ip("10.70.0.1"))
        .await
        .expect("release of the owner's record");
    assert!(fake.used_in("default", "10.70.0.0/28").is_empty());
    b.release(&cx, BARE, ip("10.70.0.1"))
        .await
        .expect("releasing again: nothing of the gateway's is there");
    let gone = b
        .update(&cx, BARE, ip("10.70.0.1"), &RecordChanges::default())
        .await
        .expect_err("nothing to update");
    assert!(matches!(gone, IpamError::NotFound(_)), "{gone:?}");

    // A router held by a record the gateway did not make (lab-servers' reservation): left
    // alone. With host records, no host holds it: releasing is a no-op success.
    b.release(&cx, SERVERS, ip("10.20.0.1"))
        .await
        .expect("no host record of the gateway's holds it");
    let reservation = |fake: &FakeWapi| {
        fake.objects("fixedaddress")
            .into_iter()
            .find(|o| o.text("ipv4addr") == Some("10.20.0.1"))
    };
    assert!(reservation(&fake).is_some(), "the reservation stays");
    // With fixed addresses, the reservation is found, and refused.
    let fixed = backend(&fake.url, "record_style = \"fixed_address\"");
    let e = fixed
        .release(&cx, SERVERS, ip("10.20.0.1"))
        .await
        .expect_err("not the gateway's to release");
    assert!(
        matches!(&e, IpamError::Conflict(m) if m.contains("gateway") && m.contains("not made by ipam-gateway")),
        "{e:?}"
    );
    let e = fixed
        .update(
            &cx,
            SERVERS,
            ip("10.20.0.1"),
            &RecordChanges {
                mac: Some(Mac::parse("00:50:56:aa:bb:02").expect("mac")),
                ..RecordChanges::default()
            },
        )
        .await
        .expect_err("not the gateway's to change");
    assert!(matches!(&e, IpamError::Conflict(_)), "{e:?}");
    let kept = reservation(&fake).expect("the reservation stays");
    assert_eq!(kept.text("mac"), Some("00:00:00:00:00:00"), "unchanged");
}

#[tokio::test]
async fn infoblox_a_ptr_release_of_a_router_deletes_only_the_gateways_records() {
    let fake = FakeWapi::start_with(bare_lab()).await;
    let aptr = backend(&fake.url, "record_style = \"a_ptr\"");
    let cx = CallContext::default();
    // An operator's PTR for the router, and an older version's A + PTR of an owner.
    let post = |object: &'static str, body: Value| {
        let url = format!("{}/wapi/v2.12/{object}", fake.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("admin", Some("infoblox"))
                .json(&body)
                .send()
                .await
                .expect("create")
                .status()
        }
    };
    let ops = post(
        "record:ptr",
        json!({"ptrdname": "router.lab.example.com", "view": "default", "ipv4addr": "10.70.0.1"}),
    )
    .await;
    assert_eq!(ops, 201);
    let owned = json!({"ipamgw-owner": {"value": "avi:vip-2"}});
    assert_eq!(
        post(
            "record:a",
            json!({"name": "vip-2.lab.example.com", "view": "default", "ipv4addr": "10.70.0.1",
                "comment": "ipam-gateway: avi:vip-2", "extattrs": owned}),
        )
        .await,
        201
    );
    assert_eq!(
        post(
            "record:ptr",
            json!({"ptrdname": "vip-2.lab.example.com", "view": "default",
                "ipv4addr": "10.70.0.1", "comment": "ipam-gateway: avi:vip-2", "extattrs": owned}),
        )
        .await,
        201
    );
    aptr.release(&cx, BARE, ip("10.70.0.1"))
        .await
        .expect("release");
    assert!(fake.objects("record:a").is_empty());
    let ptrs: Vec<Option<String>> = fake
        .objects("record:ptr")
        .iter()
        .map(|p| p.text("ptrdname").map(str::to_owned))
        .collect();
    assert_eq!(ptrs, [Some("router.lab.example.com".to_owned())]);
}

#[tokio::test]
async fn infoblox_exact_free_counts_leave_an_unheld_router_out() {
    let mut state = bare_lab();
    state.add_network(SeedNetwork {
        view: "default".into(),
        cidr: "10.72.0.0/28".into(),
        comment: "router-last".into(),
        gateway: Some("10.72.0.14".into()),
        eas: vec![("vRA-Enabled".into(), "true".into())],
        ..SeedNetwork::default()
    });
    let fake = FakeWapi::start_with(state).await;
    let b = backend(&fake.url, "free_counts = \"exact\"");
    let nets = b.networks(&CallContext::default()).await.expect("networks");
    let free = |name: &str| nets.iter().find(|n| n.name == name).and_then(|n| n.free);
    assert_eq!(
        free("router-last"),
        Some(13),
        "14 hosts, the router .14 never handed out"
    );
    assert_eq!(
        free("bare-router"),
        Some(13),
        "the range starts after the router .1"
    );
    assert_eq!(free("two-routers"), Some(3), ".2–.4");
    assert_eq!(free("lab-tiny"), Some(5), "a reserved router counts once");
}

#[tokio::test]
async fn the_fake_honours_exclude_in_the_object_function_form() {
    let fake = FakeWapi::start_with(bare_lab()).await;
    let post = |body: Value| {
        let url = format!("{}/wapi/v2.12/fixedaddress", fake.url);
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .basic_auth("admin", Some("infoblox"))
                .json(&body)
                .send()
                .await
                .expect("create");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let func = |object: &str, network: &str, exclude: &[&str]| {
        json!({"_object_function": "next_available_ip", "_result_field": "ips",
            "_object": object, "_object_parameters": {"network": network, "network_view": "default"},
            "_parameters": {"exclude": exclude}})
    };
    let fixed = |addr: Value| json!({"network_view": "default", "mac": "00:00:00:00:00:00", "ipv4addr": addr});
    // Without exclude the router goes first: nothing holds it.
    let (status, _) = post(fixed(func("network", "10.70.0.0/28", &[]))).await;
    assert_eq!(status, 201);
    assert_eq!(fake.used_in("default", "10.70.0.0/28"), [ip("10.70.0.1")]);
    // Excluded addresses are skipped, held ones too.
    let (status, _) = post(fixed(func(
        "network",
        "10.70.0.0/28",
        &["10.70.0.2", "10.70.0.3"],
    )))
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        fake.used_in("default", "10.70.0.0/28"),
        [ip("10.70.0.1"), ip("10.70.0.4")]
    );
    // Only excluded addresses left: fixture 11's answer.
    let rest: Vec<String> = (5..=14).map(|h| format!("10.70.0.{h}")).collect();
    let mut exclude: Vec<&str> = rest.iter().map(String::as_str).collect();
    exclude.extend(["10.70.0.2", "10.70.0.3"]);
    let (status, body) = post(fixed(func("network", "10.70.0.0/28", &exclude))).await;
    let want = Exchange::host_create_exhausted();
    assert_eq!((status, &body), (want.status(), want.body()));
    // No such network; the family's object type; the function's name.
    let (status, body) = post(fixed(func("network", "10.99.0.0/24", &[]))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("Client.Ibap.Data.NotFound"))
    );
    let (status, body) = post(fixed(func("ipv6network", "2001:db8:70::/125", &[]))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("Client.Ibap.Proto")),
        "{body}"
    );
    let mut wrong = func("network", "10.70.0.0/28", &[]);
    wrong["_object_function"] = json!("next_available_network");
    let (status, body) = post(fixed(wrong)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("Client.Ibap.Proto")),
        "{body}"
    );
    let mut bad = func("network", "10.70.0.0/28", &[]);
    bad["_parameters"]["exclude"] = json!(["not-an-address"]);
    let (status, body) = post(fixed(bad)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("Client.Ibap.Proto")),
        "{body}"
    );
}
