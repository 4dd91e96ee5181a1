//! The Infoblox backend against the stateful fake WAPI, and the fake against the fixtures.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipam_gateway::backends::{Backend, CallContext, Credentials};
use ipam_gateway::domain::{
    AllocateIn, CarveRequest, IpamError, Lookup, Mac, Owner, RecordChanges, RecordDetails,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::gateway_process::run_check;
use crate::support::infoblox::{Exchange, backend, backend_from, config, config_with};
use crate::support::infoblox_fake::{FakeWapi, FakeWapiState, SeedNetwork};
use crate::support::{AppOptions, spawn_with};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn owner(s: &str) -> Owner {
    Owner::parse(s).expect("owner")
}

const SERVERS: &str = "default/10.20.0.0/24";
const TINY: &str = "default/10.40.0.0/29";
const V6: &str = "default/2001:db8:20::/64";
const BLOCK: &str = "default/10.100.0.0/16";

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Same status, same body kind; errors: same `code` and `text` (refs in texts aside); objects:
/// same keys; lists (bare or under `result`): same keys on their first item; refs: same type.
fn assert_conforms(ex: &Exchange, status: u16, got: &Value, raw: &str) {
    let name = &ex.name;
    assert_eq!(status, ex.status(), "{name}: status ({got} {raw})");
    let want = ex.body();
    if want.is_null() {
        let text = ex.body_text();
        let title = |t: &str| {
            t.split("<title>")
                .nth(1)
                .map(|x| x.split('<').next().unwrap_or_default().to_owned())
        };
        assert_eq!(title(raw), title(&text), "{name}: HTML title");
        return;
    }
    if ex.status() >= 400 {
        assert_eq!(keys(got), keys(want), "{name}: error keys");
        assert_eq!(got["code"], want["code"], "{name}: code");
        let strip = |t: &Value| {
            t.as_str()
                .unwrap_or_default()
                .split(" record:")
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(strip(&got["text"]), strip(&want["text"]), "{name}: text");
        return;
    }
    match (want, got) {
        (Value::String(w), Value::String(g)) => assert_eq!(
            w.split('/').next(),
            g.split('/').next(),
            "{name}: ref type ({g})"
        ),
        (Value::Array(w), Value::Array(g)) => {
            assert!(!g.is_empty(), "{name}: empty list");
            assert_eq!(keys(&g[0]), keys(&w[0]), "{name}: item keys");
        }
        (Value::Object(w), Value::Object(_)) if w.contains_key("result") => {
            let (w, g) = (&want["result"], &got["result"]);
            assert!(g.is_array(), "{name}: result list ({got})");
            if let (Some(wi), Some(gi)) = (w.get(0), g.get(0)) {
                assert_eq!(keys(gi), keys(wi), "{name}: result item keys");
            }
        }
        (Value::Object(_), Value::Object(_)) => {
            assert_eq!(keys(got), keys(want), "{name}: object keys");
            if let Some(list) = want.get("ipv4addrs").and_then(Value::as_array)
                && let Some(w0) = list.first()
            {
                assert_eq!(
                    keys(&got["ipv4addrs"][0]),
                    keys(w0),
                    "{name}: host address keys"
                );
            }
        }
        (w, g) => panic!("{name}: body kind differs ({w} vs {g})"),
    }
}

/// Replays a fixture's request on the fake (as `admin`), at `target` when given.
async fn replay(
    fake: &FakeWapi,
    which: &str,
    target: Option<&str>,
) -> (Exchange, u16, Value, String) {
    let ex = Exchange::load(which);
    let url = format!("{}{}", fake.url, target.unwrap_or(ex.target()));
    let client = reqwest::Client::new();
    let mut req = client
        .request(ex.method().parse().expect("method"), url)
        .basic_auth(
            "admin",
            Some(if which == "02" { "wrong" } else { "infoblox" }),
        );
    if !ex.request_body().is_null() {
        req = req.json(ex.request_body());
    }
    let resp = req.send().await.expect("fake answers");
    let status = resp.status().as_u16();
    let raw = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    (ex, status, body, raw)
}

fn ref_of(v: &Value) -> String {
    v.get("_ref")
        .and_then(Value::as_str)
        .or(v.as_str())
        .expect("a ref")
        .to_owned()
}

#[tokio::test]
async fn the_fake_answers_like_the_fixtures() {
    let fake = FakeWapi::start().await;
    for which in [
        "01", "02", "04", "06", "07", "08", "09", "10", "12", "13", "14", "21", "26", "27", "30",
        "33",
    ] {
        let (ex, status, body, raw) = replay(&fake, which, None).await;
        assert_conforms(&ex, status, &body, &raw);
        if which == "30" {
            // The lab's utilization, as the fixture writes it (before fixture 10 took an address
            // in lab-servers: 2 of 254 is still 0 %).
            let util = |b: &Value| -> Vec<(String, Value)> {
                b["result"]
                    .as_array()
                    .expect("result")
                    .iter()
                    .map(|n| {
                        (
                            n["comment"].as_str().expect("comment").to_owned(),
                            n["utilization"].clone(),
                        )
                    })
                    .collect()
            };
            assert_eq!(util(&body), util(ex.body()), "{which}: utilization");
        }
        if which == "01" {
            // The session cookie in the real format.
            let resp = reqwest::Client::new()
                .get(format!("{}/wapi/v2.12/?_schema=1", fake.url))
                .basic_auth("admin", Some("infoblox"))
                .send()
                .await
                .expect("login");
            let cookie = resp.headers()["set-cookie"]
                .to_str()
                .expect("cookie")
                .to_owned();
            assert!(
                cookie.starts_with("ibapauth=\"ip=") && cookie.contains("timeout=600"),
                "{cookie}"
            );
        }
    }
    let host = replay(&fake, "13", None).await.2["result"][0].clone();
    let host_ref = ref_of(&host);
    let (ex, status, body, raw) = replay(&fake, "15", Some(&format!("/wapi/v2.12/{host_ref}?_return_fields=name,view,network_view,comment,extattrs,ipv4addrs,ipv6addrs"))).await;
    assert_conforms(&ex, status, &body, &raw);
    assert_eq!(body["ipv4addrs"][0]["mac"], "00:50:56:aa:bb:cc");
    let (ex, status, body, raw) =
        replay(&fake, "16", Some(&format!("/wapi/v2.12/{host_ref}"))).await;
    assert_conforms(&ex, status, &body, &raw);
    let (ex, status, body, raw) =
        replay(&fake, "17", Some(&format!("/wapi/v2.12/{host_ref}"))).await;
    assert_conforms(&ex, status, &body, &raw);
    for which in ["18", "19", "20", "22"] {
        let (ex, status, body, raw) = replay(&fake, which, None).await;
        assert_conforms(&ex, status, &body, &raw);
    }
    let carved = ref_of(&replay(&fake, "04", None).await.2["result"][0]);
    assert!(carved.starts_with("network/"));
    let net_ref = fake.with(|s| {
        s.of_kind("network")
            .into_iter()
            .find(|o| o.text("network") == Some("10.100.0.0/28"))
            .map(|o| o.id)
    });
    assert!(net_ref.is_some(), "fixture 22 carved 10.100.0.0/28");
    let carved_ref = {
        let found: Value = reqwest::Client::new()
            .get(format!(
                "{}/wapi/v2.12/network?network=10.100.0.0/28&network_view=default",
                fake.url
            ))
            .basic_auth("admin", Some("infoblox"))
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        ref_of(&found[0])
    };
    let (ex, status, body, raw) = replay(&fake, "23", Some(&format!("/wapi/v2.12/{carved_ref}?_return_fields=network,network_view,comment,extattrs,options,network_container"))).await;
    assert_conforms(&ex, status, &body, &raw);
    let (ex, status, body, raw) = replay(&fake, "24", None).await;
    assert_conforms(&ex, status, &body, &raw);
    let servers_ref = ref_of(&replay(&fake, "04", None).await.2["result"][0]);
    let (ex, status, body, _) = replay(
        &fake,
        "28",
        Some(&format!(
            "/wapi/v2.12/{servers_ref}?_function=next_available_ip"
        )),
    )
    .await;
    assert_eq!(status, ex.status());
    assert_eq!(keys(&body), keys(ex.body()));
    assert_eq!(body["ips"].as_array().map(Vec::len), Some(3));
    let (ex, status, body, raw) =
        replay(&fake, "29", Some(&format!("/wapi/v2.12/{carved_ref}"))).await;
    assert_conforms(&ex, status, &body, &raw);
    // Fill lab-tiny (5 free), then it answers like fixture 11.
    for _ in 0..5 {
        let (_, status, _, raw) = replay(&fake, "11", None).await;
        if status != 201 {
            // Names are unique per view: the fixture reuses one name, so vary it.
            panic!("unexpected {status}: {raw}");
        }
        fake.with(|s| {
            for o in s.objects.values_mut() {
                if o.kind == "record:host" && o.text("name") == Some("vm-1.lab.example.com") {
                    o.fields
                        .insert("name".into(), json!(format!("h{}.lab.example.com", o.id)));
                }
            }
        });
    }
    let (ex, status, body, raw) = replay(&fake, "11", None).await;
    assert_conforms(&ex, status, &body, &raw);
    // A locked-out grid answers like fixture 03; a busy one like 25.
    fake.with(|s| s.lockout_after = Some(1));
    let (ex, status, body, raw) = replay(&fake, "03", None).await;
    assert_conforms(&ex, status, &body, &raw);
    fake.with(|s| {
        s.lockout_after = None;
        s.unavailable = true;
    });
    let (ex, status, _, raw) = replay(&fake, "25", None).await;
    assert_eq!(
        (status, raw.as_str()),
        (ex.status(), ex.body_text().as_str())
    );
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

#[tokio::test]
async fn lifecycle_against_the_fake_with_host_records() {
    let fake = FakeWapi::start().await;
    let b = backend_from(&config_with(
        &fake.url,
        "\"default\", \"prod\"",
        "username = \"admin\"\npassword = \"infoblox\"\nconfigure_for_dns = true",
    ));
    let cx = CallContext::default();

    let status = b.check(&cx).await.expect("check");
    assert_eq!(
        (status.networks, status.blocks),
        (5, 1),
        "lab-hidden is not vRA-Enabled"
    );
    let nets = b.networks(&cx).await.expect("networks");
    let tiny = nets.iter().find(|n| n.name == "lab-tiny").expect("tiny");
    assert_eq!(tiny.free, Some(5), "a /29 minus its gateway");
    let prod = nets
        .iter()
        .find(|n| n.name == "prod-servers")
        .expect("prod");
    assert_eq!(
        (prod.address_space.as_str(), prod.backend_id.as_str()),
        ("prod", "prod/172.16.10.0/24")
    );

    let a = b
        .allocate(&cx, &mk("vm-a", None, SERVERS))
        .await
        .expect("next");
    assert_eq!(
        a.address,
        ip("10.20.0.2"),
        "the gateway's reservation is skipped"
    );
    assert_eq!(
        a.details.hostname.as_deref(),
        Some("vm-a.lab.example.com"),
        "DNS on: completed with the network's domain"
    );
    let s = b
        .allocate(&cx, &mk("vm-b", Some("10.20.0.50"), SERVERS))
        .await
        .expect("specific");
    assert_eq!(s.address, ip("10.20.0.50"));
    let dup = b
        .allocate(&cx, &mk("vm-c", Some("10.20.0.50"), SERVERS))
        .await
        .expect_err("taken");
    assert!(matches!(dup, IpamError::Conflict(_)), "{dup:?}");

    let found = b
        .find(&cx, &Lookup::Owner(owner("vm-b")))
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].address, found[0].network.as_str()),
        (ip("10.20.0.50"), SERVERS)
    );
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
        description: Some("web 1".into()),
    };
    let u = b
        .update(&cx, SERVERS, s.address, &changes)
        .await
        .expect("update");
    assert_eq!(
        u.details.hostname.as_deref(),
        Some("renamed.lab.example.com")
    );
    let after = b
        .find(
            &cx,
            &Lookup::Address {
                address: s.address,
                network: Some(SERVERS.into()),
            },
        )
        .await
        .expect("find by address");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].details.mac, changes.mac);
    assert_eq!(after[0].details.description.as_deref(), Some("web 1"));
    assert_eq!(
        after[0].owner,
        Some(owner("vm-b")),
        "the owner EA survives updates"
    );

    b.release(&cx, SERVERS, s.address).await.expect("release");
    b.release(&cx, SERVERS, s.address)
        .await
        .expect("release again");
    assert!(
        b.find(&cx, &Lookup::Owner(owner("vm-b")))
            .await
            .expect("find")
            .is_empty()
    );
    // The gateway's reservation is no host record of the gateway's: nothing to release, and
    // it stays (`infoblox_routers` covers router addresses).
    b.release(&cx, SERVERS, ip("10.20.0.1"))
        .await
        .expect("no host record holds the gateway");
    assert!(
        fake.objects("fixedaddress")
            .iter()
            .any(|o| o.text("ipv4addr") == Some("10.20.0.1")),
        "the reservation stays"
    );

    // IPv6: the gateway ::1 is reserved; the next host follows.
    let v6 = b.allocate(&cx, &mk("vm-6", None, V6)).await.expect("v6");
    assert_eq!(v6.address, ip("2001:db8:20::2"));
    let v6mac = b
        .update(
            &cx,
            V6,
            v6.address,
            &RecordChanges {
                mac: changes.mac.clone(),
                ..RecordChanges::default()
            },
        )
        .await
        .expect_err("no MAC on IPv6");
    assert!(
        matches!(&v6mac, IpamError::InvalidInput { field, .. } if field == "mac"),
        "{v6mac:?}"
    );

    // The same owner in another view: an address space of its own.
    let p = b
        .allocate(&cx, &mk("vm-p", None, "prod/172.16.10.0/24"))
        .await
        .expect("prod");
    assert_eq!(p.address, ip("172.16.10.2"));
    assert!(fake.used_in("default", "172.16.10.0/24").is_empty());

    let hidden = b
        .allocate(&cx, &mk("x", None, "default/10.50.0.0/24"))
        .await
        .expect_err("hidden");
    assert!(matches!(hidden, IpamError::NotFound(_)), "{hidden:?}");

    // On-demand network: carve, allocate in it, busy, release, delete twice.
    let carve = CarveRequest {
        block: BLOCK.into(),
        prefix_len: 28,
        owner: owner("vra:net-1"),
        name: Some("app net".into()),
        subnet: None,
    };
    let n = b.allocate_network(&cx, &carve).await.expect("carve");
    assert_eq!(n.cidr.to_string(), "10.100.0.0/28");
    assert_eq!(n.gateway, Some(ip("10.100.0.1")));
    let listed = b.networks(&cx).await.expect("networks");
    let carved = listed
        .iter()
        .find(|x| x.backend_id == n.backend_id)
        .expect("carved is listed");
    assert_eq!(carved.owner, Some(owner("vra:net-1")));
    assert_eq!(carved.block.as_deref(), Some(BLOCK));
    assert_eq!(carved.name, "app net");
    assert_eq!(carved.gateway, Some(ip("10.100.0.1")));
    assert_eq!(
        carved.dns_domain.as_deref(),
        Some("lab.example.com"),
        "DNS options copied from the block"
    );
    let second = b
        .allocate_network(
            &cx,
            &CarveRequest {
                owner: owner("vra:net-2"),
                ..carve.clone()
            },
        )
        .await
        .expect("carve 2");
    assert_eq!(second.cidr.to_string(), "10.100.0.16/28");
    let inside = b
        .allocate(&cx, &mk("vm-n", None, &n.backend_id))
        .await
        .expect("alloc");
    assert_eq!(inside.address, ip("10.100.0.2"));
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
    assert!(
        fake.used_in("default", "10.100.0.0/28").is_empty(),
        "the gateway reservation went with it"
    );
    let not_carved = b
        .release_network(&cx, SERVERS)
        .await
        .expect_err("not carved");
    assert!(
        matches!(not_carved, IpamError::Conflict(_)),
        "{not_carved:?}"
    );
}

