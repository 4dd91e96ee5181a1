//! The phpIPAM backend against wiremock mocks built from recorded phpIPAM 1.8.2 exchanges.

use std::net::IpAddr;
use std::time::Duration;

use ipam_gateway::backends::phpipam::wire::Subnet;
use ipam_gateway::backends::{Backend, CallContext, Credentials};
use ipam_gateway::domain::{AllocateIn, CarveRequest, IpamError, Lookup, Owner, RecordDetails};
use secrecy::SecretString;
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::query_param;

use crate::support::phpipam::{Exchange, PASSWORD, PhpipamMock, TOKEN, backend};

const API: &str = "/api/gateway";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn owner(s: &str) -> Owner {
    Owner::parse(s).expect("owner")
}

/// Login, the section list and the Gateway section's subnets: what every inventory needs.
async fn inventory_mocks(m: &PhpipamMock) {
    m.login().mount().await;
    m.sections_list().mounted().mount().await;
    m.section_subnets().mount().await;
}

/// `GET addresses/{id}/` for the two gateway addresses, answered like fixture 74 with the
/// gateway's own ip (the recordings show address 15; 11 and 12 are the gateways of fixture 23/24).
async fn gateway_mocks(m: &PhpipamMock, expect: u64) {
    for (id, subnet, addr) in [(11, 7, "10.10.0.1"), (12, 9, "2001:db8:10::1")] {
        let mut body = Exchange::address_by_id().body().clone();
        body["data"]["id"] = json!(id);
        body["data"]["subnetId"] = json!(subnet);
        body["data"]["ip"] = json!(addr);
        body["data"]["is_gateway"] = json!(1);
        m.respond(
            "GET",
            &format!("{API}/addresses/{id}/"),
            ResponseTemplate::new(200).set_body_json(body),
        )
        .mounted()
        .expect(expect)
        .mount()
        .await;
    }
}

#[tokio::test]
async fn networks_map_subnets_and_reuse_the_token_and_lookups() {
    let m = PhpipamMock::start().await;
    m.login().mounted().expect(1).mount().await;
    m.sections_list()
        .token(TOKEN)
        .mounted()
        .expect(2)
        .mount()
        .await;
    m.section_subnets()
        .token(TOKEN)
        .mounted()
        .expect(2)
        .mount()
        .await;
    m.vlan().mounted().expect(1).mount().await;
    // Two gateways to learn: one request for every gateway (fixture 152), none by id.
    m.gateway_addresses().mounted().expect(1).mount().await;
    gateway_mocks(&m, 0).await;
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();

    let nets = b.networks(&cx).await.expect("networks");
    let again = b.networks(&cx).await.expect("networks again");
    assert_eq!(nets, again);
    let ids: Vec<&str> = nets.iter().map(|n| n.backend_id.as_str()).collect();
    assert_eq!(
        ids,
        ["7", "8", "9"],
        "custom_vRA_Range = 1; block 10 and pool 11 are not networks"
    );

    let n7 = &nets[0];
    assert_eq!(n7.cidr.to_string(), "10.10.0.0/24");
    assert_eq!(n7.name, "Gateway test /24");
    assert_eq!(n7.address_space, "Gateway");
    assert_eq!(n7.gateway, Some(ip("10.10.0.1")));
    assert_eq!(n7.vlan, Some(100));
    assert_eq!(n7.dns_servers, [ip("10.10.0.53"), ip("10.10.0.54")]);
    assert_eq!(n7.free, Some(253));
    assert_eq!(
        (n7.range_start, n7.range_end),
        (ip("10.10.0.1"), ip("10.10.0.254"))
    );
    assert!(
        n7.tags
            .iter()
            .any(|t| t.key == "custom_vRA_Range" && t.value == "1")
    );

    let n9 = &nets[2];
    assert_eq!(n9.gateway, Some(ip("2001:db8:10::1")));
    assert_eq!(
        n9.range_start,
        ip("2001:db8:10::1"),
        "the anycast address is not handed out"
    );
    assert_eq!(n9.free, Some(u64::MAX));
    assert_eq!(nets[1].gateway, None);

    let blocks = b.blocks(&cx).await.expect("blocks");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].cidr.to_string(), "10.30.0.0/16");
}

