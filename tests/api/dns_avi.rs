//! DNS names of Avi IPAM records, end to end against a real BIND (tests/api/support/bind.rs)
//! on the embedded backend: every fqdn of a record gets A/AAAA records for its addresses, the
//! first one the PTRs; updates converge, deletes remove every name's records. Also: the updates
//! of one record set go out together (a stub server, tests/api/support/dns_stub.rs), and the two
//! failure cases of the service hooks (a failed rename, a failed retry) on two gateways sharing
//! one phpIPAM fake. Same ignore scheme as tests/api/dns.rs (`cfg(has_named)`).

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::avi_common::{call, create, delete, exception, held, net_id, update};
use crate::support::bind::{Bind, KEY_SECRET, WRONG_SECRET};
use crate::support::dns_lab::with_dns;
use crate::support::dns_stub::DnsStub;
use crate::support::phpipam_fake::FakePhpipam;
use crate::support::{AppOptions, BASE_CONFIG, TestApp, allocate, allocations_of, spawn_with};

const GENERAL: &str = "CustomIpamGeneralException";
const SERVERS: &str = "10.20.0.0/24";
const SERVERS6: &str = "2001:db8:20::/64";
const TIMEOUT_MS: u64 = 1500;

async fn app_with_dns(bind: &Bind, required: bool) -> TestApp {
    spawn_with(AppOptions {
        config: with_dns(
            &BASE_CONFIG,
            "embedded",
            bind.addr,
            KEY_SECRET,
            required,
            TIMEOUT_MS,
        ),
        ..AppOptions::default()
    })
    .await
}

async fn ptr(bind: &Bind, addr: &str) -> Vec<String> {
    let ip = addr.parse().expect("address");
    bind.lookup(&ipam_gateway::dns::names::reverse_name(ip), RecordType::PTR)
        .await
}

/// The lab-servers dual-stack tuple (10.20.0.0/24 + 2001:db8:20::/64).
async fn servers_pair(app: &TestApp) -> Value {
    let v4 = net_id(app, SERVERS).await;
    let v6 = net_id(app, SERVERS6).await;
    json!([[format!("{v4}+{v6}"), SERVERS, SERVERS6]])
}

fn record(id: &str, fqdns: &[&str], subnets: &Value) -> Value {
    json!({
        "id": id,
        "fqdns": fqdns,
        "allocation_type": "V4_V6",
        "nw_and_subnet_list": subnets,
    })
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn avi_create_with_two_fqdns_registers_both_names_and_the_ptr_for_the_first_and_delete_removes_all()
 {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, true).await;
    two_fqdns_create_update_delete(&bind, &app, "local").await;
    app.stop().await;
}

/// The same on the phpIPAM fake, deleted by id alone too (what Avi's validator sends): the
/// description keeps 64 characters and loses the names after the first, so the gateway finds
/// them in the address's `note` (`ipamgw-names: …`), which the fake stores and answers.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn avi_create_with_two_fqdns_on_phpipam_registers_both_names_and_delete_removes_all() {
    let bind = Bind::start().await;
    let (app, _fake) = phpipam_app_with_dns(&bind).await;
    two_fqdns_create_update_delete(&bind, &app, "ipam").await;
    app.stop().await;
}

/// The phpIPAM fake seeded with the lab networks, and a gateway on it with `[dns.lab]`
/// (`required = true`).
async fn phpipam_app_with_dns(bind: &Bind) -> (TestApp, FakePhpipam) {
    use crate::support::matrix::{phpipam_config, seed_phpipam};
    use crate::support::phpipam_fake::FakeState;
    let mut state = FakeState::empty();
    let lab = seed_phpipam(&mut state);
    let fake = FakePhpipam::start_with(state).await;
    let app = spawn_with(AppOptions {
        config: with_dns(
            &phpipam_config(&fake.url, &lab),
            "phpipam",
            bind.addr,
            KEY_SECRET,
            true,
            TIMEOUT_MS,
        ),
        ..AppOptions::default()
    })
    .await;
    (app, fake)
}

/// The `note` of the phpIPAM address of each of `ips`, in their order.
fn notes(fake: &FakePhpipam, ips: &[&str]) -> Vec<Option<String>> {
    fake.with(|s| {
        ips.iter()
            .map(|ip| {
                let ip: std::net::IpAddr = ip.parse().expect("ip");
                let a = s.addresses.values().find(|a| a.ip == ip).expect("record");
                a.note.clone()
            })
            .collect()
    })
}