#[tokio::test]
async fn fixed_address_and_a_ptr_styles_against_the_fake() {
    let fake = FakeWapi::start().await;
    let cx = CallContext::default();
    let fixed = backend(&fake.url, "record_style = \"fixed_address\"");
    let mut req = mk("vm-f", None, SERVERS);
    req.details.mac = Some(Mac::parse("00:50:56:0f:0f:0f").expect("mac"));
    let f = fixed.allocate(&cx, &req).await.expect("fixed");
    assert_eq!(f.address, ip("10.20.0.2"));
    assert_eq!(f.details.mac, req.details.mac);
    let mac2 = Mac::parse("00:50:56:0f:0f:10").expect("mac");
    let u = fixed
        .update(
            &cx,
            SERVERS,
            f.address,
            &RecordChanges {
                mac: Some(mac2.clone()),
                ..RecordChanges::default()
            },
        )
        .await
        .expect("mac on the fixed address");
    assert_eq!(u.details.mac, Some(mac2));
    let f6 = fixed
        .allocate(&cx, &mk("vm-f6", None, V6))
        .await
        .expect("v6 fixed");
    assert_eq!(f6.address, ip("2001:db8:20::2"));
    assert_eq!(
        fixed
            .find(&cx, &Lookup::Owner(owner("vm-f6")))
            .await
            .expect("find")
            .len(),
        1
    );
    fixed
        .release(&cx, SERVERS, f.address)
        .await
        .expect("release");
    assert_eq!(fake.used_in("default", "10.20.0.0/24"), [ip("10.20.0.1")]);

    let aptr = backend(&fake.url, "record_style = \"a_ptr\"");
    let a = aptr
        .allocate(&cx, &mk("vm-a", None, SERVERS))
        .await
        .expect("a+ptr");
    assert_eq!(a.address, ip("10.20.0.2"));
    let ptrs = fake.objects("record:ptr");
    assert_eq!(ptrs.len(), 1);
    assert_eq!(ptrs[0].text("ptrdname"), Some("vm-a.lab.example.com"));
    assert_eq!(ptrs[0].text("name"), Some("2.0.20.10.in-addr.arpa"));
    aptr.update(
        &cx,
        SERVERS,
        a.address,
        &RecordChanges {
            hostname: Some("vm-z".into()),
            ..RecordChanges::default()
        },
    )
    .await
    .expect("rename");
    assert_eq!(
        fake.objects("record:ptr")[0].text("ptrdname"),
        Some("vm-z.lab.example.com")
    );
    let none = aptr
        .update(
            &cx,
            SERVERS,
            a.address,
            &RecordChanges {
                mac: Some(Mac::parse("00:50:56:00:00:01").expect("mac")),
                ..RecordChanges::default()
            },
        )
        .await
        .expect_err("no MAC on A records");
    assert!(matches!(none, IpamError::Unsupported(_)), "{none:?}");
    // Without a domain the A record cannot be named: refused before anything is created.
    let tiny_nodomain = fake.with(|s| {
        s.add_network(SeedNetwork {
            view: "default".into(),
            cidr: "10.60.0.0/29".into(),
            comment: "no-domain".into(),
            eas: vec![("vRA-Enabled".into(), "true".into())],
            ..SeedNetwork::default()
        })
    });
    assert!(tiny_nodomain > 0);
    let e = aptr
        .allocate(&cx, &mk("vm-x", None, "default/10.60.0.0/29"))
        .await
        .expect_err("no domain");
    assert!(
        matches!(&e, IpamError::InvalidInput { field, .. } if field == "hostname"),
        "{e:?}"
    );
    aptr.release(&cx, SERVERS, a.address)
        .await
        .expect("release");
    assert!(fake.objects("record:ptr").is_empty() && fake.objects("record:a").is_empty());
}