#[tokio::test]
async fn check_reports_subnets_and_blocks() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    let status = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect("check");
    assert_eq!(
        (status.kind, status.networks, status.blocks),
        ("phpipam", 3, 1)
    );
    assert!(status.detail.contains("app 'gateway'"), "{}", status.detail);
}

#[tokio::test]
async fn next_free_allocation_reserves_with_the_owner_marker() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.first_free()
        .token(TOKEN)
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = backend(&m.uri(), "");
    let req = AllocateIn {
        network: "7".into(),
        owner: owner("vra:vm-001/nic0"),
        address: None,
        details: RecordDetails {
            aliases: Vec::new(),
            hostname: Some("vm-001.lab.local".into()),
            description: None,
            mac: None,
        },
    };
    let a = b
        .allocate(&CallContext::default(), &req)
        .await
        .expect("allocate");
    assert_eq!(a.address, ip("10.10.0.2"));
    assert_eq!(
        a.reference.as_deref(),
        Some("13"),
        "string id of the 201 answer"
    );
    assert_eq!(a.network, "7");

    let sent = m
        .requests()
        .await
        .into_iter()
        .find(|r| r.url.path() == format!("{API}/addresses/first_free/7/"))
        .expect("first_free POST");
    let body: serde_json::Value = serde_json::from_slice(&sent.body).expect("json body");
    assert_eq!(body["owner"], "vra:vm-001/nic0");
    assert_eq!(body["hostname"], "vm-001.lab.local");
}

#[tokio::test]
async fn a_full_subnet_is_exhausted() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.first_free_full().mount().await;
    let req = AllocateIn {
        network: "8".into(),
        owner: owner("overflow"),
        address: None,
        details: RecordDetails::default(),
    };
    let err = backend(&m.uri(), "")
        .allocate(&CallContext::default(), &req)
        .await
        .expect_err("full");
    assert!(matches!(err, IpamError::Exhausted(_)), "{err:?}");
}

#[tokio::test]
async fn a_lost_race_is_retried_with_the_next_free_address() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    // The loser of a concurrent insert hits phpIPAM's unique key: 500 "Duplicate entry".
    m.respond(
        "POST",
        &format!("{API}/addresses/first_free/7/"),
        ResponseTemplate::new(500).set_body_json(json!({"code": 500, "success": false,
            "message": "Error: SQLSTATE[23000]: Integrity constraint violation: 1062 Duplicate entry '168427522-7' for key 'sid_ip_unique'"})),
    )
    .mounted()
    .times(1)
    .priority(1)
    .mount()
    .await;
    m.first_free().mounted().expect(1).mount().await;
    let req = AllocateIn {
        network: "7".into(),
        owner: owner("racer"),
        address: None,
        details: RecordDetails::default(),
    };
    let a = backend(&m.uri(), "")
        .allocate(&CallContext::default(), &req)
        .await
        .expect("second try wins");
    assert_eq!(a.address, ip("10.10.0.2"));
}

#[tokio::test]
async fn a_taken_specific_address_is_a_conflict_and_outside_is_invalid() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.address_create_duplicate().mount().await;
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();
    let mut req = AllocateIn {
        network: "7".into(),
        owner: owner("dup"),
        address: Some(ip("10.10.0.50")),
        details: RecordDetails::default(),
    };
    let err = b.allocate(&cx, &req).await.expect_err("duplicate");
    assert!(matches!(err, IpamError::Conflict(_)), "{err:?}");

    req.address = Some(ip("10.99.0.5"));
    let err = b.allocate(&cx, &req).await.expect_err("outside");
    assert!(
        matches!(err, IpamError::InvalidInput { ref field, .. } if field == "address"),
        "{err:?}"
    );
}

#[tokio::test]
async fn phpipam_rejecting_an_address_is_invalid_input() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    // phpIPAM's 500 "<ip> is not a valid address for subnet <cidr>" (fixture 54).
    m.address_create_outside_subnet().mount().await;
    let req = AllocateIn {
        network: "7".into(),
        owner: owner("x"),
        address: Some(ip("10.10.0.77")),
        details: RecordDetails::default(),
    };
    let err = backend(&m.uri(), "")
        .allocate(&CallContext::default(), &req)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, IpamError::InvalidInput { ref field, .. } if field == "address"),
        "{err:?}"
    );
}

