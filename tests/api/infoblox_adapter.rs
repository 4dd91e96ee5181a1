//! The Infoblox backend against wiremock mocks built from `fixtures/infoblox/` (each fixture
//! follows the source its `source` field names).

use std::net::IpAddr;
use std::time::Duration;

use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::domain::{
    AllocateIn, CarveRequest, IpamError, Lookup, Mac, Owner, RecordChanges, RecordDetails,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::support::infoblox::{COOKIE, Exchange, InfobloxMock, PASSWORD, backend};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn owner(s: &str) -> Owner {
    Owner::parse(s).expect("owner")
}

const SERVERS: &str = "default/10.20.0.0/24";
const TINY: &str = "default/10.40.0.0/29";
const V6: &str = "default/2001:db8:20::/64";

fn alloc(o: &str, net: &str) -> AllocateIn {
    AllocateIn {
        network: net.into(),
        owner: owner(o),
        address: None,
        details: RecordDetails {
            aliases: Vec::new(),
            hostname: Some(format!("{o}.lab.example.com")),
            description: None,
            mac: None,
        },
    }
}

fn body_of(r: &wiremock::Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

#[test]
fn every_fixture_names_its_source() {
    for name in crate::support::infoblox::all() {
        let ex = Exchange::load(&name);
        assert!(
            ex.source().len() > 10,
            "{name}: a fixture must say which source it follows"
        );
        assert!(ex.target().starts_with("/wapi/v2.12/"), "{name}");
    }
}

#[tokio::test]
async fn networks_follow_next_page_id_and_map_options_and_eas() {
    let m = InfobloxMock::start().await;
    m.login().mounted().expect(1).mount().await;
    for search in m
        .networks_paged()
        .into_iter()
        .chain(m.other_inventory_searches())
    {
        search.with_cookie().mounted().expect(1).mount().await;
    }
    let b = backend(&m.uri(), "free_counts = \"off\"");
    let cx = CallContext::default();
    let nets = match b.networks(&cx).await {
        Ok(n) => n,
        Err(e) => {
            for r in m.requests().await {
                eprintln!("{} {} {:?}", r.method, r.url, r.headers.get("cookie"));
            }
            panic!("{e:?}");
        }
    };
    let names: Vec<&str> = nets.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["lab-servers", "lab-dmz", "lab-tiny", "lab-servers-v6"],
        "both pages of networks, then IPv6"
    );
    let s = &nets[0];
    assert_eq!(s.backend_id, SERVERS);
    assert_eq!(s.cidr.to_string(), "10.20.0.0/24");
    assert_eq!(s.address_space, "default");
    assert_eq!(s.gateway, Some(ip("10.20.0.1")), "from the routers option");
    assert_eq!(s.dns_servers, [ip("10.20.0.53"), ip("10.20.0.54")]);
    assert_eq!(s.dns_domain.as_deref(), Some("lab.example.com"));
    assert_eq!(s.dns_search_domains, ["lab.example.com", "example.com"]);
    assert_eq!(s.vlan, Some(20), "from the VLAN EA");
    assert!(
        s.tags
            .iter()
            .any(|t| t.key == "Tier" && t.value == "servers"),
        "EAs are tags: {:?}",
        s.tags
    );
    assert_eq!(
        (s.range_start, s.range_end),
        (ip("10.20.0.2"), ip("10.20.0.254")),
        "the gateway is not in the range"
    );
    assert_eq!((s.block.as_ref(), s.owner.as_ref()), (None, None));
    let v6 = &nets[3];
    assert_eq!(
        v6.gateway,
        Some(ip("2001:db8:20::1")),
        "IPv6: the Gateway EA"
    );
    assert_eq!(v6.dns_servers, [ip("2001:db8:20::53")]);
    assert_eq!(v6.dns_domain.as_deref(), Some("lab.example.com"));
    assert!(!v6.tags.iter().any(|t| t.key == "Gateway"));

    let blocks = b.blocks(&cx).await.expect("blocks (cached inventory)");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].name, "lab-on-demand");
    assert_eq!(blocks[0].dns_domain.as_deref(), Some("lab.example.com"));

    // One login; every data call rode the cookie, none carried the password.
    let reqs = m.requests().await;
    let with_basic = reqs
        .iter()
        .filter(|r| r.headers.contains_key("authorization"))
        .count();
    assert_eq!(with_basic, 1, "only the login sends Basic");
    assert!(
        reqs.iter()
            .filter(|r| !r.headers.contains_key("authorization"))
            .all(|r| r.headers.get("cookie").and_then(|v| v.to_str().ok()) == Some(COOKIE))
    );
}