#[tokio::test]
async fn owners_in_comments_are_found_by_regex() {
    let fake = FakeWapi::start().await;
    let b = backend(&fake.url, "owner_marker = \"comment\"");
    let cx = CallContext::default();
    let o = "vra:res.1/nic0 (x)";
    let a = b.allocate(&cx, &mk(o, None, SERVERS)).await.expect("alloc");
    b.allocate(&cx, &mk("vra:res.1/nic0", None, SERVERS))
        .await
        .expect("a prefix owner");
    let found = b.find(&cx, &Lookup::Owner(owner(o))).await.expect("find");
    assert_eq!(found.len(), 1, "exact owner only: {found:?}");
    assert_eq!(found[0].address, a.address);
    let host = fake
        .objects("record:host")
        .into_iter()
        .find(|h| h.text("comment").is_some_and(|c| c.ends_with("(x)]")))
        .expect("host");
    assert_eq!(
        host.text("comment"),
        Some("ipam-gateway: vra:res.1/nic0 (x) [ipamgw-owner:vra:res.1/nic0 (x)]")
    );
    assert!(host.ea("ipamgw-owner").is_none());
}

#[tokio::test]
async fn sessions_are_reused_and_an_expired_one_costs_one_login() {
    let fake = FakeWapi::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    b.check(&cx).await.expect("check");
    b.check(&cx).await.expect("check again");
    assert_eq!(fake.logins(), 1, "the ibapauth cookie is kept and reused");
    fake.expire_sessions();
    b.check(&cx).await.expect("re-login then success");
    assert_eq!(fake.logins(), 2);
}