/// On phpIPAM the names after the first are kept whole in each address's `note` (one line
/// `ipamgw-names: …`) while the description, 64 characters, loses them; an update rewrites
/// the line and keeps the note's other text. A record written before the gateway kept the
/// line (its note cleared here) still loses every name when Avi's delete lists the fqdns.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn avi_names_live_in_the_phpipam_note_and_a_record_without_it_is_deleted_by_its_fqdns() {
    let bind = Bind::start().await;
    let (app, fake) = phpipam_app_with_dns(&bind).await;
    let subnets = servers_pair(&app).await;
    let (a, b, c) = (
        "vs-a.lab.example.com",
        "vs-b.lab.example.com",
        "vs-c.lab.example.com",
    );
    let (status, info) = create(&app, record("vsvip-dns-2", &[a, b, c], &subnets)).await;
    assert_eq!(status, 200, "{info}");
    let v4 = info["v4_ip"].as_str().expect("v4").to_owned();
    let v6 = info["v6_ip"].as_str().expect("v6").to_owned();
    let ips = [v4.as_str(), v6.as_str()];
    let line = format!("ipamgw-names: {b} {c}");
    assert_eq!(notes(&fake, &ips), [Some(line.clone()), Some(line)]);
    let descriptions: Vec<Option<String>> = fake.with(|s| {
        s.addresses
            .values()
            .filter(|r| r.owner.as_deref() == Some("avi:vsvip-dns-2"))
            .map(|r| r.description.clone())
            .collect()
    });
    assert_eq!(descriptions.len(), 2);
    for d in &descriptions {
        let d = d.as_deref().expect("description");
        assert!(d.ends_with('…') && !d.contains(b), "{d}");
    }

    // Someone's own text in the note survives an update; the names line follows the fqdns.
    fake.with(|s| {
        for r in s.addresses.values_mut() {
            if r.owner.as_deref() == Some("avi:vsvip-dns-2") {
                r.note = Some(format!("rack 12\n{}", r.note.clone().unwrap_or_default()));
            }
        }
    });
    let (status, out) = update(
        &app,
        record("vsvip-dns-2", &[a, c], &subnets),
        record("vsvip-dns-2", &[a, b, c], &subnets),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let kept = format!("rack 12\nipamgw-names: {c}");
    assert_eq!(notes(&fake, &ips), [Some(kept.clone()), Some(kept)]);
    assert!(bind.lookup(b, RecordType::A).await.is_empty());
    assert_eq!(bind.lookup(c, RecordType::AAAA).await, [v6.as_str()]);

    // As if written before the names line: Avi's fqdns find the names.
    fake.with(|s| {
        for r in s.addresses.values_mut() {
            r.note = None;
        }
    });
    let (status, out) = call(
        &app,
        "delete-ipam-record",
        json!({ "record_info": record("vsvip-dns-2", &[a, c], &subnets) }),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    for name in [a, c] {
        assert!(bind.lookup(name, RecordType::A).await.is_empty(), "{name}");
        assert!(
            bind.lookup(name, RecordType::AAAA).await.is_empty(),
            "{name}"
        );
    }
    assert!(ptr(&bind, &v4).await.is_empty());
    assert!(held(&app, "avi:vsvip-dns-2").await.is_empty());
    app.stop().await;
}

/// Create with two fqdns (V4_V6), update dropping one, update adding one in front, delete by
/// the record's id alone (what Avi's validator sends): the gateway finds every name itself.
async fn two_fqdns_create_update_delete(bind: &Bind, app: &TestApp, backend: &str) {
    let subnets = servers_pair(app).await;
    let (a, b, c) = (
        "vs-a.lab.example.com",
        "vs-b.lab.example.com",
        "vs-c.lab.example.com",
    );
    let (status, info) = create(app, record("vsvip-dns-1", &[a, b], &subnets)).await;
    assert_eq!(status, 200, "{info}");
    let v4 = info["v4_ip"].as_str().expect("v4").to_owned();
    let v6 = info["v6_ip"].as_str().expect("v6").to_owned();
    // Both names, both families; the PTRs name the first fqdn only.
    for name in [a, b] {
        assert_eq!(
            bind.lookup(name, RecordType::A).await,
            [v4.as_str()],
            "{name}"
        );
        assert_eq!(
            bind.lookup(name, RecordType::AAAA).await,
            [v6.as_str()],
            "{name}"
        );
    }
    assert_eq!(ptr(bind, &v4).await, [format!("{a}.")]);
    assert_eq!(ptr(bind, &v6).await, [format!("{a}.")]);

    // Someone else's record for vs-b at another address.
    let other =
        ipam_gateway::dns::DnsUpdater::new(app.ipam.dns().sections(backend)[0].settings().clone());
    other
        .add(b, "10.20.0.99".parse().expect("ip"), None)
        .await
        .expect("other record");

    // Update dropping vs-b: its records for this record's addresses go, the other one stays.
    let (status, out) = update(
        app,
        record("vsvip-dns-1", &[a], &subnets),
        record("vsvip-dns-1", &[a, b], &subnets),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        (&out["v4_ip"], &out["v6_ip"]),
        (&info["v4_ip"], &info["v6_ip"])
    );
    assert_eq!(bind.lookup(b, RecordType::A).await, ["10.20.0.99"]);
    assert!(bind.lookup(b, RecordType::AAAA).await.is_empty());
    assert_eq!(bind.lookup(a, RecordType::A).await, [v4.as_str()]);
    assert_eq!(bind.lookup(a, RecordType::AAAA).await, [v6.as_str()]);
    assert_eq!(ptr(bind, &v4).await, [format!("{a}.")]);

    // Update adding vs-c in front: it gets the records and the PTRs; vs-a keeps its records.
    let (status, out) = update(
        app,
        record("vsvip-dns-1", &[c, a], &subnets),
        record("vsvip-dns-1", &[a], &subnets),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    for name in [c, a] {
        assert_eq!(
            bind.lookup(name, RecordType::A).await,
            [v4.as_str()],
            "{name}"
        );
        assert_eq!(
            bind.lookup(name, RecordType::AAAA).await,
            [v6.as_str()],
            "{name}"
        );
    }
    assert_eq!(ptr(bind, &v4).await, [format!("{c}.")]);
    assert_eq!(ptr(bind, &v6).await, [format!("{c}.")]);

    // Delete: the record's own names go.
    let (status, out) = delete(app, "vsvip-dns-1").await;
    assert_eq!(status, 200, "{out}");
    for name in [a, c] {
        assert!(bind.lookup(name, RecordType::A).await.is_empty(), "{name}");
        assert!(
            bind.lookup(name, RecordType::AAAA).await.is_empty(),
            "{name}"
        );
    }
    assert!(ptr(bind, &v4).await.is_empty());
    assert!(ptr(bind, &v6).await.is_empty());
    assert_eq!(bind.lookup(b, RecordType::A).await, ["10.20.0.99"]);
    assert!(held(app, "avi:vsvip-dns-1").await.is_empty());
}

/// A bad fqdn, or one in no zone the section may update: a 400 (General) naming Avi's field
/// with the index it was sent at, and nothing allocated or changed.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_bad_fqdn_is_a_400_naming_its_index_before_any_address_is_taken() {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, true).await;
    let subnets = servers_pair(&app).await;
    for (fqdns, field) in [
        (
            vec!["ok.lab.example.com", "", "bad_name.lab.example.com"],
            "record_info.fqdns[2]",
        ),
        (
            vec!["ok.lab.example.com", "vs.elsewhere.org"],
            "record_info.fqdns[1]",
        ),
        (vec!["-lead.lab.example.com"], "record_info.fqdns[0]"),
    ] {
        let (status, e) = create(&app, record("vsvip-bad", &fqdns, &subnets)).await;
        assert_eq!(status, 400, "{fqdns:?}: {e}");
        assert_eq!(exception(&e), GENERAL, "{e}");
        assert_eq!(e["error"]["field"], field, "{e}");
        assert!(held(&app, "avi:vsvip-bad").await.is_empty(), "{fqdns:?}");
    }
    assert!(
        bind.lookup("ok.lab.example.com", RecordType::A)
            .await
            .is_empty()
    );

    // On update: refused before anything changes, the record and its names as they were.
    let good = "vs-ok.lab.example.com";
    let (status, info) = create(&app, record("vsvip-upd", &[good], &subnets)).await;
    assert_eq!(status, 200, "{info}");
    let (status, e) = update(
        &app,
        record("vsvip-upd", &[good, "no_good.lab.example.com"], &subnets),
        record("vsvip-upd", &[good], &subnets),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "new_record_info.fqdns[1]", "{e}");
    let v4 = info["v4_ip"].as_str().expect("v4");
    assert_eq!(bind.lookup(good, RecordType::A).await, [v4]);
    let mut both = vec![
        v4.to_owned(),
        info["v6_ip"].as_str().expect("v6").to_owned(),
    ];
    both.sort();
    assert_eq!(held(&app, "avi:vsvip-upd").await, both);
    app.stop().await;
}

/// One round trip per record set: the A records of both fqdns (one zone, so one UPDATE
/// message) and the PTR go to the server together. The stub answers nothing until both
/// messages are there: sent one after the other, the first would wait out the 30 s timeout and
/// the create would fail with a timeout (504); sent together, both get the stub's `REFUSED`.
#[tokio::test]
async fn the_forward_and_reverse_updates_of_a_record_go_out_together() {
    let stub = DnsStub::start(2).await;
    let app = spawn_with(AppOptions {
        config: with_dns(
            &BASE_CONFIG,
            "embedded",
            stub.addr,
            KEY_SECRET,
            true,
            30_000,
        ),
        ..AppOptions::default()
    })
    .await;
    let v4 = net_id(&app, SERVERS).await;
    let (status, e) = create(
        &app,
        json!({
            "id": "vsvip-stub",
            "fqdns": ["vs-a.lab.example.com", "vs-b.lab.example.com"],
            "allocation_type": "V4_ONLY",
            "nw_and_subnet_list": [[v4, SERVERS, null]],
        }),
    )
    .await;
    assert_eq!(status, 502, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("REFUSED"),
        "the stub's answer, not a timeout: {e}"
    );
    let got = stub.received();
    let first_two = &got[..2.min(got.len())];
    assert_eq!(
        first_two.iter().map(|m| m.waiting).max(),
        Some(2),
        "both messages were out at once: {got:#?}"
    );
    let mut zones: Vec<&str> = first_two.iter().map(|m| m.zone.as_str()).collect();
    zones.sort();
    assert_eq!(
        zones,
        ["20.10.in-addr.arpa.", "lab.example.com."],
        "{got:#?}"
    );
    let forward = first_two
        .iter()
        .find(|m| m.zone == "lab.example.com.")
        .expect("forward");
    assert_eq!(
        forward.updates.len(),
        2,
        "both names in one message: {forward:?}"
    );
    assert!(
        forward.updates.iter().any(|u| u.starts_with("vs-a."))
            && forward.updates.iter().any(|u| u.starts_with("vs-b.")),
        "{forward:?}"
    );
    // Refused (required = true): nothing left allocated.
    assert!(held(&app, "avi:vsvip-stub").await.is_empty());
    app.stop().await;
}

/// Two gateways on one phpIPAM fake: `good` has the right TSIG key, `bad` one BIND does not
/// know (another replica with a broken secret, the same effect as a DNS outage on one side).
async fn two_replicas(bind: &Bind) -> (TestApp, TestApp, FakePhpipam) {
    use crate::support::matrix::{phpipam_config, seed_phpipam};
    use crate::support::phpipam_fake::FakeState;
    let mut state = FakeState::empty();
    let lab = seed_phpipam(&mut state);
    let fake = FakePhpipam::start_with(state).await;
    let base = phpipam_config(&fake.url, &lab);
    let app = |secret: &str| {
        spawn_with(AppOptions {
            config: with_dns(&base, "phpipam", bind.addr, secret, true, TIMEOUT_MS),
            ..AppOptions::default()
        })
    };
    let good = app(KEY_SECRET).await;
    let bad = app(WRONG_SECRET).await;
    (good, bad, fake)
}

/// A new host name whose DNS update fails (required = true): the caller sees DNS's answer, and
/// both the record and DNS keep the old name.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_failed_rename_leaves_the_record_and_dns_with_the_old_name() {
    let bind = Bind::start().await;
    let (good, bad, _fake) = two_replicas(&bind).await;
    let net = good.network_id("lab-servers").await;
    let (status, a) = allocate(
        &good,
        json!({"owner": "vm-r", "hostname": "vm-r", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    let addr = a["address"].as_str().expect("address").to_owned();
    let id = a["id"].as_str().expect("id");

    let r = bad
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"hostname": "web-r", "mac": "00:50:56:aa:bb:01"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 502);
    let e: Value = r.json().await.expect("json");
    let msg = e["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("NOTAUTH") && msg.contains("lab.example.com"),
        "{e}"
    );

    let now = &allocations_of(&good, "vm-r").await[0];
    assert_eq!(now["hostname"], "vm-r", "{now}");
    assert!(now["mac"].is_null(), "nothing of the change applied: {now}");
    assert_eq!(
        bind.lookup("vm-r.lab.example.com", RecordType::A).await,
        [addr.as_str()]
    );
    assert!(
        bind.lookup("web-r.lab.example.com", RecordType::A)
            .await
            .is_empty()
    );
    assert_eq!(ptr(&bind, &addr).await, ["vm-r.lab.example.com."]);

    // The same change through a gateway that reaches DNS goes through whole.
    let r = good
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"hostname": "web-r"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    assert_eq!(ptr(&bind, &addr).await, ["web-r.lab.example.com."]);
    good.stop().await;
    bad.stop().await;
}

/// The decision of `Ipam::register_taken`: a retry that gets back an address the owner already
/// held, and then fails to register its name (required = true), answers the DNS error but does
/// not release the address nor undo the records the first attempt registered; an address the
/// failing request took itself is released.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_retry_whose_dns_fails_keeps_the_address_the_owner_already_held() {
    let bind = Bind::start().await;
    let (good, bad, _fake) = two_replicas(&bind).await;
    let net = good.network_id("lab-servers").await;
    let req = json!({"owner": "vm-t", "hostname": "vm-t", "networks": [net]});
    let (status, first) = allocate(&good, req.clone()).await;
    assert_eq!(status, 201, "{first}");
    let addr = first["address"].as_str().expect("address").to_owned();

    // The retry lands on the other replica, which cannot update DNS.
    let (status, e) = allocate(&bad, req).await;
    assert_eq!(status, 502, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("NOTAUTH"),
        "{e}"
    );
    let now = allocations_of(&good, "vm-t").await;
    assert_eq!(now.as_array().map(Vec::len), Some(1), "{now}");
    assert_eq!(now[0]["address"], addr.as_str(), "still the owner's");
    assert_eq!(
        bind.lookup("vm-t.lab.example.com", RecordType::A).await,
        [addr.as_str()]
    );
    assert_eq!(ptr(&bind, &addr).await, ["vm-t.lab.example.com."]);

    // A first attempt on that replica takes an address and gives it back.
    let (status, e) = allocate(
        &bad,
        json!({"owner": "vm-u", "hostname": "vm-u", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 502, "{e}");
    assert_eq!(allocations_of(&good, "vm-u").await, json!([]));
    good.stop().await;
    bad.stop().await;
}

/// A dual-stack create whose IPv6 half cannot be registered (its reverse zone is not one the
/// section may update) after the IPv4 half was: the IPv4 address is given back with the records
/// of every fqdn, not only the first.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_failed_half_is_rolled_back_with_the_records_of_every_fqdn() {
    let bind = Bind::start().await;
    let config = with_dns(
        &BASE_CONFIG,
        "embedded",
        bind.addr,
        KEY_SECRET,
        true,
        TIMEOUT_MS,
    )
    .replace(
        r#"reverse_zones = ["20.10.in-addr.arpa", "0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"]"#,
        r#"reverse_zones = ["20.10.in-addr.arpa"]"#,
    );
    let app = spawn_with(AppOptions {
        config,
        ..AppOptions::default()
    })
    .await;
    let subnets = servers_pair(&app).await;
    let (a, b) = ("vs-h.lab.example.com", "vs-i.lab.example.com");
    let (status, e) = create(&app, record("vsvip-half", &[a, b], &subnets)).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("released 10.20.0."),
        "the IPv4 half was given back: {e}"
    );
    assert!(held(&app, "avi:vsvip-half").await.is_empty());
    for name in [a, b] {
        assert!(bind.lookup(name, RecordType::A).await.is_empty(), "{name}");
        assert!(
            bind.lookup(name, RecordType::AAAA).await.is_empty(),
            "{name}"
        );
    }
    assert!(ptr(&bind, "10.20.0.2").await.is_empty());
    app.stop().await;
}

/// `OnFailure::Revert`: when one zone refuses, what another zone applied is undone; with
/// `Keep` it stays. `readonly.example.com` has no update policy in the test BIND: REFUSED.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn set_names_reverts_what_one_zone_applied_when_another_refuses() {
    use ipam_gateway::dns::{DnsConfig, DnsUpdater, OnFailure};
    let bind = Bind::start().await;
    let c: DnsConfig = toml::from_str(&format!(
        r#"
servers = ["{addr}"]
key_name = "ipamgw-key"
secret = "{KEY_SECRET}"
forward_zones = ["lab.example.com", "readonly.example.com"]
ptr = false
timeout_ms = {TIMEOUT_MS}
"#,
        addr = bind.addr
    ))
    .expect("config");
    let dns = DnsUpdater::new(ipam_gateway::dns::config::validate("lab", &c).expect("valid"));
    let addr: std::net::IpAddr = "10.20.0.40".parse().expect("ip");
    let names = |n: &str| {
        vec![
            format!("{n}.lab.example.com"),
            format!("{n}.readonly.example.com"),
        ]
    };
    for (n, on_failure, left) in [
        ("rv", OnFailure::Revert, Vec::<&str>::new()),
        ("kp", OnFailure::Keep, vec!["10.20.0.40"]),
    ] {
        let e = dns
            .set_names(addr, None, &[], &names(n), on_failure)
            .await
            .expect_err("readonly.example.com refuses");
        assert!(e.to_string().contains("REFUSED"), "{e}");
        assert_eq!(
            bind.lookup(&format!("{n}.lab.example.com"), RecordType::A)
                .await,
            left,
            "{on_failure:?}"
        );
    }
}

