//! `[dns.<name>]`: where and how the gateway registers names (RFC 2136 updates signed with TSIG).
//!
//! ```toml
//! [dns.lab]
//! servers = ["127.0.0.1:5353"]          # primary server(s), host:port, tried in order
//! key_name = "ipamgw-key"
//! algorithm = "hmac-sha256"             # or "hmac-sha512"
//! secret = "env:IPAMGW_DNS_SECRET"      # base64, as `tsig-keygen` prints it; literal, env: or file:
//! ttl = 300
//! forward_zones = ["lab.example.com"]  # the zones the gateway may update
//! reverse_zones = ["20.10.in-addr.arpa"]  # or leave out: derived from each network
//! ptr = true
//! required = true
//! timeout_ms = 2000
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::names;
use crate::config::{ConfigError, Secret};

/// The section as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub key_name: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    pub secret: Option<Secret>,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub forward_zones: Vec<String>,
    /// Empty: derived from each network (IPv4 /8 /16 /24, IPv6 nibbles).
    #[serde(default)]
    pub reverse_zones: Vec<String>,
    #[serde(default = "yes")]
    pub ptr: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_algorithm() -> String {
    "hmac-sha256".to_owned()
}
fn default_ttl() -> u32 {
    300
}
fn yes() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    2000
}

/// TSIG algorithms the gateway signs with (RFC 8945 §6: HMAC-SHA256 is mandatory to implement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// A server as configured: `192.0.2.53:53`, `[2001:db8::53]:53` or `ns1.example.com:53`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Ip(SocketAddr),
    Host(String, u16),
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Ip(a) => write!(f, "{a}"),
            ServerAddr::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// A validated `[dns.<name>]`: secret read and decoded, names in normal form.
#[derive(Clone)]
pub struct DnsSettings {
    pub name: String,
    pub servers: Vec<ServerAddr>,
    pub key_name: String,
    pub algorithm: TsigAlgorithm,
    /// The decoded TSIG key, base64-encoded again so it stays a [`SecretString`].
    pub(crate) secret: SecretString,
    pub ttl: u32,
    pub forward_zones: Vec<String>,
    /// `None`: derived from the network.
    pub reverse_zones: Option<Vec<String>>,
    pub ptr: bool,
    pub required: bool,
    pub timeout: Duration,
}

impl std::fmt::Debug for DnsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsSettings")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"[REDACTED]")
            .field("ttl", &self.ttl)
            .field("forward_zones", &self.forward_zones)
            .field("reverse_zones", &self.reverse_zones)
            .field("ptr", &self.ptr)
            .field("required", &self.required)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DnsSettings {
    /// The TSIG key bytes (decoded from the configured base64).
    pub(crate) fn key_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(self.secret.expose_secret())
            .unwrap_or_default()
    }
}

fn err(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::new(key, why)
}

fn name_err(e: names::NameError) -> ConfigError {
    ConfigError::new(e.field, e.why)
}

/// Validates `[dns.<name>]`; every error names its key (`dns.<name>.<field>`).
pub fn validate(name: &str, c: &DnsConfig) -> Result<DnsSettings, ConfigError> {
    let key = format!("dns.{name}");
    if c.servers.is_empty() {
        return Err(err(
            &format!("{key}.servers"),
            "at least one server (host:port) is required",
        ));
    }
    let mut servers = Vec::new();
    for (i, s) in c.servers.iter().enumerate() {
        servers.push(parse_server(&format!("{key}.servers[{i}]"), s)?);
    }
    let key_name_key = format!("{key}.key_name");
    if c.key_name.is_empty() {
        return Err(err(
            &key_name_key,
            "required: the TSIG key's name as the server knows it",
        ));
    }
    let key_name = names::validate(&key_name_key, &c.key_name).map_err(name_err)?;
    let algorithm = match c.algorithm.to_ascii_lowercase().trim_end_matches('.') {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(err(
                &format!("{key}.algorithm"),
                format!("unknown TSIG algorithm '{other}': use \"hmac-sha256\" or \"hmac-sha512\""),
            ));
        }
    };
    let secret_key = format!("{key}.secret");
    let Some(secret) = &c.secret else {
        return Err(err(
            &secret_key,
            "required: the TSIG key's secret (base64), literal, env:NAME or file:/path",
        ));
    };
    let raw = secret.resolve(&secret_key)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.expose_secret().trim())
        .map_err(|_| {
            err(
                &secret_key,
                "not base64: give the key's secret as tsig-keygen prints it",
            )
        })?;
    if decoded.len() < 16 {
        // RFC 8945 §6: keys shorter than half the HMAC output weaken it; BIND's keys are 32+.
        return Err(err(
            &secret_key,
            format!(
                "the key is {} bytes; at least 16 are required",
                decoded.len()
            ),
        ));
    }
    let secret = SecretString::from(base64::engine::general_purpose::STANDARD.encode(&decoded));
    if c.ttl == 0 || c.ttl > 2_147_483_647 {
        return Err(err(
            &format!("{key}.ttl"),
            "must be between 1 and 2147483647 seconds",
        ));
    }
    if c.forward_zones.is_empty() {
        return Err(err(
            &format!("{key}.forward_zones"),
            "list at least one zone the gateway may update",
        ));
    }
    let mut forward_zones: Vec<String> = Vec::new();
    for (i, z) in c.forward_zones.iter().enumerate() {
        let k = format!("{key}.forward_zones[{i}]");
        let z = names::validate(&k, z).map_err(name_err)?;
        if names::in_zone(&z, "in-addr.arpa") || names::in_zone(&z, "ip6.arpa") {
            return Err(err(
                &k,
                format!("'{z}' is a reverse zone: list it in reverse_zones"),
            ));
        }
        if forward_zones.contains(&z) {
            return Err(err(&k, format!("'{z}' is listed twice")));
        }
        forward_zones.push(z);
    }
    let reverse_zones = if c.reverse_zones.is_empty() {
        None
    } else {
        let mut zones: Vec<String> = Vec::new();
        for (i, z) in c.reverse_zones.iter().enumerate() {
            let k = format!("{key}.reverse_zones[{i}]");
            let z = names::validate_reverse_zone(&k, z).map_err(name_err)?;
            if zones.contains(&z) {
                return Err(err(&k, format!("'{z}' is listed twice")));
            }
            zones.push(z);
        }
        Some(zones)
    };
    if !(1..=60_000).contains(&c.timeout_ms) {
        return Err(err(
            &format!("{key}.timeout_ms"),
            "must be between 1 and 60000 milliseconds",
        ));
    }
    Ok(DnsSettings {
        name: name.to_owned(),
        servers,
        key_name,
        algorithm,
        secret,
        ttl: c.ttl,
        forward_zones,
        reverse_zones,
        ptr: c.ptr,
        required: c.required,
        timeout: Duration::from_millis(c.timeout_ms),
    })
}