#[tokio::test]
async fn passthrough_uses_each_callers_grid_credentials() {
    let fake = FakeWapi::start().await;
    let b = backend(&fake.url, "auth = \"passthrough\"");
    assert!(b.supports_passthrough());
    let none = b
        .networks(&CallContext::default())
        .await
        .expect_err("no credentials");
    assert!(matches!(none, IpamError::Unauthorized(_)), "{none:?}");
    let cx = |u: &str, p: &str| CallContext {
        credentials: Some(Credentials {
            username: u.into(),
            password: SecretString::from(p.to_owned()),
        }),
    };
    assert_eq!(
        b.networks(&cx("vra", "vra-pass")).await.expect("vra").len(),
        4
    );
    let bad = b
        .networks(&cx("vra", "nope-pw-123"))
        .await
        .expect_err("bad");
    assert!(
        matches!(&bad, IpamError::Unauthorized(m) if m.contains("'vra'") && !m.contains("nope-pw-123")),
        "{bad:?}"
    );
    assert!(!backend(&fake.url, "").supports_passthrough());
}

#[tokio::test]
async fn thousands_of_networks_come_page_by_page() {
    let mut state = FakeWapiState::lab();
    for i in 0..2100u32 {
        state.add_network(SeedNetwork {
            view: "default".into(),
            cidr: format!("10.{}.{}.0/24", 120 + i / 256, i % 256),
            comment: format!("bulk-{i}"),
            eas: vec![("vRA-Enabled".into(), "true".into())],
            ..SeedNetwork::default()
        });
    }
    let fake = FakeWapi::start_with(state).await;
    let b = backend(&fake.url, "count_free = false");
    let nets = b.networks(&CallContext::default()).await.expect("networks");
    assert_eq!(nets.len(), 2100 + 4);
    assert!(nets.iter().all(|n| n.free.is_none()));
    let unique: HashSet<&str> = nets.iter().map(|n| n.backend_id.as_str()).collect();
    assert_eq!(unique.len(), nets.len());
    assert!(
        fake.with(|s| s.pages_served) >= 3 + 3,
        "network: 3 pages, plus the other searches"
    );
}