#[tokio::test]
async fn check_reports_views_networks_and_blocks() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.network_views().with_cookie().mount().await;
    let status = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect("check");
    assert_eq!(
        (status.kind, status.networks, status.blocks),
        ("infoblox", 4, 1)
    );
    assert!(status.detail.contains("WAPI v2.12"), "{}", status.detail);
    assert!(!status.detail.contains("WARNING"), "{}", status.detail);
    assert!(!status.detail.contains(PASSWORD));
}

#[tokio::test]
async fn allocation_creates_a_host_with_next_available_ip_excluding_the_router() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_create_next_ip()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "");
    let a = b
        .allocate(&CallContext::default(), &alloc("vm-1", SERVERS))
        .await
        .expect("allocate");
    assert_eq!(a.address, ip("10.20.0.2"));
    assert_eq!(a.network, SERVERS);
    assert_eq!(a.owner, Some(owner("vm-1")));
    assert_eq!(a.details.hostname.as_deref(), Some("vm-1.lab.example.com"));
    assert!(
        a.reference
            .as_deref()
            .is_some_and(|r| r.starts_with("record:host/"))
    );
    let sent = m
        .requests()
        .await
        .into_iter()
        .find(|r| r.method.as_str() == "POST")
        .expect("a POST");
    assert_eq!(
        body_of(&sent),
        *Exchange::host_create_next_ip().request_body()
    );
    assert_eq!(
        body_of(&sent)["ipv4addrs"][0]["ipv4addr"]["_parameters"]["exclude"],
        json!(["10.20.0.1"]),
        "the router (routers option) is excluded"
    );
}

#[tokio::test]
async fn the_router_is_excluded_in_every_record_style_and_family() {
    // (record style, network, owner, exchanges mounted; the first one's request is the create).
    let cases: [(&str, &str, &str, Vec<Exchange>); 3] = [
        (
            "fixed_address",
            SERVERS,
            "vm-2",
            vec![Exchange::fixed_create()],
        ),
        (
            "a_ptr",
            SERVERS,
            "vm-3",
            vec![Exchange::a_create(), Exchange::ptr_create()],
        ),
        ("host", V6, "vm-6", vec![Exchange::host_create_next_ip_v6()]),
    ];
    for (style, net, o, mount) in cases {
        let m = InfobloxMock::start().await;
        m.inventory().await;
        for ex in &mount {
            m.replay(ex).with_cookie().mount().await;
        }
        let b = backend(&m.uri(), &format!("record_style = \"{style}\""));
        let mut req = alloc(o, net);
        if style == "fixed_address" {
            req.details.hostname = None;
        }
        b.allocate(&CallContext::default(), &req)
            .await
            .unwrap_or_else(|e| panic!("{style}: {e:?}"));
        let sent = m
            .requests()
            .await
            .into_iter()
            .find(|r| r.method.as_str() == "POST")
            .expect("a POST");
        assert_eq!(body_of(&sent), *mount[0].request_body(), "{style} in {net}");
    }
}