#[tokio::test]
async fn release_deletes_by_id_and_never_by_ip_and_subnet() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.search_ip().mounted().expect(2).mount().await;
    m.address_delete(15)
        .mounted()
        .times(1)
        .priority(1)
        .mount()
        .await;
    m.address_delete_again(15).mount().await;
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();
    b.release(&cx, "7", ip("10.10.0.50"))
        .await
        .expect("release");
    b.release(&cx, "7", ip("10.10.0.50"))
        .await
        .expect("already deleted (404 Address does not exist) is fine");
    for r in m.requests().await {
        assert!(
            !r.url.path().contains("/addresses/10.10.0.50/"),
            "DELETE addresses/{{ip}}/{{subnet}}/ crashes phpIPAM 1.8.2: {}",
            r.url
        );
    }
}

#[tokio::test]
async fn releasing_an_unknown_address_succeeds_without_a_delete() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.search_ip_not_found().mounted().expect(1).mount().await;
    backend(&m.uri(), "")
        .release(&CallContext::default(), "7", ip("10.10.0.200"))
        .await
        .expect("nothing to release");
    assert!(
        m.requests()
            .await
            .iter()
            .all(|r| r.method.as_str() != "DELETE")
    );
}

#[tokio::test]
async fn find_by_address_and_update_by_id() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.search_ip().mount().await;
    m.address_patch_mac().mounted().expect(1).mount().await;
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();
    let found = b
        .find(
            &cx,
            &Lookup::Address {
                address: ip("10.10.0.50"),
                network: None,
            },
        )
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].details.hostname.as_deref(),
        Some("vm-050.lab.local")
    );
    assert_eq!(
        found[0].details.mac.as_ref().map(|m| m.as_str()),
        Some("00:50:56:aa:bb:50")
    );
    assert_eq!(found[0].reference.as_deref(), Some("15"));
    assert_eq!(found[0].owner, None);

    let changes = ipam_gateway::domain::RecordChanges {
        aliases: None,
        mac: Some(ipam_gateway::domain::Mac::parse("00-50-56-AA-BB-99").expect("mac")),
        description: Some("mac updated".into()),
        hostname: None,
    };
    let updated = b
        .update(&cx, "7", ip("10.10.0.50"), &changes)
        .await
        .expect("update");
    assert_eq!(
        updated.details.mac.as_ref().map(|m| m.as_str()),
        Some("00:50:56:aa:bb:99")
    );
}

#[tokio::test]
async fn carving_creates_a_child_subnet_with_a_gateway_and_the_owner() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.first_subnet().mounted().expect(1).mount().await;
    m.address_create_gateway().mounted().expect(1).mount().await;
    let req = CarveRequest {
        block: "10".into(),
        prefix_len: 26,
        owner: owner("vra:net-1"),
        name: Some("on-demand network 1".into()),
        subnet: None,
    };
    let n = backend(&m.uri(), "")
        .allocate_network(&CallContext::default(), &req)
        .await
        .expect("carve");
    assert_eq!(n.backend_id, "12");
    assert_eq!(n.cidr.to_string(), "10.30.0.0/26");
    assert_eq!(n.gateway, Some(ip("10.30.0.1")));
    assert_eq!(n.block.as_deref(), Some("10"));
    assert_eq!(n.owner, Some(owner("vra:net-1")));
    let carve = m
        .requests()
        .await
        .into_iter()
        .find(|r| r.url.path().ends_with("/first_subnet/26/"))
        .expect("carve request");
    let body: serde_json::Value = serde_json::from_slice(&carve.body).expect("json");
    assert_eq!(
        body["description"],
        "on-demand network 1 [ipamgw-owner:vra:net-1]"
    );
}