#[tokio::test]
async fn utilization_counts_cost_no_request_per_network_and_track_the_exact_ones() {
    let fake = FakeWapi::start().await;
    let cx = CallContext::default();
    let taker = backend(&fake.url, "free_counts = \"off\"");
    for (i, net) in [SERVERS, SERVERS, SERVERS, SERVERS, SERVERS, TINY, TINY]
        .into_iter()
        .enumerate()
    {
        taker
            .allocate(&cx, &mk(&format!("vm-u{i}"), None, net))
            .await
            .expect("allocate");
    }
    // A fresh backend per mode: each listing pays its own login.
    let list = |extra: &'static str| {
        let fake = &fake;
        async move {
            let b = backend(&fake.url, extra);
            let before = fake.with(|s| s.requests);
            let nets = b.networks(&CallContext::default()).await.expect("networks");
            (nets, fake.with(|s| s.requests) - before)
        }
    };
    let (util, util_requests) = list("").await;
    let (exact, exact_requests) = list("free_counts = \"exact\"").await;
    let (off, off_requests) = list("count_free = false").await;
    assert_eq!(util.len(), 4);
    assert_eq!(
        util_requests, 5,
        "a login and four one-page searches: O(pages)"
    );
    assert_eq!(
        exact_requests,
        5 + exact.len(),
        "plus one address search per network: O(networks)"
    );
    assert_eq!(off_requests, 5);
    assert!(off.iter().all(|n| n.free.is_none()));
    for (u, e) in util.iter().zip(&exact) {
        assert_eq!(u.backend_id, e.backend_id);
        match u.cidr {
            ipnet::IpNet::V4(c) => {
                let (u, e) = (
                    u.free.expect("IPv4: from utilization"),
                    e.free.expect("exact"),
                );
                let usable = (1u64 << (32 - c.prefix_len())) - 2;
                assert!(
                    u <= e + usable / 100 + 1 && e <= u + usable / 100 + 1,
                    "{c}: utilization {u} vs exact {e}"
                );
            }
            ipnet::IpNet::V6(_) => assert_eq!(u.free, None, "no utilization on ipv6network"),
        }
    }
    let free = |nets: &[ipam_gateway::domain::NetworkInfo], name: &str| {
        nets.iter().find(|n| n.name == name).and_then(|n| n.free)
    };
    // lab-servers: gateway + 5 of 254 = 2 % → 248; exact 253 − 5 = 248.
    assert_eq!(free(&util, "lab-servers"), Some(248));
    assert_eq!(free(&exact, "lab-servers"), Some(248));
    // lab-tiny: gateway + 2 of 6 = 50 % → 3; exact 5 − 2 = 3.
    assert_eq!(free(&util, "lab-tiny"), Some(3));
    assert_eq!(free(&exact, "lab-tiny"), Some(3));
}