#[tokio::test]
async fn no_free_address_is_exhausted_and_names_the_network() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_create_exhausted().with_cookie().mount().await;
    let b = backend(&m.uri(), "");
    let e = b
        .allocate(&CallContext::default(), &alloc("vm-1", TINY))
        .await
        .expect_err("exhausted");
    let IpamError::Exhausted(msg) = &e else {
        panic!("Exhausted expected, got {e:?}");
    };
    assert!(msg.contains("Cannot find 1 available IP address"), "{msg}");
    assert!(
        msg.contains("10.40.0.0/29") && msg.contains("Client.Ibap.Data.Conflict"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_existing_record_is_a_conflict_and_an_unknown_ea_carries_the_wapi_body() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_create_duplicate().with_cookie().mount().await;
    let b = backend(&m.uri(), "");
    let e = b
        .allocate(&CallContext::default(), &alloc("vm-1", SERVERS))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&e, IpamError::Conflict(m) if m.contains("already exists")),
        "{e:?}"
    );

    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_create_unknown_ea().with_cookie().mount().await;
    let e = backend(&m.uri(), "")
        .allocate(&CallContext::default(), &alloc("vm-1", SERVERS))
        .await
        .expect_err("unknown EA");
    match &e {
        IpamError::Upstream { status, detail, .. } => {
            assert_eq!(*status, 400);
            assert!(
                detail.contains("Unknown extensible attribute: VM Name")
                    && detail.contains("AdmConProtoError")
                    && detail.contains("Client.Ibap.Proto"),
                "{detail}"
            );
        }
        other => panic!("Upstream expected, got {other:?}"),
    }
}

#[tokio::test]
async fn find_by_owner_searches_the_owner_ea() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_search_owner()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let found = backend(&m.uri(), "")
        .find(&CallContext::default(), &Lookup::Owner(owner("vm-1")))
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].address, ip("10.20.0.2"));
    assert_eq!(found[0].network, SERVERS);
    assert_eq!(found[0].owner, Some(owner("vm-1")));
    assert_eq!(
        found[0].details.description.as_deref(),
        Some("ipam-gateway: vm-1")
    );
}

#[tokio::test]
async fn a_mac_goes_on_the_host_address() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_by_address().with_cookie().mount().await;
    m.host_put_mac()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "");
    let mac = Mac::parse("00:50:56:AA:BB:CC").expect("mac");
    let changes = RecordChanges {
        mac: Some(mac.clone()),
        ..RecordChanges::default()
    };
    let a = b
        .update(&CallContext::default(), SERVERS, ip("10.20.0.2"), &changes)
        .await
        .expect("update");
    assert_eq!(a.details.mac, Some(mac));
    let put = m
        .requests()
        .await
        .into_iter()
        .find(|r| r.method.as_str() == "PUT")
        .expect("a PUT");
    assert_eq!(body_of(&put), *Exchange::host_put_mac().request_body());
}

#[tokio::test]
async fn release_deletes_by_ref_and_a_gone_ref_is_success() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.host_by_address().with_cookie().mount().await;
    m.host_delete()
        .with_cookie()
        .mounted()
        .expect(1)
        .times(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();
    b.release(&cx, SERVERS, ip("10.20.0.2"))
        .await
        .expect("release");
    m.host_delete_gone()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    b.release(&cx, SERVERS, ip("10.20.0.2"))
        .await
        .expect("a ref deleted meanwhile is released already");
    // The router: no host record of the gateway's holds it, so nothing is deleted.
    Mock::given(method("GET"))
        .and(path("/wapi/v2.12/record:host"))
        .and(query_param("ipv4addr", "10.20.0.1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&m.server)
        .await;
    b.release(&cx, SERVERS, ip("10.20.0.1"))
        .await
        .expect("nothing of the gateway's at the router");
    let deletes = m
        .requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .count();
    assert_eq!(deletes, 2, "the two releases of 10.20.0.2 only");
}

#[tokio::test]
async fn fixed_address_style_reserves_with_the_zero_mac() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.fixed_create()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "record_style = \"fixed_address\"");
    let mut req = alloc("vm-2", SERVERS);
    req.details.hostname = None;
    let a = b
        .allocate(&CallContext::default(), &req)
        .await
        .expect("allocate");
    assert_eq!(a.address, ip("10.20.0.3"));
    assert_eq!(a.details.mac, None, "the zero MAC is no MAC");
    assert!(
        a.reference
            .as_deref()
            .is_some_and(|r| r.starts_with("fixedaddress/"))
    );
}