fn parse_server(key: &str, s: &str) -> Result<ServerAddr, ConfigError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(err(key, format!("'{s}': port 0 is not a server port")));
        }
        return Ok(ServerAddr::Ip(a));
    }
    let shape = || {
        err(
            key,
            format!(
                "'{s}' is not host:port (like 192.0.2.53:53, [2001:db8::53]:53 or ns1.example.com:53)"
            ),
        )
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(shape)?;
    let port: u16 = port.parse().map_err(|_| shape())?;
    if port == 0 || host.contains(':') || host.starts_with('[') {
        return Err(shape());
    }
    let host = names::validate(key, host).map_err(name_err)?;
    Ok(ServerAddr::Host(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";

    fn base() -> toml::Table {
        toml::toml! {
            servers = ["127.0.0.1:5353", "ns1.example.com:53", "[::1]:53"]
            key_name = "ipamgw-key"
            secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="
            forward_zones = ["lab.example.com", "Example.ORG."]
        }
    }

    fn parse(t: toml::Table) -> Result<DnsSettings, ConfigError> {
        let c: DnsConfig = t.try_into().map_err(|e| err("dns.lab", format!("{e}")))?;
        validate("lab", &c)
    }

    #[test]
    fn defaults_and_normal_forms() {
        let s = parse(base()).expect("should succeed");
        assert_eq!(s.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(s.ttl, 300);
        assert!(s.ptr);
        assert!(!s.required);
        assert_eq!(s.timeout, Duration::from_millis(2000));
        assert_eq!(s.reverse_zones, None);
        assert_eq!(s.forward_zones, vec!["lab.example.com", "example.org"]);
        assert_eq!(
            s.servers[1],
            ServerAddr::Host("ns1.example.com".to_owned(), 53)
        );
        assert_eq!(s.key_bytes().len(), 32);
        let shown = format!("{s:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }

    #[test]
    fn every_mistake_names_its_key() {
        type Edit = fn(&mut toml::Table);
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                |t| {
                    t.remove("servers");
                },
                "dns.lab.servers",
                "at least one server",
            ),
            (
                |t| {
                    t.insert("servers".into(), vec!["127.0.0.1"].into());
                },
                "dns.lab.servers[0]",
                "not host:port",
            ),
            (
                |t| {
                    t.insert("servers".into(), vec!["ns1:x"].into());
                },
                "dns.lab.servers[0]",
                "not host:port",
            ),
            (
                |t| {
                    t.insert("servers".into(), vec!["127.0.0.1:0"].into());
                },
                "dns.lab.servers[0]",
                "port 0",
            ),
            (
                |t| {
                    t.insert("servers".into(), vec!["bad_host:53"].into());
                },
                "dns.lab.servers[0]",
                "contains '_'",
            ),
            (
                |t| {
                    t.remove("key_name");
                },
                "dns.lab.key_name",
                "required",
            ),
            (
                |t| {
                    t.insert("key_name".into(), "a..b".into());
                },
                "dns.lab.key_name",
                "empty label",
            ),
            (
                |t| {
                    t.insert("algorithm".into(), "hmac-md5".into());
                },
                "dns.lab.algorithm",
                "unknown TSIG algorithm 'hmac-md5'",
            ),
            (
                |t| {
                    t.remove("secret");
                },
                "dns.lab.secret",
                "required",
            ),
            (
                |t| {
                    t.insert("secret".into(), "not base64!".into());
                },
                "dns.lab.secret",
                "not base64",
            ),
            (
                |t| {
                    t.insert("secret".into(), "c2hvcnQ=".into());
                },
                "dns.lab.secret",
                "at least 16",
            ),
            (
                |t| {
                    t.insert("secret".into(), "env:IPAMGW_TEST_DNS_SECRET_UNSET".into());
                },
                "dns.lab.secret",
                "IPAMGW_TEST_DNS_SECRET_UNSET is not set",
            ),
            (
                |t| {
                    t.insert("secret".into(), "file:/nonexistent/dns-key".into());
                },
                "dns.lab.secret",
                "cannot read secret file",
            ),
            (
                |t| {
                    t.insert("ttl".into(), 0.into());
                },
                "dns.lab.ttl",
                "between 1",
            ),
            (
                |t| {
                    t.insert("forward_zones".into(), toml::Value::Array(vec![]));
                },
                "dns.lab.forward_zones",
                "at least one zone",
            ),
            (
                |t| {
                    t.insert(
                        "forward_zones".into(),
                        vec!["lab.example.com", "bad zone"].into(),
                    );
                },
                "dns.lab.forward_zones[1]",
                "contains ' '",
            ),
            (
                |t| {
                    t.insert("forward_zones".into(), vec!["a.com", "A.com."].into());
                },
                "dns.lab.forward_zones[1]",
                "listed twice",
            ),
            (
                |t| {
                    t.insert("forward_zones".into(), vec!["20.10.in-addr.arpa"].into());
                },
                "dns.lab.forward_zones[0]",
                "reverse zone",
            ),
            (
                |t| {
                    t.insert("reverse_zones".into(), vec!["lab.example.com"].into());
                },
                "dns.lab.reverse_zones[0]",
                "must end in .in-addr.arpa or .ip6.arpa",
            ),
            (
                |t| {
                    t.insert("reverse_zones".into(), vec!["300.10.in-addr.arpa"].into());
                },
                "dns.lab.reverse_zones[0]",
                "octets",
            ),
            (
                |t| {
                    t.insert(
                        "reverse_zones".into(),
                        vec!["20.10.in-addr.arpa", "20.10.in-addr.arpa."].into(),
                    );
                },
                "dns.lab.reverse_zones[1]",
                "listed twice",
            ),
            (
                |t| {
                    t.insert("timeout_ms".into(), 0.into());
                },
                "dns.lab.timeout_ms",
                "between 1 and 60000",
            ),
        ];
        for (edit, key, why) in cases {
            let mut t = base();
            edit(&mut t);
            let e = parse(t).expect_err("should be refused");
            assert_eq!(e.key, key, "{e}");
            assert!(e.why.contains(why), "{key}: {}", e.why);
            assert!(!e.to_string().contains(SECRET));
        }
    }

    /// The `[dns.<name>]` tables go through the same loading and validation as the whole file.
    #[test]
    fn dns_tables_in_the_config_file() {
        let with = |section: &str| {
            crate::config::Settings::from_toml(&format!(
                "{}\n{section}",
                crate::config::DEFAULT_CONFIG
            ))
        };
        let ok = with(&format!(
            "[dns.lab]\nservers = [\"127.0.0.1:5353\"]\nkey_name = \"ipamgw-key\"\n\
             secret = \"{SECRET}\"\nforward_zones = [\"lab.example.com\"]\nrequired = true\n"
        ))
        .expect("should succeed");
        assert_eq!(ok.dns.len(), 1);
        assert_eq!(ok.dns[0].name, "lab");
        assert!(ok.dns[0].required);
        let e = with(&format!(
            "[dns.lab]\nservers = [\"127.0.0.1:5353\"]\nkey_name = \"ipamgw-key\"\n\
             algorithm = \"hmac-md5\"\nsecret = \"{SECRET}\"\nforward_zones = [\"lab.example.com\"]\n"
        ))
        .expect_err("should be refused");
        assert_eq!(e.key, "dns.lab.algorithm");
        let e = with("[dns.Lab]\nservers = []\n").expect_err("should be refused");
        assert_eq!(e.key, "dns.Lab");
        let e = with("[dns.lab]\nserver = \"127.0.0.1:53\"\n").expect_err("should be refused");
        assert!(e.to_string().contains("server"), "{e}");
    }

    #[test]
    fn secret_from_a_file_and_sha512() {
        let dir = tempfile::tempdir().expect("should succeed");
        let p = dir.path().join("key");
        std::fs::write(&p, format!("{SECRET}\n")).expect("should succeed");
        let mut t = base();
        t.insert("secret".into(), format!("file:{}", p.display()).into());
        t.insert("algorithm".into(), "HMAC-SHA512".into());
        t.insert("reverse_zones".into(), vec!["20.10.in-addr.arpa."].into());
        let s = parse(t).expect("should succeed");
        assert_eq!(s.algorithm, TsigAlgorithm::HmacSha512);
        assert_eq!(s.reverse_zones, Some(vec!["20.10.in-addr.arpa".to_owned()]));
        assert_eq!(s.key_bytes().len(), 32);
    }
}
