//! DNS registration against a real BIND (tests/api/support/bind.rs): A/AAAA and PTR added,
//! renamed and deleted with TSIG-signed RFC 2136 updates, and the server's refusals reported.
//!
//! The tests that need `named` run when it is installed and are reported as ignored, by name,
//! when it is not (build.rs sets `cfg(has_named)`); `named_is_installed_under_ci` fails under
//! `CI` when it is missing, so CI cannot pass by skipping them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use ipam_gateway::dns::{DnsConfig, DnsError, DnsSettings, DnsUpdater};

use crate::support::bind::{
    self, Bind, FORWARD_ZONE, KEY_SECRET, READONLY_ZONE, REVERSE_V4, REVERSE_V6, WRONG_SECRET,
};

fn settings_with(bind: &Bind, edit: impl FnOnce(&mut toml::Table)) -> DnsSettings {
    let mut t: toml::Table = toml::from_str(&format!(
        r#"
servers = ["{addr}"]
key_name = "ipamgw-key"
secret = "{KEY_SECRET}"
forward_zones = ["{FORWARD_ZONE}", "{READONLY_ZONE}"]
reverse_zones = ["{REVERSE_V4}", "{REVERSE_V6}"]
timeout_ms = 1500
"#,
        addr = bind.addr
    ))
    .expect("should succeed");
    edit(&mut t);
    let c: DnsConfig = t.try_into().expect("should succeed");
    ipam_gateway::dns::config::validate("lab", &c).expect("should succeed")
}

fn updater(bind: &Bind) -> DnsUpdater {
    DnsUpdater::new(settings_with(bind, |_| {}))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("should succeed")
}