#[tokio::test]
async fn a_ptr_style_creates_the_a_record_then_its_ptr() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.a_create().with_cookie().mounted().expect(1).mount().await;
    m.ptr_create()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "record_style = \"a_ptr\"");
    let a = b
        .allocate(&CallContext::default(), &alloc("vm-3", SERVERS))
        .await
        .expect("allocate");
    assert_eq!(a.address, ip("10.20.0.4"));
    let posts: Vec<String> = m
        .requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(posts, ["/wapi/v2.12/record:a", "/wapi/v2.12/record:ptr"]);
    // A records keep no MAC.
    let e = b
        .update(
            &CallContext::default(),
            SERVERS,
            a.address,
            &RecordChanges {
                mac: Some(Mac::parse("00:50:56:00:00:01").expect("mac")),
                ..RecordChanges::default()
            },
        )
        .await;
    assert!(e.is_err());
}

#[tokio::test]
async fn a_specific_address_in_use_is_a_conflict_before_any_create() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.ipv4address_used().with_cookie().mount().await;
    // Fixture 21's answer for another address in use.
    let used = Exchange::ipv4address_used()
        .body_text()
        .replace("10.20.0.1", "10.20.0.9");
    Mock::given(method("GET"))
        .and(path("/wapi/v2.12/ipv4address"))
        .and(query_param("ip_address", "10.20.0.9"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(used, "application/json"))
        .mount(&m.server)
        .await;
    let b = backend(&m.uri(), "");
    let mut req = alloc("vm-9", SERVERS);
    req.address = Some(ip("10.20.0.9"));
    let e = b
        .allocate(&CallContext::default(), &req)
        .await
        .expect_err("in use");
    assert!(matches!(e, IpamError::Conflict(_)), "{e:?}");
    assert!(
        m.requests()
            .await
            .iter()
            .all(|r| r.method.as_str() != "POST")
    );
    // The router (fixture 21: a reservation holds it) is refused before any search: a router
    // named only by the routers option is held by nothing the grid would report.
    let searches = |rs: &[wiremock::Request]| {
        rs.iter()
            .filter(|r| r.url.path().ends_with("/ipv4address"))
            .count()
    };
    let before = searches(&m.requests().await);
    req.address = Some(ip("10.20.0.1"));
    let e = b
        .allocate(&CallContext::default(), &req)
        .await
        .expect_err("the router");
    assert!(
        matches!(&e, IpamError::InvalidInput { field, why } if field == "address" && why.contains("gateway")),
        "{e:?}"
    );
    assert_eq!(searches(&m.requests().await), before, "no request for it");
    req.address = Some(ip("10.21.0.1"));
    let e = b
        .allocate(&CallContext::default(), &req)
        .await
        .expect_err("outside");
    assert!(
        matches!(&e, IpamError::InvalidInput { field, .. } if field == "address"),
        "{e:?}"
    );
}