/// Two gateways (replicas) on one fake, allocating at once.
async fn allocate_concurrently(fake: &FakeWapi, net: &str, n: usize) -> (Vec<IpAddr>, usize) {
    let replica = || -> Arc<dyn Backend> { Arc::new(backend(&fake.url, "")) };
    crate::support::allocate_from_two_replicas([replica(), replica()], net, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_200_allocations_one_tiny_network_no_duplicates() {
    let fake = FakeWapi::start().await;
    let (got, exhausted) = allocate_concurrently(&fake, TINY, 200).await;
    let unique: HashSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "no address handed out twice: {got:?}"
    );
    assert_eq!(got.len(), 5, "a /29 has 6 hosts, one is the gateway");
    assert_eq!(exhausted, 195);
    assert!(!unique.contains(&ip("10.40.0.1")));
    assert_eq!(fake.used_in("default", "10.40.0.0/29").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_200_allocations_one_large_network_all_distinct() {
    let fake = FakeWapi::start().await;
    let (got, exhausted) = allocate_concurrently(&fake, SERVERS, 200).await;
    let unique: HashSet<IpAddr> = got.iter().copied().collect();
    assert_eq!((unique.len(), exhausted), (200, 0));
    assert!(!unique.contains(&ip("10.20.0.1")), "never the gateway");
    let hosts = fake.objects("record:host");
    assert_eq!(hosts.len(), 200);
    assert!(hosts.iter().all(|h| h.ea("ipamgw-owner").is_some()));
}

#[tokio::test]
async fn the_gateway_serves_infoblox_networks_over_http() {
    let fake = FakeWapi::start().await;
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
    assert_eq!(names.len(), 4, "{body}");
    let id = app.network_id("lab-servers").await;
    let resp = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": "vm-http", "networks": [id], "hostname": "vm-http"}),
        )
        .send()
        .await
        .expect("allocate");
    assert_eq!(resp.status(), 201);
    let a: Value = resp.json().await.expect("json");
    assert_eq!(a["address"], "10.20.0.2");
    let again: Value = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": "vm-http", "networks": [id]}),
        )
        .send()
        .await
        .expect("again")
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["address"], "10.20.0.2",
        "the same owner gets the same address back"
    );
    let status = app.ipam.check("ipam").await.expect("check");
    assert_eq!((status.networks, status.blocks), (4, 1));
    app.stop().await;
}

