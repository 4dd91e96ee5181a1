//! DNS registration wired into allocation, end to end against a real BIND
//! (tests/api/support/bind.rs) on the embedded backend: `backends.local.dns = "lab"`.
//! Same ignore scheme as tests/api/dns.rs (`cfg(has_named)`).

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::support::bind::{Bind, KEY_SECRET, WRONG_SECRET};
use crate::support::gateway_process::Run;
use crate::support::{AppOptions, BASE_CONFIG, TestApp, allocate, allocations_of, spawn_with};

const TIMEOUT_MS: u64 = 1500;

/// The embedded default config with `[dns.lab]` (this BIND) attached to the `local` backend.
async fn app_with_dns(bind: &Bind, secret: &str, required: bool) -> TestApp {
    spawn_with(AppOptions {
        config: with_dns(&BASE_CONFIG, "embedded", bind, secret, required),
        metrics: true,
        ..AppOptions::default()
    })
    .await
}

/// `config` with `[dns.lab]` (this BIND) attached to its backend of `kind`.
pub(crate) fn with_dns(
    config: &str,
    kind: &str,
    bind: &Bind,
    secret: &str,
    required: bool,
) -> String {
    crate::support::dns_lab::with_dns(config, kind, bind.addr, secret, required, TIMEOUT_MS)
}

async fn ptr(bind: &Bind, addr: &str) -> Vec<String> {
    let ip = addr.parse().expect("address");
    bind.lookup(&ipam_gateway::dns::names::reverse_name(ip), RecordType::PTR)
        .await
}