#[tokio::test]
async fn carving_uses_nextavailablenetwork_then_sets_routers_and_reserves_the_gateway() {
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.network_create_next_network()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    m.network_put_options()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    m.fixed_reserve_gateway()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "");
    let n = b
        .allocate_network(
            &CallContext::default(),
            &CarveRequest {
                block: "default/10.100.0.0/16".into(),
                prefix_len: 28,
                owner: owner("project-a"),
                name: Some("app net".into()),
                subnet: None,
            },
        )
        .await
        .expect("carve");
    assert_eq!(n.cidr.to_string(), "10.100.0.0/28");
    assert_eq!(n.backend_id, "default/10.100.0.0/28");
    assert_eq!(n.gateway, Some(ip("10.100.0.1")));
    assert_eq!(n.dns_servers, [ip("10.20.0.53")]);
    assert_eq!(n.block.as_deref(), Some("default/10.100.0.0/16"));
    assert_eq!(n.owner, Some(owner("project-a")));
    for (want, verb) in [
        (Exchange::network_create_next_network(), "POST"),
        (Exchange::network_put_options(), "PUT"),
        (Exchange::fixed_reserve_gateway(), "POST"),
    ] {
        let f = &want.name;
        let got = m
            .requests()
            .await
            .into_iter()
            .find(|r| r.method.as_str() == verb && r.url.path() == want.path())
            .unwrap_or_else(|| panic!("request of fixture {f}"));
        assert_eq!(body_of(&got), *want.request_body(), "fixture {f}");
    }
}

#[tokio::test]
async fn html_401_is_unauthorized_and_never_shows_the_password() {
    let m = InfobloxMock::start().await;
    m.auth_401_html().mounted().expect(1).mount().await;
    let b = backend(
        &m.uri(),
        "username = \"admin\"\npassword = \"wrong-pw-xyz\"",
    );
    let cx = CallContext::default();
    let e = b.networks(&cx).await.expect_err("401");
    let IpamError::Unauthorized(msg) = &e else {
        panic!("Unauthorized expected, got {e:?}");
    };
    assert!(
        msg.contains("401") && msg.contains("Authorization Required"),
        "{msg}"
    );
    assert!(
        !msg.contains("<html>"),
        "the HTML page is reduced to its title: {msg}"
    );
    assert!(!format!("{e} {e:?} {b:?}").contains("wrong-pw-xyz"));
    // A failed login is remembered: the grid is not asked again (its lockout would follow).
    let again = b.networks(&cx).await.expect_err("still 401");
    assert!(matches!(again, IpamError::Unauthorized(_)));
}

#[tokio::test]
async fn lockout_403_is_unauthorized_and_says_why() {
    let m = InfobloxMock::start().await;
    m.auth_403_lockout().mount().await;
    let e = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("403");
    assert!(
        matches!(&e, IpamError::Unauthorized(m) if m.contains("locked")),
        "{e:?}"
    );
}

#[tokio::test]
async fn grid_503_is_unavailable() {
    let m = InfobloxMock::start().await;
    m.grid_503().mount().await;
    let e = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("503");
    assert!(
        matches!(&e, IpamError::Unavailable { backend, detail } if backend == "ipam" && detail.contains("Temporary Unavailable")),
        "{e:?}"
    );
}

/// A 200 that is not JSON where the grid's schema answer (fixture 01) should be — what a proxy
/// or a login portal in front of the grid answers; `Fault::Garbage` in
/// tests/api/resilience_proxy.rs models the same — is an answer the gateway cannot read, not an
/// `Upstream` status the grid never sent.
#[tokio::test]
async fn a_200_that_is_not_json_is_undecodable() {
    let m = InfobloxMock::start().await;
    m.respond(
        "GET",
        "/wapi/v2.12/",
        ResponseTemplate::new(200).set_body_raw("<html><body>Sign in</body></html>", "text/html"),
    )
    .mount()
    .await;
    let e = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("not JSON");
    assert!(
        matches!(&e, IpamError::Undecodable { backend, detail }
            if backend == "ipam" && detail.contains("answered 200") && detail.contains("not JSON")),
        "{e:?}"
    );
}

