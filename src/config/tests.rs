//! Tests of loading, layering and validation (each backend's own section is tested next to it).

use super::*;

const MINIMAL: &str = r#"
        [clients.demo]
        password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
        backend = "local"
        [backends.local]
        kind = "embedded"
        [[backends.local.networks]]
        name = "n1"
        cidr = "10.0.0.0/24"
        gateway = "10.0.0.1"
    "#;

fn err(text: &str) -> ConfigError {
    Settings::from_toml(text).expect_err("config should be rejected")
}

#[test]
fn the_embedded_default_is_valid() {
    let s = Settings::from_toml(DEFAULT_CONFIG).expect("default config");
    assert_eq!(s.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(
        s.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9464")
    );
    assert!(s.clients.iter().any(|c| c.name == "demo"));
}

/// A `[dns.lab]` section (the secret literal: tests set no environment).
const DNS_LAB: &str = r#"
        [dns.lab]
        servers = ["127.0.0.1:5353"]
        key_name = "ipamgw-key"
        secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
        forward_zones = ["lab.example.com"]
    "#;

#[test]
fn the_dns_example_validates_and_attaches_lab_to_local() {
    let text = include_str!("../../config/dns.example.toml");
    assert!(text.contains("secret = \"env:IPAMGW_DNS_SECRET\""));
    let text = text.replace(
        "env:IPAMGW_DNS_SECRET",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
    );
    let s = Settings::from_toml(&text).expect("dns example");
    let lab = s.dns.iter().find(|d| d.name == "lab").expect("dns.lab");
    assert!(lab.required && lab.ptr);
    assert_eq!(lab.forward_zones, ["lab.example.com"]);
    assert_eq!(
        lab.reverse_zones.as_deref(),
        Some(
            &[
                "20.10.in-addr.arpa".to_owned(),
                "0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa".to_owned()
            ][..]
        )
    );
    assert_eq!(s.dns_attach["local"].default.as_deref(), Some("lab"));
}

#[test]
fn dns_attach_names_an_existing_section() {
    let attached = MINIMAL.replace("kind = \"embedded\"", "kind = \"embedded\"\ndns = \"lab\"");
    let e = err(&attached);
    assert_eq!(e.key, "backends.local.dns");
    assert!(e.why.contains("no [dns.lab] section"), "{e}");
    let s = Settings::from_toml(&format!("{attached}{DNS_LAB}")).expect("attached");
    assert_eq!(s.dns_attach["local"].default.as_deref(), Some("lab"));
    // Not attached: the section exists, nothing registers through it.
    let s = Settings::from_toml(&format!("{MINIMAL}{DNS_LAB}")).expect("unattached");
    assert!(s.dns_attach.is_empty());
}

#[test]
fn an_embedded_network_overrides_its_backends_dns_section() {
    let text = MINIMAL.replace(
        "gateway = \"10.0.0.1\"",
        "gateway = \"10.0.0.1\"\ndns = \"lab\"",
    );
    let s = Settings::from_toml(&format!("{text}{DNS_LAB}")).expect("override");
    let a = &s.dns_attach["local"];
    assert_eq!(a.default, None);
    assert_eq!(
        a.networks.get("default/10.0.0.0/24").map(String::as_str),
        Some("lab")
    );
    let e = err(&text.replace("dns = \"lab\"", "dns = \"nope\""));
    assert_eq!(e.key, "backends.local.networks[0].dns");
}

#[test]
fn an_infoblox_backend_that_registers_dns_itself_refuses_a_dns_section_unless_overridden() {
    let grid = |extra: &str| {
        format!(
            r#"
                [clients.demo]
                password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
                backend = "grid"
                [backends.grid]
                kind = "infoblox"
                url = "https://gm.example.com"
                username = "svc"
                password = "pw"
                dns = "lab"
                {extra}
                {DNS_LAB}"#
        )
    };
    let e = err(&grid("record_style = \"a_ptr\""));
    assert_eq!(e.key, "backends.grid.dns");
    assert!(e.why.contains("dns_override = true"), "{e}");
    let e = err(&grid("configure_for_dns = true"));
    assert_eq!(e.key, "backends.grid.dns");
    let s = Settings::from_toml(&grid("record_style = \"a_ptr\"\ndns_override = true"))
        .expect("overridden");
    assert_eq!(s.dns_attach["grid"].default.as_deref(), Some("lab"));
    // Fixed addresses register no DNS: a section attaches without the override.
    let s =
        Settings::from_toml(&grid("record_style = \"fixed_address\"")).expect("fixed addresses");
    assert_eq!(s.dns_attach["grid"].default.as_deref(), Some("lab"));
}

#[test]
fn settings_carry_the_validated_server_cache_and_passthrough_values() {
    let text = format!(
        "{MINIMAL}\n[server]\nrequest_timeout_secs = 7\nshutdown_grace_secs = 3\n\
             readyz_timeout_secs = 2\nauth_failure_window_secs = 30\nauth_block_secs = 90\n\
             [cache]\nnetworks_ttl_secs = 11\nauth_ttl_secs = 12\n\
             [passthrough]\nbackend = \"local\"\n"
    );
    let s = Settings::from_toml(&text).expect("valid");
    assert_eq!(s.server.request_timeout, Duration::from_secs(7));
    assert_eq!(s.server.shutdown_grace, Duration::from_secs(3));
    assert_eq!(s.server.readyz_timeout, Duration::from_secs(2));
    assert_eq!(s.server.auth_failure_window, Duration::from_secs(30));
    assert_eq!(s.server.auth_block, Duration::from_secs(90));
    assert_eq!(s.server.state_dir, PathBuf::from("data"));
    assert_eq!(s.cache.networks_ttl, Duration::from_secs(11));
    assert_eq!(s.cache.auth_ttl, Duration::from_secs(12));
    assert_eq!(s.passthrough.as_deref(), Some("local"));
    // What print-config shows is the configuration as written.
    let printed = s.to_toml().expect("print-config");
    assert!(printed.contains("request_timeout_secs = 7"), "{printed}");
    assert!(!printed.contains("argon2id"), "{printed}");
}

#[test]
fn minimal_config_validates() {
    let s = Settings::from_toml(MINIMAL).expect("minimal");
    let BackendSettings::Embedded { networks, .. } = &s.backends[0] else {
        panic!("embedded backend expected");
    };
    // The gateway is the first host, so the range starts after it.
    assert_eq!(networks[0].range_start.to_string(), "10.0.0.2");
    assert_eq!(networks[0].range_end.to_string(), "10.0.0.254");
}

#[test]
fn the_range_starts_at_the_first_host_unless_the_gateway_is_there_or_it_is_given() {
    let range = |text: &str| {
        let s = Settings::from_toml(text).expect("valid");
        let BackendSettings::Embedded { networks, .. } = &s.backends[0] else {
            panic!("embedded backend expected");
        };
        (
            networks[0].range_start.to_string(),
            networks[0].range_end.to_string(),
        )
    };
    let elsewhere = MINIMAL.replace("gateway = \"10.0.0.1\"", "gateway = \"10.0.0.254\"");
    assert_eq!(range(&elsewhere), ("10.0.0.1".into(), "10.0.0.254".into()));
    let none = MINIMAL.replace("gateway = \"10.0.0.1\"", "");
    assert_eq!(range(&none).0, "10.0.0.1");
    let given = MINIMAL.replace(
        "gateway = \"10.0.0.1\"",
        "gateway = \"10.0.0.1\"\nrange_start = \"10.0.0.1\"",
    );
    assert_eq!(
        range(&given).0,
        "10.0.0.1",
        "an explicit range_start is kept"
    );
    let v6 = MINIMAL
        .replace("10.0.0.0/24", "2001:db8::/64")
        .replace("10.0.0.1", "2001:db8::1");
    assert_eq!(range(&v6).0, "2001:db8::2");
}

#[test]
fn bad_cidr_names_the_key() {
    let e = err(&MINIMAL.replace("10.0.0.0/24", "10.0.0.0/33"));
    assert_eq!(e.key, "backends.local.networks[0].cidr");
    let e = err(&MINIMAL.replace("10.0.0.0/24", "10.0.0.5/24"));
    assert!(e.why.contains("host bits"), "{e}");
}

#[test]
fn gateway_outside_the_network_is_rejected() {
    let e = err(&MINIMAL.replace("10.0.0.1\"", "10.9.0.1\""));
    assert_eq!(e.key, "backends.local.networks[0].gateway");
}

#[test]
fn unknown_backend_kind_names_the_key() {
    let e = err(&MINIMAL.replace("kind = \"embedded\"", "kind = \"netbox\""));
    assert!(e.key.contains("backends.local"), "{e}");
    assert!(e.to_string().contains("netbox"), "{e}");
}

#[test]
fn missing_secret_env_var_names_the_key() {
    let text = MINIMAL
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("password_hash") {
                "password_hash = \"env:IPAMGW_TEST_NO_SUCH_VAR\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let e = err(&text);
    assert_eq!(e.key, "clients.demo.password_hash");
    assert!(e.why.contains("IPAMGW_TEST_NO_SUCH_VAR is not set"), "{e}");
}

#[test]
fn unknown_keys_and_dangling_references_are_rejected() {
    let e = err(&format!("{MINIMAL}\n[server]\nlisten_port = 1\n"));
    assert!(e.to_string().contains("listen_port"), "{e}");
    let e = err(&MINIMAL.replace("backend = \"local\"", "backend = \"nope\""));
    assert_eq!(e.key, "clients.demo.backend");
}

#[test]
fn overlapping_networks_are_rejected() {
    let text = format!(
        "{MINIMAL}\n[[backends.local.networks]]\nname = \"n2\"\ncidr = \"10.0.0.128/25\"\n"
    );
    let e = err(&text);
    assert_eq!(e.key, "backends.local.networks[1].cidr");
    // A containing network after a contained one, and the same CIDR in another space.
    let text =
        format!("{MINIMAL}\n[[backends.local.networks]]\nname = \"n2\"\ncidr = \"10.0.0.0/16\"\n");
    assert_eq!(err(&text).key, "backends.local.networks[1].cidr");
    let text = format!(
        "{MINIMAL}\n[[backends.local.networks]]\nname = \"n2\"\ncidr = \"10.0.0.0/24\"\naddress_space = \"other\"\n"
    );
    assert!(Settings::from_toml(&text).is_ok());
}

#[test]
fn secrets_are_redacted_when_printed() {
    let s = Settings::from_toml(MINIMAL).expect("minimal");
    let printed = toml_like(&s.config);
    assert!(!printed.contains("argon2id"), "{printed}");
    assert!(!format!("{s:?}").contains("argon2id"));
}

fn toml_like(c: &Config) -> String {
    serde_json::to_string(c).expect("serialise")
}

#[test]
fn secrets_resolve_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("pw");
    std::fs::write(&p, "s3cret\n").expect("write");
    let s = Secret::from(format!("file:{}", p.display()).as_str());
    assert_eq!(s.resolve("k").expect("resolve").expose_secret(), "s3cret");
    let missing = Secret::from("file:/nonexistent/pw");
    assert_eq!(missing.resolve("k").expect_err("missing").key, "k");
}