/// A rename whose DNS update went through but whose record update then failed (the fake
/// backend, tests/api/support/fake.rs, refuses every record update): DNS is moved back to the
/// old name, and the caller sees the backend's error.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_rename_the_backend_refuses_moves_dns_back_to_the_old_name() {
    use std::sync::Arc;
    use std::time::Duration;

    use ipam_gateway::backends::{Backend, CallContext};
    use ipam_gateway::domain::{IpamError, NetworkId, Owner, RecordChanges, RecordDetails};
    use ipam_gateway::service::{AllocationRequest, Caller, DnsRegistry, Ipam};

    use crate::support::fake::FakeBackend;

    let bind = Bind::start().await;
    // The fake's network (198.51.100.0/24) has no reverse zone in this BIND: names only.
    let c: ipam_gateway::dns::DnsConfig = toml::from_str(&format!(
        r#"
servers = ["{addr}"]
key_name = "ipamgw-key"
secret = "{KEY_SECRET}"
forward_zones = ["lab.example.com"]
ptr = false
required = true
timeout_ms = {TIMEOUT_MS}
"#,
        addr = bind.addr
    ))
    .expect("config");
    let section = ipam_gateway::dns::config::validate("lab", &c).expect("valid");
    let attach = [(
        "fake".to_owned(),
        ipam_gateway::config::DnsAttach {
            default: Some("lab".into()),
            networks: Default::default(),
        },
    )]
    .into_iter()
    .collect();
    let backend = FakeBackend::new();
    let ipam = Ipam::new(
        vec![backend.clone() as Arc<dyn Backend>],
        Duration::from_secs(60),
    )
    .with_dns(DnsRegistry::from_settings(&[section], &attach));
    let caller = Caller {
        name: "demo".into(),
        backend: "fake".into(),
        cx: CallContext::default(),
    };
    let net = NetworkId::new("fake", crate::support::fake::NET);
    let a = ipam
        .allocate(
            &caller,
            &AllocationRequest {
                owner: Owner::parse("vm-f").expect("owner"),
                networks: vec![net.clone()],
                address: None,
                details: RecordDetails {
                    hostname: Some("vm-f.lab.example.com".into()),
                    ..RecordDetails::default()
                },
                aliases: Vec::new(),
            },
        )
        .await
        .expect("allocated");
    let addr = a.address.to_string();
    assert_eq!(
        bind.lookup("vm-f.lab.example.com", RecordType::A).await,
        [addr.as_str()]
    );
    let e = ipam
        .update(
            &caller,
            &net,
            a.address,
            &RecordChanges {
                hostname: Some("web-f.lab.example.com".into()),
                ..RecordChanges::default()
            },
        )
        .await
        .expect_err("the fake refuses record updates");
    assert!(matches!(e, IpamError::Unsupported(_)), "{e:?}");
    assert_eq!(
        bind.lookup("vm-f.lab.example.com", RecordType::A).await,
        [addr.as_str()]
    );
    assert!(
        bind.lookup("web-f.lab.example.com", RecordType::A)
            .await
            .is_empty()
    );
}