#[tokio::test]
async fn the_check_command_reports_reachable_authenticated_and_counts() {
    let fake = FakeWapi::start().await;
    let (code, text) = run_check(&config_with(
        &fake.url,
        "\"default\", \"prod\", \"lab2\"",
        "username = \"admin\"\npassword = \"infoblox\"",
    ))
    .await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("reachable, authenticated, 5 network(s) exposed, 1 block(s)"),
        "{text}"
    );
    assert!(
        text.contains("(infoblox)") && text.contains("network view(s) not found: lab2"),
        "{text}"
    );
}

#[tokio::test]
async fn the_check_command_fails_on_a_wrong_password_without_printing_it() {
    let fake = FakeWapi::start().await;
    let (code, text) = run_check(&config(
        &fake.url,
        "username = \"admin\"\npassword = \"not-the-password\"",
    ))
    .await;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("Authorization Required"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

#[test]
fn the_example_config_is_valid() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/infoblox.example.toml"),
    )
    .expect("example config")
    .replace(
        "\"env:IPAMGW_VRA_PASSWORD_HASH\"",
        "\"$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo\"",
    )
    .replace("\"env:IPAMGW_INFOBLOX_PASSWORD\"", "\"example\"");
    let s = ipam_gateway::config::Settings::from_toml(&text).expect("example validates");
    assert_eq!(s.backends[0].name(), "infoblox");
}

