//! DNS registration end to end through the vRA contract, against a real BIND
//! (tests/api/support/bind.rs), on the embedded backend and on the phpIPAM fake: update-record
//! renames, deallocate leaves someone else's record, and a wrong TSIG secret or a stopped BIND
//! fail a `required` allocation with nothing left allocated, or are counted when not required.
//!
//! Already covered through vRA in tests/api/dns_wired.rs (not repeated here): allocate → A and
//! PTR, deallocate → gone (`vra_allocate_registers_*`, both backends), the opt-out property, a
//! host name DNS cannot take. Same ignore scheme as tests/api/dns.rs (`cfg(has_named)`).

use std::net::IpAddr;

use hickory_proto::rr::RecordType;
use reqwest::StatusCode;
use serde_json::json;

use crate::dns_wired::with_dns;
use crate::support::bind::{Bind, KEY_SECRET, WRONG_SECRET};
use crate::support::matrix::{PhpipamLab, phpipam_config, seed_phpipam};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};
use crate::support::{AppOptions, BASE_CONFIG, TestApp, spawn_with};
use crate::vra_common::{allocation_at, error_of, filled, held_by, placeholders, vra, vra_ok};

/// The host name the allocate-ip fixture's `resourceInfo.name` gives, qualified with the
/// lab-servers domain.
const MACHINE: &str = "external-ipam-it-mcm-323412.lab.example.com";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Embedded,
    Phpipam,
}

/// A gateway with `[dns.lab]` attached to its only backend, and the phpIPAM fake behind it.
struct Env {
    app: TestApp,
    fake: Option<(FakePhpipam, PhpipamLab)>,
}

async fn env(kind: Kind, bind: &Bind, secret: &str, required: bool) -> Env {
    let (config, fake) = match kind {
        Kind::Embedded => (
            with_dns(&BASE_CONFIG, "embedded", bind, secret, required),
            None,
        ),
        Kind::Phpipam => {
            let mut state = FakeState::empty();
            let lab = seed_phpipam(&mut state);
            let fake = FakePhpipam::start_with(state).await;
            let config = with_dns(
                &phpipam_config(&fake.url, &lab),
                "phpipam",
                bind,
                secret,
                required,
            );
            (config, Some((fake, lab)))
        }
    };
    let app = spawn_with(AppOptions {
        config,
        metrics: true,
        ..AppOptions::default()
    })
    .await;
    Env { app, fake }
}

impl Env {
    /// The non-gateway addresses the backend itself holds in lab-servers (10.20.0.0/16): read
    /// from the phpIPAM fake's rows, or from the embedded store through the core.
    async fn backend_holds(&self) -> Vec<IpAddr> {
        match &self.fake {
            Some((fake, lab)) => {
                let (_, subnet) = lab
                    .subnets
                    .iter()
                    .find(|(n, _)| *n == "lab-servers")
                    .expect("lab-servers seeded");
                fake.addresses_in(*subnet)
                    .into_iter()
                    .filter(|a| !a.is_gateway)
                    .map(|a| a.ip)
                    .collect()
            }
            None => {
                // The native API finds by address; a fresh lab-servers hands out .2 first, so a
                // leaked address would be among the first few.
                let mut held = Vec::new();
                for a in ["10.20.0.2", "10.20.0.3", "10.20.0.4"] {
                    if allocation_at(&self.app, a).await.is_some() {
                        held.push(a.parse().expect("ip"));
                    }
                }
                held
            }
        }
    }
}