async fn metrics(app: &TestApp) -> String {
    let url = app.metrics_url.as_deref().expect("metrics on");
    reqwest::get(url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn allocate_registers_a_new_hostname_renames_and_release_deletes_only_its_records() {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, KEY_SECRET, true).await;
    let net = app.network_id("lab-servers").await;
    let (status, a) = allocate(
        &app,
        json!({"owner": "vm-1", "hostname": "vm-1", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["address"], "10.20.0.2");
    // Qualified with the network's domain (lab-servers: lab.example.com).
    assert_eq!(
        bind.lookup("vm-1.lab.example.com", RecordType::A).await,
        ["10.20.0.2"]
    );
    assert_eq!(ptr(&bind, "10.20.0.2").await, ["vm-1.lab.example.com."]);
    // A retried allocation converges on the same address and records.
    let (status, again) = allocate(
        &app,
        json!({"owner": "vm-1", "hostname": "vm-1", "networks": [net]}),
    )
    .await;
    assert_eq!((status, &again["address"]), (201, &json!("10.20.0.2")));
    assert_eq!(
        bind.lookup("vm-1.lab.example.com", RecordType::A).await,
        ["10.20.0.2"]
    );

    let id = a["id"].as_str().expect("id");
    let r = app
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"hostname": "web-1"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    assert!(
        bind.lookup("vm-1.lab.example.com", RecordType::A)
            .await
            .is_empty()
    );
    assert_eq!(
        bind.lookup("web-1.lab.example.com", RecordType::A).await,
        ["10.20.0.2"]
    );
    assert_eq!(ptr(&bind, "10.20.0.2").await, ["web-1.lab.example.com."]);

    // Someone else's record for the same name at another address survives the release.
    let other = ipam_gateway::dns::DnsUpdater::new(
        app.ipam
            .dns()
            .sections("local")
            .first()
            .expect("attached")
            .settings()
            .clone(),
    );
    other
        .add(
            "web-1.lab.example.com",
            "10.20.0.99".parse().expect("ip"),
            None,
        )
        .await
        .expect("other record");
    let r = app
        .delete(&format!("/api/v1/allocations/{id}"))
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        bind.lookup("web-1.lab.example.com", RecordType::A).await,
        ["10.20.0.99"]
    );
    assert!(ptr(&bind, "10.20.0.2").await.is_empty());
    assert_eq!(ptr(&bind, "10.20.0.99").await, ["web-1.lab.example.com."]);
    assert_eq!(allocations_of(&app, "vm-1").await, json!([]));
    app.stop().await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_bad_hostname_is_a_400_naming_the_field_and_takes_no_address() {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, KEY_SECRET, true).await;
    let net = app.network_id("lab-servers").await;
    for bad in ["bad_name!", "-lead", &"x".repeat(64)] {
        let (status, e) = allocate(
            &app,
            json!({"owner": "vm-bad", "hostname": bad, "networks": [net]}),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"]["field"], "hostname", "{e}");
        assert_eq!(allocations_of(&app, "vm-bad").await, json!([]), "{bad}");
    }
    // Not in a zone dns.lab may update: refused, the address taken for it given back.
    let (status, e) = allocate(
        &app,
        json!({"owner": "vm-out", "hostname": "vm.elsewhere.org", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("zones"),
        "{e}"
    );
    assert_eq!(allocations_of(&app, "vm-out").await, json!([]));
    app.stop().await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_wrong_tsig_secret_fails_a_required_allocation_and_leaves_nothing_allocated() {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, WRONG_SECRET, true).await;
    let net = app.network_id("lab-servers").await;
    let (status, e) = allocate(
        &app,
        json!({"owner": "vm-2", "hostname": "vm-2", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 502, "{e}");
    let msg = e["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("lab.example.com") && msg.contains("NOTAUTH"),
        "{e}"
    );
    assert_eq!(allocations_of(&app, "vm-2").await, json!([]));
    assert!(
        bind.lookup("vm-2.lab.example.com", RecordType::A)
            .await
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_wrong_tsig_secret_is_counted_when_dns_is_not_required() {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, WRONG_SECRET, false).await;
    let net = app.network_id("lab-servers").await;
    let (status, a) = allocate(
        &app,
        json!({"owner": "vm-3", "hostname": "vm-3", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(
        allocations_of(&app, "vm-3").await[0]["address"],
        a["address"]
    );
    let m = metrics(&app).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("ipamgw_dns_updates_total{result=\"rejected\"}")),
        "{m}"
    );
    app.stop().await;
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn bind_stopped_fails_a_required_allocation_within_the_timeout_or_counts_it() {
    for required in [true, false] {
        let mut bind = Bind::start().await;
        let app = app_with_dns(&bind, KEY_SECRET, required).await;
        let net = app.network_id("lab-servers").await;
        bind.stop();
        let started = Instant::now();
        let (status, body) = allocate(
            &app,
            json!({"owner": "vm-4", "hostname": "vm-4", "networks": [net]}),
        )
        .await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(2),
            "{took:?}"
        );
        if required {
            assert!(status == 502 || status == 504, "{status}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("lab.example.com"),
                "{body}"
            );
            assert_eq!(allocations_of(&app, "vm-4").await, json!([]));
        } else {
            assert_eq!(status, 201, "{body}");
            assert_eq!(
                allocations_of(&app, "vm-4").await[0]["address"],
                body["address"]
            );
            let m = metrics(&app).await;
            assert!(
                m.lines().any(
                    |l| l.starts_with("ipamgw_dns_updates_total{result=\"timeout\"}")
                        || l.starts_with("ipamgw_dns_updates_total{result=\"error\"}")
                ),
                "{m}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_allocate_registers_the_machines_name_and_deallocate_removes_it() {
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, KEY_SECRET, true).await;
    vra_round_trip(&bind, &app).await;
    app.stop().await;
}

/// The same on the phpIPAM fake (the lab topology of tests/api/support/matrix.rs: the subnet's
/// domain comes from its `custom_dnsDomain` field).
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn vra_allocate_registers_and_deallocate_removes_on_phpipam() {
    use crate::support::matrix::{phpipam_config, seed_phpipam};
    use crate::support::phpipam_fake::{FakePhpipam, FakeState};
    let bind = Bind::start().await;
    let mut state = FakeState::empty();
    let lab = seed_phpipam(&mut state);
    let fake = FakePhpipam::start_with(state).await;
    let config = with_dns(
        &phpipam_config(&fake.url, &lab),
        "phpipam",
        &bind,
        KEY_SECRET,
        true,
    );
    let app = spawn_with(AppOptions {
        config,
        ..AppOptions::default()
    })
    .await;
    vra_round_trip(&bind, &app).await;
    app.stop().await;
}

async fn vra_round_trip(bind: &Bind, app: &TestApp) {
    use crate::vra_common::{filled, placeholders, vra_ok};
    let values = placeholders(app).await;
    let out = vra_ok(app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    assert_eq!(out["ipAllocations"][0]["ipAddresses"], json!(["10.20.0.2"]));
    // resourceInfo's host name, qualified with the range's domain.
    let name = "external-ipam-it-mcm-323412.lab.example.com";
    assert_eq!(bind.lookup(name, RecordType::A).await, ["10.20.0.2"]);
    assert_eq!(ptr(bind, "10.20.0.2").await, [format!("{name}.")]);

    let free = filled("deallocate-ip", &values, &[("address", "10.20.0.2")]);
    vra_ok(app, "deallocate-ip", &free).await;
    assert!(bind.lookup(name, RecordType::A).await.is_empty());
    assert!(ptr(bind, "10.20.0.2").await.is_empty());
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_vra_machine_opts_out_with_its_ipamgw_dns_property() {
    use crate::vra_common::{error_of, filled, held_by, placeholders, vra, vra_ok};
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, KEY_SECRET, true).await;
    let values = placeholders(&app).await;
    let mut req = filled("allocate-ip", &values, &[]);
    req["resourceInfo"]["properties"]["ipamgw.dns"] = json!("maybe");
    let (status, body) = vra(&app, "allocate-ip", &req).await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        error_of(&body)
            .0
            .contains("resourceInfo.properties.ipamgw.dns"),
        "{body}"
    );
    let owner = format!("vra:{}/nic0", values["resource"]);
    assert!(held_by(&app, &owner).await.is_empty());

    req["resourceInfo"]["properties"]["ipamgw.dns"] = json!("false");
    let out = vra_ok(&app, "allocate-ip", &req).await;
    assert_eq!(out["ipAllocations"][0]["ipAddresses"], json!(["10.20.0.2"]));
    assert!(
        bind.lookup("external-ipam-it-mcm-323412.lab.example.com", RecordType::A)
            .await
            .is_empty()
    );
    assert!(ptr(&bind, "10.20.0.2").await.is_empty());
    app.stop().await;
}

/// `ipam-gateway check` reports each zone of the attached section: updatable with the right
/// key; with the wrong one, `NOT updatable` with BIND's answer and exit 3 (`required = true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn check_reports_what_the_attached_dns_section_can_update() {
    let bind = Bind::start().await;
    for (secret, code) in [(KEY_SECRET, 0), (WRONG_SECRET, 3)] {
        let dir = tempfile::tempdir().expect("dir");
        let config = with_dns(&BASE_CONFIG, "embedded", &bind, secret, true).replacen(
            "state_dir = \"data\"",
            &format!("state_dir = \"{}\"", dir.path().display()),
            1,
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).expect("config");
        let out = Run::new(["--config"])
            .arg(&path)
            .arg("check")
            .in_dir(dir.path())
            .run_async()
            .await;
        let (stdout, stderr) = (&out.stdout, &out.stderr);
        assert_eq!(out.code, Some(code), "{stdout}\n{stderr}");
        for zone in [
            "lab.example.com",
            "20.10.in-addr.arpa",
            "0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        ] {
            let line = if code == 0 {
                format!("backend local: dns.lab: zone {zone} updatable (SOA serial ")
            } else {
                format!("backend local: dns.lab: zone {zone} NOT updatable: ")
            };
            assert!(stdout.contains(&line), "{line}\n{stdout}");
        }
        if code != 0 {
            assert!(stdout.contains("NOTAUTH"), "{stdout}");
        }
    }
}

/// A vRA machine name DNS cannot take: 400 naming vRA's field, no address taken.
#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_vra_host_name_dns_cannot_take_is_a_400_naming_resource_info() {
    use crate::vra_common::{error_of, filled, held_by, placeholders, vra};
    let bind = Bind::start().await;
    let app = app_with_dns(&bind, KEY_SECRET, true).await;
    let values = placeholders(&app).await;
    let mut req = filled("allocate-ip", &values, &[]);
    req["resourceInfo"]["name"] = json!("web_01 (copy)");
    let (status, body) = vra(&app, "allocate-ip", &req).await;
    assert_eq!(status.as_u16(), 400, "{body}");
    let (message, _) = error_of(&body);
    assert!(message.contains("resourceInfo.name"), "{body}");
    let owner = format!("vra:{}/nic0", values["resource"]);
    assert!(held_by(&app, &owner).await.is_empty());
    app.stop().await;
}