/// Extensible attribute definitions as fixtures 31 (defined) and 32 (undefined: `[]`) show them,
/// and an undefined EA refused in a search and a write as fixture 26 shows.
#[tokio::test]
async fn the_fake_lists_extensible_attribute_definitions_like_the_fixtures() {
    let fake = FakeWapi::start().await;
    let (ex, status, body, raw) = replay(&fake, "31", None).await;
    assert_conforms(&ex, status, &body, &raw);
    assert_eq!(body[0]["name"], "ipamgw-owner");
    assert_eq!(body[0]["type"], "STRING");
    assert!(ref_of(&body[0]).starts_with("extensibleattributedef/"));
    assert!(ref_of(&body[0]).ends_with(":ipamgw-owner"));
    let (ex, status, body, _) = replay(&fake, "32", None).await;
    assert_eq!(status, ex.status());
    assert_eq!(body, json!([]), "an undefined EA: an empty list");
    // Without a name: every definition; an EA added later is listed.
    fake.with(|s| s.add_ea("VM Name"));
    let (_, status, body, _) = replay(
        &fake,
        "32",
        Some("/wapi/v2.12/extensibleattributedef?_return_fields=name"),
    )
    .await;
    assert_eq!(status, 200);
    let names: HashSet<&str> = body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        names.contains("VM Name") && names.contains("vRA-Enabled"),
        "{names:?}"
    );
    assert!(body[0].get("type").is_none(), "only the fields asked for");
    // Searchable by name, comment, namespace and type only.
    let (_, status, body, _) = replay(
        &fake,
        "32",
        Some("/wapi/v2.12/extensibleattributedef?default_value=x"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["text"], "Field is not searchable: default_value");
    // Undefined EAs in a search and in a write (fixture 26).
    fake.with(|s| s.eas.remove("VM Name"));
    let (ex, status, body, raw) = replay(&fake, "26", None).await;
    assert_conforms(&ex, status, &body, &raw);
    let (_, status, body, _) =
        replay(&fake, "32", Some("/wapi/v2.12/record:host?*VM%20Name=vm-1")).await;
    assert_eq!(status, 400);
    assert_eq!(body["text"], "Unknown extensible attribute: VM Name");
}