/// A paged search answered with JSON of another shape than fixture 04's `{result, next_page_id}`:
/// the gateway says which search it could not read.
#[tokio::test]
async fn a_paged_search_of_another_shape_is_undecodable_naming_it() {
    let m = InfobloxMock::start().await;
    m.login().mount().await;
    m.respond(
        "GET",
        "/wapi/v2.12/network",
        ResponseTemplate::new(200).set_body_json(json!({"result": "none"})),
    )
    .with_cookie()
    .mount()
    .await;
    let e = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("other shape");
    assert!(
        matches!(&e, IpamError::Undecodable { backend, detail }
            if backend == "ipam" && detail.contains("paged search of network")),
        "{e:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_unavailable_naming_the_backend() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let e = backend(&format!("http://127.0.0.1:{port}"), "")
        .networks(&CallContext::default())
        .await
        .expect_err("refused");
    match &e {
        IpamError::Unavailable { backend, detail } => {
            assert_eq!(backend, "ipam");
            assert!(detail.contains("cannot connect"), "{detail}");
        }
        other => panic!("Unavailable expected, got {other:?}"),
    }
    assert!(!e.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn a_slow_grid_is_a_timeout() {
    let m = InfobloxMock::start().await;
    m.respond(
        "GET",
        "/wapi/v2.12/",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
    )
    .mount()
    .await;
    let text = crate::support::infoblox::config(&m.uri(), "")
        .replace("timeout_secs = 5", "timeout_secs = 1");
    let b = crate::support::infoblox::backend_from(&text);
    let e = b
        .networks(&CallContext::default())
        .await
        .expect_err("timeout");
    assert!(
        matches!(e, IpamError::Timeout { ref backend, seconds: 1 } if backend == "ipam"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_refused_cookie_costs_one_login_then_the_call_succeeds() {
    let m = InfobloxMock::start().await;
    // Login 1 sets the fixture cookie; the grid then refuses it once (expired), login 2 again.
    m.login().mounted().expect(2).mount().await;
    m.respond(
        "GET",
        "/wapi/v2.12/network",
        ResponseTemplate::new(401).set_body_raw(
            Exchange::auth_401_html().body_text(),
            "text/html; charset=iso-8859-1",
        ),
    )
    .mounted()
    .times(1)
    .priority(1)
    .mount()
    .await;
    for search in m
        .networks_paged()
        .into_iter()
        .chain(m.other_inventory_searches())
    {
        search.with_cookie().mount().await;
    }
    let b = backend(&m.uri(), "count_free = false");
    let nets = b
        .networks(&CallContext::default())
        .await
        .expect("re-login, then success");
    assert_eq!(nets.len(), 4);
    assert_eq!(b.logins(), 2);
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let m = InfobloxMock::start().await;
    m.auth_401_html().mount().await;
    let b = backend(
        &m.uri(),
        "username = \"admin\"\npassword = \"s3cret-Infoblox-pw\"",
    );
    let e = b.check(&CallContext::default()).await.expect_err("401");
    let text = format!("{b:?} {e} {e:?}");
    assert!(!text.contains("s3cret-Infoblox-pw"), "{text}");
    let s = crate::support::infoblox::settings(&crate::support::infoblox::config(
        &m.uri(),
        "username = \"admin\"\npassword = \"s3cret-Infoblox-pw\"",
    ));
    let printed = format!("{s:?} {}", s.to_toml().expect("print-config"));
    assert!(!printed.contains("s3cret-Infoblox-pw"), "{printed}");
}

fn free_of(nets: &[ipam_gateway::domain::NetworkInfo]) -> Vec<(&str, Option<u64>)> {
    nets.iter().map(|n| (n.name.as_str(), n.free)).collect()
}

#[tokio::test]
async fn free_counts_come_from_utilization_in_the_paged_listing_by_default() {
    let m = InfobloxMock::start().await;
    m.login().mounted().expect(1).mount().await;
    for search in [m.networks_utilization()]
        .into_iter()
        .chain(m.other_inventory_searches())
    {
        search.with_cookie().mounted().expect(1).mount().await;
    }
    // No address search per network.
    for at in ["/wapi/v2.12/ipv4address", "/wapi/v2.12/ipv6address"] {
        m.respond("GET", at, ResponseTemplate::new(500))
            .mounted()
            .expect(0)
            .mount()
            .await;
    }
    let nets = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect("networks");
    assert_eq!(
        free_of(&nets),
        [
            ("lab-servers", Some(253)),
            ("lab-dmz", Some(61)),
            ("lab-tiny", Some(5)),
            ("lab-servers-v6", None),
        ],
        "usable × (100 − utilization) / 100, never more than the range; IPv6 networks have no \
         utilization"
    );
    let reqs = m.requests().await;
    assert_eq!(reqs.len(), 5, "a login and four one-page searches");
    let v6 = reqs
        .iter()
        .find(|r| r.url.path().ends_with("/ipv6network"))
        .expect("the IPv6 search");
    assert!(
        !v6.url.query().unwrap_or_default().contains("utilization"),
        "not asked on ipv6network: {}",
        v6.url
    );
}

#[tokio::test]
async fn absent_or_unreadable_utilization_is_an_unknown_count_never_an_error() {
    let m = InfobloxMock::start().await;
    m.login().mount().await;
    for search in m.other_inventory_searches() {
        search.with_cookie().mount().await;
    }
    let mut page = Exchange::networks_utilization().body().clone();
    let items = page["result"].as_array_mut().expect("result");
    items[0]
        .as_object_mut()
        .expect("network")
        .remove("utilization");
    items[1]["utilization"] = json!("n/a");
    items[2]["utilization"] = json!(250);
    m.respond(
        "GET",
        "/wapi/v2.12/network",
        ResponseTemplate::new(200).set_body_json(page),
    )
    .mount()
    .await;
    let nets = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect("a listing whatever the utilization says");
    assert_eq!(
        free_of(&nets),
        [
            ("lab-servers", None),
            ("lab-dmz", None),
            ("lab-tiny", Some(0)),
            ("lab-servers-v6", None),
        ],
        "absent and unreadable: unknown; 250 % is clamped to 100 %"
    );
}

/// What a grid answers to a return field it does not know (INFERRED: WAPI's usual
/// `AdmConProtoError` shape, spec §6; the exact text is not in a source).
fn unknown_field(field: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "Error": format!("AdmConProtoError: Unknown argument/field: {field}"),
        "code": "Client.Ibap.Proto",
        "text": format!("Unknown argument/field: {field}"),
    }))
}

#[tokio::test]
async fn a_grid_refusing_utilization_is_listed_without_it_and_not_asked_again() {
    let m = InfobloxMock::start().await;
    m.login().mount().await;
    let with_utilization = Exchange::networks_utilization()
        .query()
        .into_iter()
        .find(|(k, _)| k == "_return_fields")
        .expect("fixture 30 asks for fields")
        .1;
    Mock::given(method("GET"))
        .and(path("/wapi/v2.12/network"))
        .and(query_param("_return_fields", with_utilization.as_str()))
        .respond_with(unknown_field("utilization"))
        .expect(1)
        .mount(&m.server)
        .await;
    for page in m.networks_paged() {
        page.with_cookie().mounted().expect(2).mount().await;
    }
    for search in m.other_inventory_searches() {
        search.with_cookie().mount().await;
    }
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();
    for round in 0..2 {
        let nets = b.networks(&cx).await.expect("listed without utilization");
        assert_eq!(nets.len(), 4, "round {round}");
        assert!(
            nets.iter().all(|n| n.free.is_none()),
            "round {round}: unknown counts"
        );
    }
}

#[tokio::test]
async fn other_refusals_of_the_utilization_listing_stay_errors() {
    let m = InfobloxMock::start().await;
    m.login().mount().await;
    m.respond(
        "GET",
        "/wapi/v2.12/network",
        ResponseTemplate::new(400).set_body_json(Exchange::unknown_ea().body().clone()),
    )
    .mounted()
    .expect(1)
    .mount()
    .await;
    let e = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("an unknown EA is not a missing utilization field");
    assert!(
        matches!(&e, IpamError::Upstream { status: 400, detail, .. } if detail.contains("Unknown extensible attribute")),
        "{e:?}"
    );
}