#[tokio::test]
async fn an_expired_token_costs_one_login_then_succeeds() {
    let m = PhpipamMock::start().await;
    // gwtest logs in (138), its token has expired (139: 401), it logs in again (141) and the
    // new token works (answered like 25 / 28).
    m.login_gwtest()
        .mounted()
        .times(1)
        .priority(1)
        .mount()
        .await;
    m.login_after_expiry()
        .mounted()
        .expect(1)
        .priority(2)
        .mount()
        .await;
    m.expired_token()
        .token("f1xture-t0ken-gwtest")
        .mounted()
        .expect(1)
        .mount()
        .await;
    m.sections_list()
        .token("f1xture-t0ken-gwtest-2")
        .mounted()
        .expect(1)
        .mount()
        .await;
    m.section_subnets()
        .token("f1xture-t0ken-gwtest-2")
        .mount()
        .await;
    let b = backend(&m.uri(), "username = \"gwtest\"\npassword = \"gwtest-lab\"");
    let status = b
        .check(&CallContext::default())
        .await
        .expect("check after re-login");
    assert_eq!(status.networks, 3);
    let logins = m
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == format!("{API}/user/"))
        .count();
    assert_eq!(logins, 2, "one login, one re-login");
}

#[tokio::test]
async fn a_token_refused_twice_is_unauthorized() {
    let m = PhpipamMock::start().await;
    m.login().mounted().expect(2).mount().await;
    m.invalid_token().mount().await;
    let err = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect_err("refused");
    assert!(matches!(err, IpamError::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized_and_leaks_nothing() {
    let m = PhpipamMock::start().await;
    // phpIPAM answers 500 (!) "Invalid username or password"; one attempt only, so a retrying
    // caller cannot get the gateway's IP blocked.
    m.login_bad_password().mounted().expect(1).mount().await;
    let b = backend(
        &m.uri(),
        "username = \"Admin\"\npassword = \"wrong-password\"",
    );
    let cx = CallContext::default();
    for _ in 0..2 {
        let err = b.check(&cx).await.expect_err("bad password");
        assert!(matches!(err, IpamError::Unauthorized(_)), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("Invalid username or password"), "{text}");
        assert!(!text.contains("wrong-password"), "{text}");
    }
    let debug = format!("{b:?}");
    assert!(!debug.contains("wrong-password"), "{debug}");
    let settings = crate::support::phpipam::settings(
        &m.uri(),
        "username = \"Admin\"\npassword = \"wrong-password\"",
    );
    let printed = format!("{settings:?}");
    assert!(!printed.contains("wrong-password"), "{printed}");
}

#[tokio::test]
async fn debug_output_never_shows_passwords_or_tokens() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    let b = backend(&m.uri(), "");
    b.check(&CallContext::default()).await.expect("check");
    let debug = format!("{b:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains(TOKEN),
        "{debug}"
    );
    let code = "auth = \"app_code\"\napp_code = \"gwlabstaticappcode0123456789abcd\"";
    let printed = format!(
        "{:?} {:?}",
        backend(&m.uri(), code),
        crate::support::phpipam::settings(&m.uri(), code)
    );
    assert!(!printed.contains("gwlabstaticappcode"), "{printed}");
}

#[tokio::test]
async fn a_blocked_ip_is_unavailable_with_phpipams_message() {
    let m = PhpipamMock::start().await;
    m.login_ip_blocked().mount().await;
    let err = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect_err("blocked");
    match err {
        IpamError::Unavailable { backend, detail } => {
            assert_eq!(backend, "ipam");
            assert!(detail.contains("Your IP has been blocked"), "{detail}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_empty_500_is_an_upstream_error() {
    let m = PhpipamMock::start().await;
    m.login().mount().await;
    // Fixture 94: PHP fatal error, empty text/html body.
    m.empty_500_at("GET", &format!("{API}/sections/"))
        .mount()
        .await;
    let err = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect_err("500");
    assert!(
        matches!(err, IpamError::Upstream { status: 500, ref backend, .. } if backend == "ipam"),
        "{err:?}"
    );
}

/// A 200 that is not phpIPAM's JSON — what a proxy or a captive portal in front of phpIPAM
/// answers; `Fault::Garbage` in tests/api/resilience_proxy.rs models the same — is an answer the
/// gateway cannot read, not an `Upstream` status phpIPAM never sent, and never an empty result.
#[tokio::test]
async fn a_200_that_is_not_phpipams_json_is_undecodable() {
    let m = PhpipamMock::start().await;
    m.login().mount().await;
    m.respond(
        "GET",
        &format!("{API}/sections/"),
        ResponseTemplate::new(200).set_body_raw("<html><body>Welcome</body></html>", "text/html"),
    )
    .mount()
    .await;
    let err = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect_err("not JSON");
    assert!(
        matches!(&err, IpamError::Undecodable { backend, detail }
            if backend == "ipam" && detail.contains("answered 200") && detail.contains("not its JSON")),
        "{err:?}"
    );
}

/// phpIPAM's envelope around data of another shape than fixture 25's section list (a newer or
/// patched phpIPAM): the gateway says which answer it could not read.
#[tokio::test]
async fn a_section_list_of_another_shape_is_undecodable_naming_it() {
    let m = PhpipamMock::start().await;
    m.login().mount().await;
    m.respond(
        "GET",
        &format!("{API}/sections/"),
        ResponseTemplate::new(200)
            .set_body_json(json!({"code": 200, "success": true, "data": ["Gateway"]})),
    )
    .mount()
    .await;
    let err = backend(&m.uri(), "")
        .check(&CallContext::default())
        .await
        .expect_err("other shape");
    assert!(
        matches!(&err, IpamError::Undecodable { backend, detail }
            if backend == "ipam" && detail.contains("unexpected section list")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_naming_the_backend() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = backend(&format!("http://127.0.0.1:{port}"), "")
        .check(&CallContext::default())
        .await
        .expect_err("refused");
    match err {
        IpamError::Unavailable { backend, detail } => {
            assert_eq!(backend, "ipam");
            assert!(detail.contains("cannot connect"), "{detail}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_phpipam_is_a_timeout() {
    let m = PhpipamMock::start().await;
    m.login().mount().await;
    let slow = Exchange::sections_list()
        .response()
        .set_delay(Duration::from_secs(3));
    m.respond("GET", &format!("{API}/sections/"), slow)
        .mount()
        .await;
    let settings = crate::support::phpipam::config(&m.uri(), "")
        .replace("timeout_secs = 5", "timeout_secs = 1");
    let s = ipam_gateway::config::Settings::from_toml(&settings).expect("config");
    let b = ipam_gateway::backends::build(&s.backends[0]).expect("build");
    let err = b.check(&CallContext::default()).await.expect_err("slow");
    assert!(
        matches!(err, IpamError::Timeout { seconds: 1, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn app_code_mode_sends_the_code_and_never_logs_in() {
    let m = PhpipamMock::start().await;
    m.code_app_sections().mounted().expect(1).mount().await;
    m.section_subnets_of_app("gatewaytok")
        .token("gwlabstaticappcode0123456789abcd")
        .mount()
        .await;
    let text = crate::support::phpipam::config(
        &m.uri(),
        "auth = \"app_code\"\napp_code = \"gwlabstaticappcode0123456789abcd\"",
    )
    .replace("app_id = \"gateway\"", "app_id = \"gatewaytok\"");
    let s = ipam_gateway::config::Settings::from_toml(&text).expect("config");
    let b = ipam_gateway::backends::build(&s.backends[0]).expect("build");
    let status = b.check(&CallContext::default()).await.expect("check");
    assert_eq!((status.networks, status.blocks), (3, 1));
    assert!(!b.supports_passthrough());
    assert!(
        m.requests()
            .await
            .iter()
            .all(|r| !r.url.path().ends_with("/user/"))
    );
}

#[tokio::test]
async fn passthrough_logs_in_as_the_caller() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    let b = backend(&m.uri(), "auth = \"passthrough\"");
    assert!(b.supports_passthrough());
    let err = b
        .check(&CallContext::default())
        .await
        .expect_err("no credentials");
    assert!(matches!(err, IpamError::Unauthorized(_)), "{err:?}");
    let cx = CallContext {
        credentials: Some(Credentials {
            username: "Admin".into(),
            password: SecretString::from(PASSWORD),
        }),
    };
    b.check(&cx).await.expect("caller's credentials");
    let login = m
        .requests()
        .await
        .into_iter()
        .find(|r| r.url.path() == format!("{API}/user/"))
        .expect("login");
    assert_eq!(
        login
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Exchange::login().request_header("Authorization")
    );
}

#[test]
fn stringified_and_numeric_subnets_read_the_same() {
    let plain =
        Subnet::from_value(Exchange::section_subnets().body()["data"][0].clone()).expect("28");
    let strings =
        Subnet::from_value(Exchange::subnet_stringified().body()["data"].clone()).expect("38");
    assert_eq!(plain.id, strings.id);
    assert_eq!(plain.cidr(), strings.cidr());
    assert_eq!(plain.vlan_id, strings.vlan_id);
    assert_eq!(plain.is_pool, strings.is_pool);
    assert!(plain.field("custom_vRA_Range").is_some());
    assert_eq!(
        plain.field("custom_vRA_Range"),
        strings.field("custom_vRA_Range")
    );
    assert_eq!(plain.tags, strings.tags);
    assert_eq!(plain.dns_servers(), strings.dns_servers());
}

/// Fixture 84's answer (every address of subnet 7) for the owner lookup in subnet 7; the lookup
/// must ask that subnet with phpIPAM's filter on the owner field, never `GET addresses/`.
async fn owner_lookup_mocks(m: &PhpipamMock, wanted: &str, times: u64) {
    inventory_mocks(m).await;
    m.subnet_addresses()
        .token(TOKEN)
        .and(query_param("filter_by", "owner"))
        .and(query_param("filter_value", wanted))
        .mounted()
        .expect(times)
        .mount()
        .await;
    no_ipam_wide_lookup(m).await;
}

/// `GET addresses/` (a filter over every address phpIPAM holds) must not be asked.
async fn no_ipam_wide_lookup(m: &PhpipamMock) {
    m.respond(
        "GET",
        &format!("{API}/addresses/"),
        ResponseTemplate::new(500),
    )
    .mounted()
    .expect(0)
    .mount()
    .await;
}

#[tokio::test]
async fn the_owner_lookup_asks_the_candidate_subnet_and_keeps_exact_owners() {
    let m = PhpipamMock::start().await;
    owner_lookup_mocks(&m, "ipam-gateway", 2).await;
    let b = backend(&m.uri(), "");
    let cx = CallContext::default();
    let held = b
        .find_owner_in(&cx, &owner("ipam-gateway"), "7")
        .await
        .expect("lookup");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].address, ip("10.10.0.2"));
    assert_eq!(held[0].network, "7");
    assert_eq!(held[0].reference.as_deref(), Some("13"));
    // The claim finds it: no address is taken (no first_free mock is mounted).
    let req = AllocateIn {
        network: "7".into(),
        owner: owner("ipam-gateway"),
        address: None,
        details: RecordDetails::default(),
    };
    match b.claim(&cx, &req).await.expect("claim") {
        ipam_gateway::backends::Claim::Held(a) => assert_eq!(a.address, ip("10.10.0.2")),
        other => panic!("expected the held address, got {other:?}"),
    }
}

#[tokio::test]
async fn records_phpipam_matched_loosely_are_not_the_owners() {
    // phpIPAM's filter compares with PHP's `!=`: whatever it answers, only records whose owner
    // field is exactly the owner count. Fixture 84 holds no record owned by `vm-001` (only a
    // host name and a custom field with that text).
    let m = PhpipamMock::start().await;
    owner_lookup_mocks(&m, "vm-001", 1).await;
    let held = backend(&m.uri(), "")
        .find_owner_in(&CallContext::default(), &owner("vm-001"), "7")
        .await
        .expect("lookup");
    assert!(held.is_empty(), "{held:?}");
}

#[tokio::test]
async fn an_empty_candidate_subnet_is_looked_up_then_allocated() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    // Fixture 87: a subnet without addresses answers 404 "No addresses found".
    m.subnet_addresses_empty(8)
        .mounted()
        .expect(1)
        .mount()
        .await;
    m.first_free_in_empty_28().mounted().expect(1).mount().await;
    no_ipam_wide_lookup(&m).await;
    let req = AllocateIn {
        network: "8".into(),
        owner: owner("vra:vm-9/nic0"),
        address: None,
        details: RecordDetails::default(),
    };
    match backend(&m.uri(), "")
        .claim(&CallContext::default(), &req)
        .await
        .expect("claim")
    {
        ipam_gateway::backends::Claim::Taken(a) => assert_eq!(a.address, ip("10.20.0.1")),
        other => panic!("expected a new address, got {other:?}"),
    }
}

#[tokio::test]
async fn an_owner_lookup_in_a_subnet_deleted_in_phpipam_is_not_found() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    // Fixture 89: a sub-resource of an unknown subnet is 404 "Invalid subnet Id (N)".
    m.subnet_addresses_of_unknown_subnet(8).mount().await;
    let err = backend(&m.uri(), "")
        .find_owner_in(&CallContext::default(), &owner("vm-1"), "8")
        .await
        .expect_err("gone");
    assert!(
        matches!(&err, IpamError::NotFound(m) if m.contains("Invalid subnet Id")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_owner_lookup_outside_the_exposed_networks_is_not_found_without_asking() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    for at in ["subnets/10/addresses/", "subnets/99/addresses/"] {
        m.respond("GET", &format!("{API}/{at}"), ResponseTemplate::new(500))
            .mounted()
            .expect(0)
            .mount()
            .await;
    }
    let b = backend(&m.uri(), "");
    for network in ["10", "99", "x"] {
        let err = b
            .find_owner_in(&CallContext::default(), &owner("vm-1"), network)
            .await
            .expect_err("not exposed");
        assert!(matches!(err, IpamError::NotFound(_)), "{network}: {err:?}");
    }
}

#[tokio::test]
async fn owner_lookup_answers_without_a_match_are_empty_and_failures_are_errors() {
    let empty = [
        (404, "No results (filter applied)"),
        (400, "Invalid filter_by"),
    ];
    for (status, message) in empty {
        let m = PhpipamMock::start().await;
        inventory_mocks(&m).await;
        m.respond(
            "GET",
            &format!("{API}/subnets/7/addresses/"),
            ResponseTemplate::new(status)
                .set_body_json(json!({"code": status, "success": false, "message": message})),
        )
        .mount()
        .await;
        let held = backend(&m.uri(), "")
            .find_owner_in(&CallContext::default(), &owner("vm-1"), "7")
            .await
            .expect("no match");
        assert!(held.is_empty(), "{message}: {held:?}");
    }
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.respond(
        "GET",
        &format!("{API}/subnets/7/addresses/"),
        ResponseTemplate::new(500)
            .set_body_json(json!({"code": 500, "success": false, "message": "Database gone"})),
    )
    .mount()
    .await;
    let err = backend(&m.uri(), "")
        .find_owner_in(&CallContext::default(), &owner("vm-1"), "7")
        .await
        .expect_err("500");
    assert!(
        matches!(&err, IpamError::Upstream { status: 500, detail, .. } if detail.contains("Database gone")),
        "{err:?}"
    );
}

#[tokio::test]
async fn gateways_missing_from_the_scan_are_looked_up_by_id() {
    // 404 "No results (filter applied)": the gateways were unset after the subnets were read.
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.vlan().mount().await;
    m.respond(
        "GET",
        &format!("{API}/addresses/"),
        ResponseTemplate::new(404).set_body_json(
            json!({"code": 404, "success": false, "message": "No results (filter applied)"}),
        ),
    )
    .mounted()
    .expect(1)
    .mount()
    .await;
    gateway_mocks(&m, 1).await;
    let nets = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect("networks");
    assert_eq!(nets[0].gateway, Some(ip("10.10.0.1")));
    assert_eq!(nets[2].gateway, Some(ip("2001:db8:10::1")));
}

#[tokio::test]
async fn a_failing_gateway_scan_fails_the_listing() {
    let m = PhpipamMock::start().await;
    inventory_mocks(&m).await;
    m.vlan().mount().await;
    m.respond(
        "GET",
        &format!("{API}/addresses/"),
        ResponseTemplate::new(500).set_body_json(
            json!({"code": 500, "success": false, "message": "Unable to read addresses"}),
        ),
    )
    .mount()
    .await;
    let err = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("500");
    assert!(
        matches!(&err, IpamError::Upstream { status: 500, detail, .. } if detail.contains("Unable to read addresses")),
        "{err:?}"
    );
}

/// Fixture 28 with subnets 8 and 9 on VLANs 4 and 5 besides 7's VLAN 3: three VLANs to learn.
async fn three_vlan_mocks(m: &PhpipamMock) {
    m.login().mount().await;
    m.sections_list().mounted().mount().await;
    let mut body = Exchange::section_subnets().body().clone();
    for s in body["data"].as_array_mut().expect("subnets") {
        match s["id"].as_u64() {
            Some(8) => s["vlanId"] = json!(4),
            Some(9) => s["vlanId"] = json!(5),
            _ => {}
        }
    }
    m.respond(
        "GET",
        &format!("{API}/sections/3/subnets/"),
        ResponseTemplate::new(200).set_body_json(body),
    )
    .mount()
    .await;
    m.gateway_addresses().mount().await;
}

#[tokio::test]
async fn vlans_are_read_with_one_request_for_all() {
    let m = PhpipamMock::start().await;
    three_vlan_mocks(&m).await;
    // Each VLAN as fixture 35 shows one, listed together (INFERRED: `GET vlan/` lists every VLAN
    // through the same `prepare_result`, api/controllers/Vlans.php).
    let one = Exchange::vlan().body()["data"].clone();
    let vlans: Vec<serde_json::Value> = [(3, 100), (4, 200), (5, 300)]
        .into_iter()
        .map(|(id, number)| {
            let mut v = one.clone();
            v["vlanId"] = json!(id);
            v["number"] = json!(number);
            v
        })
        .collect();
    m.respond(
        "GET",
        &format!("{API}/vlan/"),
        ResponseTemplate::new(200)
            .set_body_json(json!({"code": 200, "success": true, "data": vlans})),
    )
    .mounted()
    .expect(1)
    .mount()
    .await;
    for id in [3, 4, 5] {
        m.respond(
            "GET",
            &format!("{API}/vlan/{id}/"),
            ResponseTemplate::new(500),
        )
        .mounted()
        .expect(0)
        .mount()
        .await;
    }
    let nets = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect("networks");
    let got: Vec<Option<u16>> = nets.iter().map(|n| n.vlan).collect();
    assert_eq!(got, [Some(100), Some(200), Some(300)]);
}

#[tokio::test]
async fn vlans_missing_from_the_list_are_looked_up_by_id_and_a_failing_list_fails() {
    let m = PhpipamMock::start().await;
    three_vlan_mocks(&m).await;
    m.respond(
        "GET",
        &format!("{API}/vlan/"),
        ResponseTemplate::new(404).set_body_json(
            json!({"code": 404, "success": false, "message": "No vlans configured"}),
        ),
    )
    .mounted()
    .expect(1)
    .mount()
    .await;
    m.vlan().mounted().expect(1).mount().await;
    for id in [4, 5] {
        m.respond(
            "GET",
            &format!("{API}/vlan/{id}/"),
            ResponseTemplate::new(404)
                .set_body_json(json!({"code": 404, "success": false, "message": "Vlan not found"})),
        )
        .mounted()
        .expect(1)
        .mount()
        .await;
    }
    let nets = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect("networks");
    let got: Vec<Option<u16>> = nets.iter().map(|n| n.vlan).collect();
    assert_eq!(got, [Some(100), None, None]);

    let m = PhpipamMock::start().await;
    three_vlan_mocks(&m).await;
    m.respond(
        "GET",
        &format!("{API}/vlan/"),
        ResponseTemplate::new(500)
            .set_body_json(json!({"code": 500, "success": false, "message": "Database gone"})),
    )
    .mount()
    .await;
    let err = backend(&m.uri(), "")
        .networks(&CallContext::default())
        .await
        .expect_err("500");
    assert!(
        matches!(&err, IpamError::Upstream { status: 500, detail, .. } if detail.contains("Database gone")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_owner_search_over_every_address_reads_an_empty_ipam_as_nothing_and_fails_otherwise() {
    for (message, ok) in [("Unable to read addresses", true), ("Database gone", false)] {
        let m = PhpipamMock::start().await;
        inventory_mocks(&m).await;
        m.respond(
            "GET",
            &format!("{API}/addresses/"),
            ResponseTemplate::new(500)
                .set_body_json(json!({"code": 500, "success": false, "message": message})),
        )
        .mount()
        .await;
        let got = backend(&m.uri(), "")
            .find(&CallContext::default(), &Lookup::Owner(owner("vm-1")))
            .await;
        match (got, ok) {
            (Ok(found), true) => assert!(found.is_empty()),
            (Err(IpamError::Upstream { status: 500, .. }), false) => {}
            (other, _) => panic!("{message}: {other:?}"),
        }
    }
}