/// The sum of `ipamgw_dns_updates_total` over `results`. The recorder is process-wide (other
/// tests count too), so callers compare before and after.
async fn dns_updates(app: &TestApp, results: &[&str]) -> u64 {
    let url = app.metrics_url.as_deref().expect("metrics on");
    let text = reqwest::get(url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| {
            results
                .iter()
                .any(|r| l.starts_with(&format!("ipamgw_dns_updates_total{{result=\"{r}\"}}")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

// ---------------------------------------------------------------------------------------------
// update-record renames; deallocate deletes only the machine's records

async fn update_record_renames_and_deallocate_spares_others(kind: Kind) {
    let bind = Bind::start().await;
    let env = env(kind, &bind, KEY_SECRET, true).await;
    let app = &env.app;
    let values = placeholders(app).await;
    let out = vra_ok(app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    assert_eq!(out["ipAllocations"][0]["ipAddresses"], json!(["10.20.0.2"]));
    assert_eq!(bind.lookup(MACHINE, RecordType::A).await, ["10.20.0.2"]);

    // The contract's update: the MAC, and the host name vRA knows now (the fixture's
    // `resourceInfo.hostname`, "bond-006", as Update_mock.py sends it).
    let update = filled("update-record", &values, &[("address", "10.20.0.2")]);
    assert_eq!(
        vra_ok(app, "update-record", &update).await,
        json!({"updateResults": ["Success"]})
    );
    let bond = "bond-006.lab.example.com";
    assert!(
        bind.lookup(MACHINE, RecordType::A).await.is_empty(),
        "{kind:?}"
    );
    assert_eq!(bind.lookup(bond, RecordType::A).await, ["10.20.0.2"]);
    assert_eq!(bind.ptr("10.20.0.2").await, [format!("{bond}.")]);
    // vRA retries an update it did not see answered: the same records, once.
    vra_ok(app, "update-record", &update).await;
    assert_eq!(bind.lookup(bond, RecordType::A).await, ["10.20.0.2"]);
    assert_eq!(bind.ptr("10.20.0.2").await, [format!("{bond}.")]);

    // The contract's own `hostName`, fully qualified, wins over resourceInfo.
    let mut renamed = update.clone();
    renamed["hostName"] = json!("web-01.lab.example.com");
    vra_ok(app, "update-record", &renamed).await;
    let web = "web-01.lab.example.com";
    assert!(bind.lookup(bond, RecordType::A).await.is_empty());
    assert_eq!(bind.lookup(web, RecordType::A).await, ["10.20.0.2"]);
    assert_eq!(bind.ptr("10.20.0.2").await, [format!("{web}.")]);

    // Someone else's record for the same name at another address, put in BIND directly.
    let other = ipam_gateway::dns::DnsUpdater::new(
        app.ipam
            .dns()
            .sections("local")
            .into_iter()
            .chain(app.ipam.dns().sections("ipam"))
            .next()
            .expect("dns.lab attached")
            .settings()
            .clone(),
    );
    other
        .add(web, "10.20.0.99".parse().expect("ip"), None)
        .await
        .expect("someone else's record");

    let free = filled("deallocate-ip", &values, &[("address", "10.20.0.2")]);
    let out = vra_ok(app, "deallocate-ip", &free).await;
    assert_eq!(out["ipDeallocations"][0]["message"], "Success", "{out}");
    assert_eq!(bind.lookup(web, RecordType::A).await, ["10.20.0.99"]);
    assert!(bind.ptr("10.20.0.2").await.is_empty());
    assert_eq!(bind.ptr("10.20.0.99").await, [format!("{web}.")]);
    assert!(env.backend_holds().await.is_empty(), "{kind:?}");
    env.app.stop().await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_update_record_renames_and_deallocate_spares_others_embedded() {
    update_record_renames_and_deallocate_spares_others(Kind::Embedded).await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_update_record_renames_and_deallocate_spares_others_phpipam() {
    update_record_renames_and_deallocate_spares_others(Kind::Phpipam).await;
}

// ---------------------------------------------------------------------------------------------
// DNS failing: a wrong TSIG secret, a stopped BIND

/// A vRA allocate-ip while DNS fails: with `required`, the DNS server's answer naming the zone
/// and nothing left allocated in the backend; without, the address and `counted` results.
async fn allocate_while_dns_fails(
    kind: Kind,
    bind: &mut Bind,
    secret: &str,
    stop_bind: bool,
    required: bool,
    expect: &[&str],
    counted: &[&str],
) {
    let env = env(kind, bind, secret, required).await;
    let app = &env.app;
    let values = placeholders(app).await;
    if stop_bind {
        bind.stop();
    }
    let before = dns_updates(app, counted).await;
    let req = filled("allocate-ip", &values, &[]);
    let (status, body) = vra(app, "allocate-ip", &req).await;
    let owner = format!("vra:{}/nic0", values["resource"]);
    if required {
        assert!(
            status == StatusCode::BAD_GATEWAY || status == StatusCode::GATEWAY_TIMEOUT,
            "{kind:?}: {status} {body}"
        );
        let (message, _) = error_of(&body);
        for part in expect {
            assert!(
                message.contains(part),
                "{kind:?}: {part} missing: {message}"
            );
        }
        assert!(!message.contains(secret), "{message}");
        assert!(held_by(app, &owner).await.is_empty(), "{kind:?}");
        assert!(env.backend_holds().await.is_empty(), "{kind:?}");
        if !stop_bind {
            assert!(bind.lookup(MACHINE, RecordType::A).await.is_empty());
            assert!(bind.ptr("10.20.0.2").await.is_empty());
        }
    } else {
        assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");
        assert_eq!(
            body["ipAllocations"][0]["ipAddresses"],
            json!(["10.20.0.2"])
        );
        assert_eq!(held_by(app, &owner).await, ["10.20.0.2"]);
        let held: Vec<IpAddr> = vec!["10.20.0.2".parse().expect("ip")];
        assert_eq!(env.backend_holds().await, held, "{kind:?}");
        let after = dns_updates(app, counted).await;
        assert!(after > before, "{kind:?}: {counted:?} {before} → {after}");
    }
    env.app.stop().await;
}

async fn wrong_secret(kind: Kind) {
    let mut bind = Bind::start().await;
    for required in [true, false] {
        allocate_while_dns_fails(
            kind,
            &mut bind,
            WRONG_SECRET,
            false,
            required,
            &["allocate-ip", "lab.example.com", "NOTAUTH", "BADSIG"],
            &["rejected"],
        )
        .await;
    }
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_allocate_with_a_wrong_tsig_secret_embedded() {
    wrong_secret(Kind::Embedded).await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_allocate_with_a_wrong_tsig_secret_phpipam() {
    wrong_secret(Kind::Phpipam).await;
}

/// BIND stopped after the gateway started: no answer, so the configured timeout
/// (`timeout_ms` of `with_dns`, 1.5 s) ends each update; the test finishes because it is short.
async fn bind_stopped(kind: Kind) {
    for required in [true, false] {
        let mut bind = Bind::start().await;
        allocate_while_dns_fails(
            kind,
            &mut bind,
            KEY_SECRET,
            true,
            required,
            &["allocate-ip", "lab.example.com"],
            &["timeout", "error"],
        )
        .await;
    }
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_allocate_with_bind_stopped_embedded() {
    bind_stopped(Kind::Embedded).await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_allocate_with_bind_stopped_phpipam() {
    bind_stopped(Kind::Phpipam).await;
}

/// A machine that opted out of DNS (`ipamgw.dns = "false"`) at allocation stays out of DNS when
/// vRA updates its record (the update carries the same custom properties).
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_update_record_of_an_opted_out_machine_registers_nothing() {
    let bind = Bind::start().await;
    let env = env(Kind::Embedded, &bind, KEY_SECRET, true).await;
    let app = &env.app;
    let values = placeholders(app).await;
    let mut req = filled("allocate-ip", &values, &[]);
    req["resourceInfo"]["properties"]["ipamgw.dns"] = json!("false");
    vra_ok(app, "allocate-ip", &req).await;
    let mut update = filled("update-record", &values, &[("address", "10.20.0.2")]);
    // A value that is neither "true" nor "false": 400 naming the property, nothing changed.
    update["resourceInfo"]["properties"]["ipamgw.dns"] = json!("maybe");
    let (status, body) = vra(app, "update-record", &update).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        error_of(&body).1.as_deref(),
        Some("resourceInfo.properties.ipamgw.dns"),
        "{body}"
    );
    let rec = allocation_at(app, "10.20.0.2").await.expect("held");
    assert!(rec["mac"].is_null(), "{rec}");

    update["resourceInfo"]["properties"]["ipamgw.dns"] = json!("false");
    vra_ok(app, "update-record", &update).await;
    let rec = allocation_at(app, "10.20.0.2").await.expect("held");
    assert_eq!(
        (&rec["hostname"], &rec["mac"]),
        (&json!("bond-006"), &json!("00:50:56:aa:bb:cc")),
        "the record changes"
    );
    assert!(
        bind.lookup("bond-006.lab.example.com", RecordType::A)
            .await
            .is_empty(),
        "but nothing goes to DNS"
    );
    assert!(bind.ptr("10.20.0.2").await.is_empty());
    env.app.stop().await;
}