async fn a(bind: &Bind, name: &str) -> Vec<String> {
    bind.lookup(name, RecordType::A).await
}
async fn aaaa(bind: &Bind, name: &str) -> Vec<String> {
    bind.lookup(name, RecordType::AAAA).await
}
#[test]
fn named_is_installed_under_ci() {
    if std::env::var_os("CI").is_some() {
        assert!(
            bind::named_path().is_some(),
            "CI is set and BIND's named is missing: the DNS tests would be skipped. \
             .ci/run installs bind9; install it (apt-get install bind9 bind9-dnsutils)."
        );
    }
    // Built without cfg(has_named) while named is there now: the DNS tests were compiled as
    // ignored. Under CI that is a skip too.
    if cfg!(not(has_named)) && std::env::var_os("CI").is_some() {
        panic!("the DNS tests were built as ignored (no named at build time) under CI");
    }
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn add_v4_registers_a_and_ptr() {
    let bind = Bind::start().await;
    let dns = updater(&bind);
    dns.add("vm-1.lab.example.com", ip("10.20.0.5"), None)
        .await
        .expect("should succeed");
    assert_eq!(a(&bind, "vm-1.lab.example.com").await, vec!["10.20.0.5"]);
    assert_eq!(bind.ptr("10.20.0.5").await, vec!["vm-1.lab.example.com."]);
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn add_v6_registers_aaaa_and_ptr() {
    let bind = Bind::start().await;
    let dns = updater(&bind);
    dns.add("VM-6.Lab.Example.com.", ip("2001:db8:20::10"), None)
        .await
        .expect("should succeed");
    assert_eq!(
        aaaa(&bind, "vm-6.lab.example.com").await,
        vec!["2001:db8:20::10"]
    );
    assert_eq!(
        bind.ptr("2001:db8:20::10").await,
        vec!["vm-6.lab.example.com."]
    );
    assert!(a(&bind, "vm-6.lab.example.com").await.is_empty());
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn retried_adds_and_deletes_converge() {
    let bind = Bind::start().await;
    let dns = updater(&bind);
    for _ in 0..3 {
        dns.add("vm-2.lab.example.com", ip("10.20.0.6"), None)
            .await
            .expect("should succeed");
    }
    assert_eq!(a(&bind, "vm-2.lab.example.com").await, vec!["10.20.0.6"]);
    assert_eq!(bind.ptr("10.20.0.6").await, vec!["vm-2.lab.example.com."]);
    for _ in 0..3 {
        // the second and third deletes find nothing: success
        dns.delete("vm-2.lab.example.com", ip("10.20.0.6"), None)
            .await
            .expect("should succeed");
    }
    assert!(a(&bind, "vm-2.lab.example.com").await.is_empty());
    assert!(bind.ptr("10.20.0.6").await.is_empty());
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn replace_renames_forward_and_reverse() {
    let bind = Bind::start().await;
    let dns = updater(&bind);
    for (addr, old, new) in [
        (
            "10.20.0.7",
            "old-4.lab.example.com",
            "new-4.lab.example.com",
        ),
        (
            "2001:db8:20::7",
            "old-6.lab.example.com",
            "new-6.lab.example.com",
        ),
    ] {
        let rtype = if addr.contains(':') {
            RecordType::AAAA
        } else {
            RecordType::A
        };
        dns.add(old, ip(addr), None).await.expect("should succeed");
        dns.replace(old, new, ip(addr), None)
            .await
            .expect("should succeed");
        assert!(bind.lookup(old, rtype).await.is_empty(), "{old}");
        assert_eq!(bind.lookup(new, rtype).await, vec![addr]);
        assert_eq!(bind.ptr(addr).await, vec![format!("{new}.")]);
        // a retried replace converges on the same records
        dns.replace(old, new, ip(addr), None)
            .await
            .expect("should succeed");
        assert_eq!(bind.lookup(new, rtype).await, vec![addr]);
        assert_eq!(bind.ptr(addr).await, vec![format!("{new}.")]);
    }
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn delete_leaves_the_names_other_addresses_and_others_ptrs() {
    let bind = Bind::start().await;
    let dns = updater(&bind);
    // The name has two addresses (someone else registered the second one).
    dns.add("web.lab.example.com", ip("10.20.0.8"), None)
        .await
        .expect("should succeed");
    dns.add("web.lab.example.com", ip("10.20.0.9"), None)
        .await
        .expect("should succeed");
    dns.add("web.lab.example.com", ip("2001:db8:20::9"), None)
        .await
        .expect("should succeed");
    // Another name's PTR at the same address as ours
    dns.add("other.lab.example.com", ip("10.20.0.8"), None)
        .await
        .expect("should succeed");
    assert_eq!(
        bind.ptr("10.20.0.8").await,
        vec!["other.lab.example.com.", "web.lab.example.com."]
    );

    dns.delete("web.lab.example.com", ip("10.20.0.8"), None)
        .await
        .expect("should succeed");
    assert_eq!(a(&bind, "web.lab.example.com").await, vec!["10.20.0.9"]);
    assert_eq!(
        aaaa(&bind, "web.lab.example.com").await,
        vec!["2001:db8:20::9"]
    );
    assert_eq!(bind.ptr("10.20.0.8").await, vec!["other.lab.example.com."]);
    assert_eq!(a(&bind, "other.lab.example.com").await, vec!["10.20.0.8"]);
    assert_eq!(bind.ptr("10.20.0.9").await, vec!["web.lab.example.com."]);
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn reverse_zone_derived_from_the_network() {
    let bind = Bind::start().await;
    let dns = DnsUpdater::new(settings_with(&bind, |t| {
        t.remove("reverse_zones");
    }));
    // 10.20.0.0/16 → 20.10.in-addr.arpa, which BIND serves
    dns.add(
        "vm-3.lab.example.com",
        ip("10.20.1.3"),
        "10.20.0.0/16".parse().ok(),
    )
    .await
    .expect("should succeed");
    assert_eq!(bind.ptr("10.20.1.3").await, vec!["vm-3.lab.example.com."]);
    // No network: the PTR zone cannot be derived, an error naming the field, nothing sent.
    let e = dns
        .add("vm-4.lab.example.com", ip("10.20.1.4"), None)
        .await
        .expect_err("should be refused");
    assert!(
        matches!(&e, DnsError::Name(n) if n.field == "network"),
        "{e}"
    );
    assert!(a(&bind, "vm-4.lab.example.com").await.is_empty());
    // A /24 derives 1.20.10.in-addr.arpa, a zone this BIND is not authoritative for: NOTAUTH.
    let e = dns
        .add(
            "vm-5.lab.example.com",
            ip("10.20.1.5"),
            "10.20.1.0/24".parse().ok(),
        )
        .await
        .expect_err("should be refused");
    let text = e.to_string();
    assert!(text.contains("zone `1.20.10.in-addr.arpa`"), "{text}");
    assert!(text.contains("NOTAUTH"), "{text}");
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn bad_names_are_refused_before_anything_is_sent() {
    let bind = Bind::start().await;
    let dns = updater(&bind);
    let e = dns
        .add("bad_name.lab.example.com", ip("10.20.0.10"), None)
        .await
        .expect_err("should be refused");
    assert!(matches!(&e, DnsError::Name(n) if n.field == "name"), "{e}");
    let e = dns
        .add("vm.example.org", ip("10.20.0.10"), None)
        .await
        .expect_err("should be refused");
    assert!(
        e.to_string()
            .contains("none of the zones dns.lab may update"),
        "{e}"
    );
    let e = dns
        .add("vm.lab.example.com", ip("10.99.0.10"), None)
        .await
        .expect_err("should be refused");
    assert!(
        matches!(&e, DnsError::Name(n) if n.field == "address"),
        "{e}"
    );
    // The PTR zone was wrong: the A record was not added either.
    assert!(a(&bind, "vm.lab.example.com").await.is_empty());
    assert!(bind.ptr("10.20.0.10").await.is_empty());
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn wrong_tsig_secret_names_the_zone_and_badsig() {
    let bind = Bind::start().await;
    let dns = DnsUpdater::new(settings_with(&bind, |t| {
        t.insert("secret".into(), WRONG_SECRET.into());
    }));
    let e = dns
        .add("vm-7.lab.example.com", ip("10.20.0.11"), None)
        .await
        .expect_err("should be refused");
    let text = e.to_string();
    assert!(matches!(e, DnsError::Rejected { .. }), "{text}");
    assert!(text.contains("NOTAUTH (TSIG BADSIG)"), "{text}");
    assert!(
        text.contains("zone `lab.example.com`") || text.contains("zone `20.10.in-addr.arpa`"),
        "{text}"
    );
    assert!(!text.contains(WRONG_SECRET));
    assert!(a(&bind, "vm-7.lab.example.com").await.is_empty());
    assert!(bind.ptr("10.20.0.11").await.is_empty());
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn unknown_key_name_is_badkey() {
    let bind = Bind::start().await;
    let dns = DnsUpdater::new(settings_with(&bind, |t| {
        t.insert("key_name".into(), "no-such-key".into());
        t.insert("ptr".into(), false.into());
    }));
    let e = dns
        .add("vm-8.lab.example.com", ip("10.20.0.12"), None)
        .await
        .expect_err("should be refused");
    let text = e.to_string();
    assert!(text.contains("zone `lab.example.com`"), "{text}");
    assert!(text.contains("NOTAUTH (TSIG BADKEY)"), "{text}");
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_zone_without_update_policy_is_refused() {
    let bind = Bind::start().await;
    let dns = DnsUpdater::new(settings_with(&bind, |t| {
        t.insert("ptr".into(), false.into());
    }));
    let e = dns
        .add("vm.readonly.example.com", ip("10.20.0.13"), None)
        .await
        .expect_err("should be refused");
    assert_eq!(
        e.to_string(),
        format!(
            "DNS update of zone `readonly.example.com` rejected by {}: REFUSED",
            bind.addr
        )
    );
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn a_stopped_server_is_a_timeout_within_the_configured_timeout() {
    let mut bind = Bind::start().await;
    let dns = DnsUpdater::new(settings_with(&bind, |t| {
        t.insert("timeout_ms".into(), 700.into());
    }));
    bind.stop();
    let started = Instant::now();
    let e = dns
        .add("vm-9.lab.example.com", ip("10.20.0.14"), None)
        .await
        .expect_err("should be refused");
    let took = started.elapsed();
    let text = e.to_string();
    assert!(matches!(e, DnsError::Timeout { .. }), "{text}");
    assert!(text.contains("within 700ms"), "{text}");
    assert!(text.contains("zone `"), "{text}");
    // Bounded by the configured timeout (plus scheduling slack), not by hickory's own default.
    assert!(took < Duration::from_millis(700 + 1000), "{took:?}");
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn check_reports_what_can_and_cannot_be_updated() {
    let bind = Bind::start().await;
    let checks = updater(&bind).check(&[]).await;
    let by_zone = |z: &str| {
        checks
            .iter()
            .find(|c| c.zone == z)
            .unwrap_or_else(|| panic!("{z} not checked: {checks:?}"))
    };
    for z in [FORWARD_ZONE, REVERSE_V4, REVERSE_V6] {
        let c = by_zone(z);
        assert!(c.updatable(), "{c:?}");
        assert_eq!(c.serial, Ok(1), "{c:?}");
    }
    let ro = by_zone(READONLY_ZONE);
    assert!(ro.serial.is_ok(), "{ro:?}");
    assert!(!ro.updatable());
    let e = ro
        .update
        .as_ref()
        .expect_err("should be refused")
        .to_string();
    assert!(e.contains("REFUSED") && e.contains(READONLY_ZONE), "{e}");
    // The probes changed nothing: the serials are unchanged.
    let again = updater(&bind).check(&[]).await;
    assert!(again.iter().all(|c| c.serial == Ok(1)), "{again:?}");

    // With a wrong secret, nothing is updatable and each zone says why.
    let wrong = DnsUpdater::new(settings_with(&bind, |t| {
        t.insert("secret".into(), WRONG_SECRET.into());
    }))
    .check(&[])
    .await;
    assert_eq!(wrong.len(), 4);
    for c in &wrong {
        assert!(!c.updatable(), "{c:?}");
        let e = c
            .serial
            .as_ref()
            .expect_err("should be refused")
            .to_string();
        assert!(e.contains("BADSIG") && e.contains(&c.zone), "{e}");
    }

    // Reverse zones derived from networks are checked too.
    let derived = DnsUpdater::new(settings_with(&bind, |t| {
        t.remove("reverse_zones");
    }))
    .check(&[
        "10.20.0.0/16".parse().expect("should succeed"),
        "10.30.0.0/16".parse().expect("should succeed"),
    ])
    .await;
    let z = |n: &str| {
        derived
            .iter()
            .find(|c| c.zone == n)
            .expect("should succeed")
    };
    assert!(z(REVERSE_V4).updatable());
    assert!(!z("30.10.in-addr.arpa").updatable());
}

#[tokio::test]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn updates_are_counted_by_result_with_their_latency() {
    let handle = ipam_gateway::telemetry::metrics_handle().expect("the metrics recorder");
    let bind = Bind::start().await;
    updater(&bind)
        .add("vm-m.lab.example.com", ip("10.20.0.20"), None)
        .await
        .expect("should succeed");
    DnsUpdater::new(settings_with(&bind, |t| {
        t.insert("secret".into(), WRONG_SECRET.into());
    }))
    .add("vm-n.lab.example.com", ip("10.20.0.21"), None)
    .await
    .expect_err("should be refused");
    let text = handle.render();
    for line in [
        "ipamgw_dns_updates_total{result=\"ok\"}",
        "ipamgw_dns_updates_total{result=\"rejected\"}",
        "ipamgw_dns_update_duration_seconds_bucket{result=\"ok\"",
        "ipamgw_dns_update_duration_seconds_bucket{result=\"rejected\"",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(!text.contains(KEY_SECRET) && !text.contains(WRONG_SECRET));
}
