//! `kind = "infoblox"`: the Infoblox NIOS WAPI backend's configuration and its validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use url::Url;

use crate::config::http::{
    ServiceAccount, http_base_url, http_transport, join_segments, service_account, tls_pin,
};
use crate::config::{ConfigError, ScalarValue, Secret, default_true, parse_cidr};

/// How the gateway authenticates to the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InfobloxAuthMode {
    /// `username` + `password`: HTTP Basic once, then the `ibapauth` session cookie.
    User,
    /// Each caller's own HTTP Basic credentials are a grid user's; `username`/`password`, when
    /// set, are used for calls without caller credentials (gateway clients, `check`).
    Passthrough,
}

/// What the gateway creates for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStyle {
    /// `record:host` (one object holds the address, the name and, with DHCP on, the MAC).
    #[default]
    Host,
    /// `fixedaddress` / `ipv6fixedaddress` (DHCP reservation, no DNS).
    FixedAddress,
    /// `record:a` / `record:aaaa` plus `record:ptr` (DNS only; no MAC).
    APtr,
}

impl RecordStyle {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordStyle::Host => "host",
            RecordStyle::FixedAddress => "fixed_address",
            RecordStyle::APtr => "a_ptr",
        }
    }
}

/// Where the owner of an allocation (or of a carved network) is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerMarker {
    /// An extensible attribute named `owner_ea` (must exist in the grid; searched with `*EA=`).
    #[default]
    Ea,
    /// `[ipamgw-owner:<owner>]` at the end of the object's comment (searched with `comment~=`).
    Comment,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InfobloxConfig {
    /// Grid master URL, e.g. `https://gm.example.com` (a trailing `/wapi/v…` is dropped).
    pub url: String,
    /// WAPI version, e.g. `2.12` (the path is `/wapi/v2.12/`).
    #[serde(default = "default_wapi_version")]
    pub wapi_version: String,
    #[serde(default = "default_infoblox_auth")]
    pub auth: InfobloxAuthMode,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// PEM bundle of extra CAs to trust (grids often carry an internal CA's certificate).
    pub ca_file: Option<PathBuf>,
    /// TLS certificate verification. Turn off only for a lab.
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// Accept exactly the certificate with this SHA-256 fingerprint (`SHA256:AB:CD:…`) instead of
    /// a chain to a trusted root: an appliance's self-signed certificate.
    pub tls_fingerprint: Option<String>,
    #[serde(default = "default_infoblox_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Total time of one HTTP call to the grid.
    #[serde(default = "default_infoblox_timeout")]
    pub timeout_secs: u64,
    /// Network views whose networks are exposed; each is an address space.
    #[serde(default = "default_network_views")]
    pub network_views: Vec<String>,
    /// DNS view of host, A and PTR records.
    #[serde(default = "default_view")]
    pub dns_view: String,
    #[serde(default)]
    pub record_style: RecordStyle,
    /// Register host records in DNS (`configure_for_dns`); needs an authoritative zone for the
    /// names. A+PTR records are DNS records whatever this says.
    #[serde(default)]
    pub configure_for_dns: bool,
    /// `[dns.<name>]` section registering this backend's names through RFC 2136. Refused while
    /// the record style registers DNS itself (`a_ptr`, or `host` with `configure_for_dns`)
    /// unless `dns_override = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// Register through `dns` even though the grid registers DNS too.
    #[serde(default)]
    pub dns_override: bool,
    /// Serve host addresses by DHCP (`configure_for_dhcp`) when their MAC is known.
    #[serde(default)]
    pub configure_for_dhcp: bool,
    /// Only networks carrying these extensible attributes are exposed (`"vRA-Enabled" = "true"`
    /// searches `*vRA-Enabled=true`). Carved networks get them too. Empty = every network.
    #[serde(default)]
    pub network_filter: BTreeMap<String, ScalarValue>,
    /// Network containers used as blocks: those carrying these extensible attributes …
    #[serde(default)]
    pub block_filter: BTreeMap<String, ScalarValue>,
    /// … and those with these CIDRs. Both empty = no blocks.
    #[serde(default)]
    pub blocks: Vec<String>,
    #[serde(default)]
    pub owner_marker: OwnerMarker,
    /// Extensible attribute (type String) holding the owner when `owner_marker = "ea"`.
    #[serde(default = "default_owner_ea")]
    pub owner_ea: String,
    /// How listed networks get their free-address count (the Avi contract and vRA's
    /// `freeAddresses` report it): `"utilization"` (default; read from the networks' own
    /// `utilization` field in the same paged listing: O(pages) requests, approximate),
    /// `"exact"` (one `ipv4address`/`ipv6address` search per network and listing: O(networks)
    /// requests) or `"off"` (no count). Parsed in validation so a bad value names this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_counts: Option<String>,
    /// Deprecated spelling of `free_counts`: `true` = `"exact"`, `false` = `"off"`. Not together
    /// with `free_counts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_free: Option<bool>,
    /// Extensible attribute holding a network's VLAN number (read only; absent = no VLAN).
    #[serde(default = "default_vlan_ea")]
    pub vlan_ea: String,
    /// Extensible attribute holding a network's gateway when it has no DHCP `routers` option
    /// (IPv6 networks have none; read only).
    #[serde(default = "default_gateway_ea")]
    pub gateway_ea: String,
}

fn default_wapi_version() -> String {
    "2.12".into()
}
fn default_infoblox_auth() -> InfobloxAuthMode {
    InfobloxAuthMode::User
}
fn default_infoblox_connect_timeout() -> u64 {
    5
}
fn default_infoblox_timeout() -> u64 {
    30
}
fn default_network_views() -> Vec<String> {
    vec!["default".into()]
}
fn default_view() -> String {
    "default".into()
}
fn default_owner_ea() -> String {
    "ipamgw-owner".into()
}
fn default_vlan_ea() -> String {
    "VLAN".into()
}
fn default_gateway_ea() -> String {
    "Gateway".into()
}

/// How the free addresses of listed networks are counted (`free_counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FreeCounts {
    /// From each IPv4 network's `utilization` (percent; INFERRED from the WAPI object reference,
    /// not in the contract), asked for in the paged listing itself: no request per network.
    /// NIOS refreshes utilization periodically, so the count is approximate; absent or
    /// unreadable = unknown.
    #[default]
    Utilization,
    /// One `ipv4address` / `ipv6address` search per network and listing: exact, O(networks).
    Exact,
    /// No count.
    Off,
}

impl FreeCounts {
    pub const NAMES: &'static str = "\"utilization\", \"exact\" or \"off\"";

    pub fn as_str(&self) -> &'static str {
        match self {
            FreeCounts::Utilization => "utilization",
            FreeCounts::Exact => "exact",
            FreeCounts::Off => "off",
        }
    }

    fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "utilization" => Ok(FreeCounts::Utilization),
            "exact" => Ok(FreeCounts::Exact),
            "off" => Ok(FreeCounts::Off),
            _ => Err(ConfigError::new(
                key,
                format!(
                    "'{text}' is not a free-count mode (expected {})",
                    Self::NAMES
                ),
            )),
        }
    }
}

/// A grid user.
pub type InfobloxUser = ServiceAccount;

#[derive(Debug, Clone)]
pub enum InfobloxAuth {
    User(InfobloxUser),
    Passthrough { fallback: Option<InfobloxUser> },
}

/// Validated Infoblox settings: URL checked, secrets resolved, CA bundle read, filters parsed.
#[derive(Debug, Clone)]
pub struct InfobloxSettings {
    /// Grid URL without a trailing slash.
    pub base_url: Url,
    /// `2.12` (no `v`).
    pub wapi_version: String,
    pub auth: InfobloxAuth,
    pub ca_pem: Option<Vec<u8>>,
    pub verify_tls: bool,
    /// Exactly this certificate is accepted (`tls_fingerprint`).
    pub tls_fingerprint: Option<crate::backends::tls::CertFingerprint>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub network_views: Vec<String>,
    pub dns_view: String,
    pub record_style: RecordStyle,
    pub configure_for_dns: bool,
    pub configure_for_dhcp: bool,
    /// (EA name, value) pairs, all required.
    pub network_filter: Vec<(String, String)>,
    pub block_filter: Vec<(String, String)>,
    pub blocks: Vec<IpNet>,
    pub owner_marker: OwnerMarker,
    pub owner_ea: String,
    pub vlan_ea: String,
    pub gateway_ea: String,
    pub free_counts: FreeCounts,
}

impl InfobloxSettings {
    /// `{base_url}wapi/v{version}`, without a trailing slash: request paths go under it.
    pub fn wapi_base(&self) -> String {
        join_segments(
            &self.base_url,
            &["wapi", &format!("v{}", self.wapi_version)],
        )
    }
}

fn check_ea_name(key: &str, name: &str) -> Result<String, ConfigError> {
    let n = name.trim();
    if n.is_empty() || n.len() > 128 || n.chars().any(|c| c.is_control() || "=&*~".contains(c)) {
        return Err(ConfigError::new(
            key,
            format!("'{name}' is not an extensible attribute name (1-128 characters, no = & * ~)"),
        ));
    }
    Ok(n.to_owned())
}

fn ea_filter(
    key: &str,
    map: &BTreeMap<String, ScalarValue>,
) -> Result<Vec<(String, String)>, ConfigError> {
    map.iter()
        .map(|(name, value)| {
            let k = format!("{key}.\"{name}\"");
            let name = check_ea_name(&k, name)?;
            let value = match value {
                ScalarValue::Bool(b) => b.to_string(),
                other => other.as_text(),
            };
            if value.is_empty() {
                return Err(ConfigError::new(k, "must not be empty"));
            }
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn validate_infoblox(
    key: &str,
    p: &InfobloxConfig,
) -> Result<InfobloxSettings, ConfigError> {
    // A pasted `…/wapi/v2.12/` is not part of the root.
    let base_url = http_base_url(key, &p.url, "username/password", |path| {
        path.iter().position(|s| s.starts_with("wapi"))
    })?;
    let version = p.wapi_version.trim().trim_start_matches(['v', 'V']);
    let parts: Vec<&str> = version.split('.').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|x| x.is_empty() || !x.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(ConfigError::new(
            format!("{key}.wapi_version"),
            format!(
                "'{}' is not a WAPI version (e.g. 2.12 or 2.12.3)",
                p.wapi_version
            ),
        ));
    }
    let user =
        |required: bool| service_account(key, p.username.as_ref(), p.password.as_ref(), required);
    let auth = match p.auth {
        InfobloxAuthMode::User => match user(true)? {
            Some(u) => InfobloxAuth::User(u),
            None => {
                return Err(ConfigError::new(
                    format!("{key}.username"),
                    "required when auth = \"user\"",
                ));
            }
        },
        InfobloxAuthMode::Passthrough => InfobloxAuth::Passthrough {
            fallback: user(false)?,
        },
    };
    let ca_pem = http_transport(
        key,
        p.ca_file.as_deref(),
        p.connect_timeout_secs,
        p.timeout_secs,
    )?;
    let tls_fingerprint = tls_pin(
        key,
        p.tls_fingerprint.as_deref(),
        p.ca_file.as_deref(),
        p.verify_tls,
    )?;
    if p.network_views.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.network_views"),
            "at least one network view is required (e.g. [\"default\"])",
        ));
    }
    let mut views: Vec<String> = Vec::new();
    for (i, v) in p.network_views.iter().enumerate() {
        let v = v.trim();
        if v.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.network_views[{i}]"),
                "must not be empty",
            ));
        }
        if views.iter().any(|o| o == v) {
            return Err(ConfigError::new(
                format!("{key}.network_views[{i}]"),
                format!("'{v}' is listed twice"),
            ));
        }
        views.push(v.to_owned());
    }
    let dns_view = p.dns_view.trim();
    if dns_view.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.dns_view"),
            "must not be empty",
        ));
    }
    let blocks = p
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| parse_cidr(&format!("{key}.blocks[{i}]"), b))
        .collect::<Result<Vec<_>, _>>()?;
    let owner_ea = match p.owner_marker {
        OwnerMarker::Ea => check_ea_name(&format!("{key}.owner_ea"), &p.owner_ea)?,
        OwnerMarker::Comment => p.owner_ea.trim().to_owned(),
    };
    let network_filter = ea_filter(&format!("{key}.network_filter"), &p.network_filter)?;
    if p.owner_marker == OwnerMarker::Ea
        && let Some((n, _)) = network_filter.iter().find(|(n, _)| *n == owner_ea)
    {
        return Err(ConfigError::new(
            format!("{key}.network_filter.\"{n}\""),
            "the owner extensible attribute cannot also be a network filter",
        ));
    }
    let free_counts = match (&p.free_counts, p.count_free) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{key}.count_free"),
                "cannot be set together with free_counts (count_free is its old spelling: \
                 true = \"exact\", false = \"off\"); keep free_counts only",
            ));
        }
        (Some(text), None) => FreeCounts::parse(&format!("{key}.free_counts"), text)?,
        (None, Some(true)) => FreeCounts::Exact,
        (None, Some(false)) => FreeCounts::Off,
        (None, None) => FreeCounts::default(),
    };
    Ok(InfobloxSettings {
        base_url,
        wapi_version: version.to_owned(),
        auth,
        ca_pem,
        verify_tls: p.verify_tls,
        tls_fingerprint,
        connect_timeout: Duration::from_secs(p.connect_timeout_secs),
        timeout: Duration::from_secs(p.timeout_secs),
        network_views: views,
        dns_view: dns_view.to_owned(),
        record_style: p.record_style,
        configure_for_dns: p.configure_for_dns,
        configure_for_dhcp: p.configure_for_dhcp,
        network_filter,
        block_filter: ea_filter(&format!("{key}.block_filter"), &p.block_filter)?,
        blocks,
        owner_marker: p.owner_marker,
        owner_ea,
        vlan_ea: check_ea_name(&format!("{key}.vlan_ea"), &p.vlan_ea)?,
        gateway_ea: check_ea_name(&format!("{key}.gateway_ea"), &p.gateway_ea)?,
        free_counts,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{BackendSettings, Settings};

    use super::*;

    const INFOBLOX: &str = r#"
        [clients.demo]
        password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
        backend = "grid"
        [backends.grid]
        kind = "infoblox"
        url = "https://gm.example.com/wapi/v2.12/"
        username = "svc-ipam"
        password = "ib-literal-456"
        network_views = ["default", "prod"]
        blocks = ["10.100.0.0/16"]
        [backends.grid.network_filter]
        "vRA-Enabled" = true
    "#;

    fn infoblox(text: &str) -> InfobloxSettings {
        let s = Settings::from_toml(text).expect("infoblox config");
        match &s.backends[0] {
            BackendSettings::Infoblox { settings, .. } => (**settings).clone(),
            other => panic!("infoblox expected, got {other:?}"),
        }
    }

    fn err(text: &str) -> ConfigError {
        Settings::from_toml(text).expect_err("config should be rejected")
    }

    #[test]
    fn infoblox_config_validates_with_defaults() {
        let p = infoblox(INFOBLOX);
        assert_eq!(
            p.base_url.as_str(),
            "https://gm.example.com/",
            "/wapi/… dropped"
        );
        assert_eq!(p.wapi_version, "2.12");
        assert_eq!(p.wapi_base(), "https://gm.example.com/wapi/v2.12");
        assert_eq!(p.network_views, ["default", "prod"]);
        assert_eq!(p.dns_view, "default");
        assert_eq!(p.record_style, RecordStyle::Host);
        assert!(!p.configure_for_dns && !p.configure_for_dhcp);
        assert_eq!(
            p.network_filter,
            [("vRA-Enabled".to_owned(), "true".to_owned())]
        );
        assert_eq!(p.blocks[0].to_string(), "10.100.0.0/16");
        assert_eq!(p.owner_marker, OwnerMarker::Ea);
        assert_eq!(p.owner_ea, "ipamgw-owner");
        assert!(matches!(&p.auth, InfobloxAuth::User(u) if u.username == "svc-ipam"));
        let s = Settings::from_toml(INFOBLOX).expect("valid");
        let printed = format!("{s:?} {}", s.to_toml().expect("print-config"));
        assert!(!printed.contains("ib-literal-456"), "{printed}");
    }

    #[test]
    fn infoblox_errors_name_the_key() {
        let cases = [
            (
                INFOBLOX.replace("https://gm", "ftp://gm"),
                "backends.grid.url",
            ),
            (
                INFOBLOX.replace("https://gm", "https://a:b@gm"),
                "backends.grid.url",
            ),
            (
                INFOBLOX.replace("password = \"ib-literal-456\"", ""),
                "backends.grid.password",
            ),
            (
                INFOBLOX.replace("username = \"svc-ipam\"", ""),
                "backends.grid.username",
            ),
            (
                INFOBLOX.replace("blocks = [", "wapi_version = \"two\"\nblocks = ["),
                "backends.grid.wapi_version",
            ),
            (
                INFOBLOX.replace("[\"default\", \"prod\"]", "[]"),
                "backends.grid.network_views",
            ),
            (
                INFOBLOX.replace("[\"default\", \"prod\"]", "[\"default\", \" \"]"),
                "backends.grid.network_views[1]",
            ),
            (
                INFOBLOX.replace("10.100.0.0/16", "10.100.0.0/33"),
                "backends.grid.blocks[0]",
            ),
            (
                INFOBLOX.replace("blocks = [", "timeout_secs = 0\nblocks = ["),
                "backends.grid.timeout_secs",
            ),
            (
                INFOBLOX.replace("blocks = [", "dns_view = \"\"\nblocks = ["),
                "backends.grid.dns_view",
            ),
            (
                INFOBLOX.replace("blocks = [", "owner_ea = \"a=b\"\nblocks = ["),
                "backends.grid.owner_ea",
            ),
            (
                INFOBLOX.replace(
                    "blocks = [",
                    "ca_file = \"/nonexistent/ca.pem\"\nblocks = [",
                ),
                "backends.grid.ca_file",
            ),
            (
                INFOBLOX.replace("\"vRA-Enabled\" = true", "\"vRA-Enabled\" = \"\""),
                "backends.grid.network_filter.\"vRA-Enabled\"",
            ),
            (
                INFOBLOX.replace(
                    "password = \"ib-literal-456\"",
                    "password = \"env:IPAMGW_TEST_NO_SUCH_INFOBLOX_PW\"",
                ),
                "backends.grid.password",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert_eq!(e.key, key, "{text}");
            assert!(!e.to_string().contains("ib-literal-456"), "{e}");
        }
    }

    #[test]
    fn infoblox_tls_fingerprint_is_read_leniently_and_each_mistake_names_the_key() {
        const PIN: &str = "SHA256:3A:1F:0C:9B:77:E2:51:D4:08:6E:AF:12:C3:95:4B:60:\
                           DE:21:8F:74:0A:B9:5C:E3:16:47:A8:2D:F0:93:6B:C1";
        let with = |value: &str| {
            INFOBLOX.replace(
                "blocks = [",
                &format!("tls_fingerprint = \"{value}\"\nblocks = ["),
            )
        };
        assert_eq!(infoblox(INFOBLOX).tls_fingerprint, None);
        let lower = PIN.trim_start_matches("SHA256:").to_ascii_lowercase();
        let pin = infoblox(&with(&lower)).tls_fingerprint.expect("pinned");
        assert_eq!(pin.to_string(), PIN);
        for (value, why) in [
            ("AB:CD".to_owned(), "has 2 bytes"),
            (
                format!("SHA256:{}", lower.replace(':', "-")),
                "'-' (character 10)",
            ),
        ] {
            let e = err(&with(&value));
            assert_eq!(e.key, "backends.grid.tls_fingerprint", "{value}: {e}");
            assert!(e.to_string().contains(why), "{e}");
        }
        let e = err(&with(PIN).replace("blocks = [", "verify_tls = false\nblocks = ["));
        assert_eq!(e.key, "backends.grid.tls_fingerprint", "{e}");
    }

    #[test]
    fn unknown_record_styles_are_named() {
        let e = err(&INFOBLOX.replace("blocks = [", "record_style = \"cname\"\nblocks = ["));
        assert!(e.key.starts_with("backends.grid"), "{e}");
        assert!(
            e.to_string().contains("cname") && e.to_string().contains("a_ptr"),
            "{e}"
        );
    }

    #[test]
    fn free_counts_default_to_utilization_and_the_old_count_free_still_works() {
        assert_eq!(infoblox(INFOBLOX).free_counts, FreeCounts::Utilization);
        for (line, want) in [
            ("free_counts = \"utilization\"", FreeCounts::Utilization),
            ("free_counts = \"exact\"", FreeCounts::Exact),
            ("free_counts = \"Off\"", FreeCounts::Off),
            ("count_free = true", FreeCounts::Exact),
            ("count_free = false", FreeCounts::Off),
        ] {
            let text = INFOBLOX.replace("blocks = [", &format!("{line}\nblocks = ["));
            assert_eq!(infoblox(&text).free_counts, want, "{line}");
        }
    }

    #[test]
    fn free_count_errors_name_the_key() {
        let e = err(&INFOBLOX.replace("blocks = [", "free_counts = \"fast\"\nblocks = ["));
        assert_eq!(e.key, "backends.grid.free_counts", "{e}");
        let text = e.to_string();
        assert!(
            text.contains("'fast'") && text.contains("utilization") && text.contains("exact"),
            "{text}"
        );
        let e = err(&INFOBLOX.replace(
            "blocks = [",
            "free_counts = \"exact\"\ncount_free = true\nblocks = [",
        ));
        assert_eq!(e.key, "backends.grid.count_free", "{e}");
        assert!(e.to_string().contains("free_counts"), "{e}");
        let e = err(&INFOBLOX.replace("blocks = [", "count_free = \"yes\"\nblocks = ["));
        assert!(e.key.starts_with("backends.grid"), "{e}");
    }

    #[test]
    fn infoblox_passthrough_takes_an_optional_service_account() {
        let text = INFOBLOX.replace(
            "username = \"svc-ipam\"",
            "auth = \"passthrough\"\nusername = \"svc-ipam\"",
        );
        assert!(matches!(
            infoblox(&text).auth,
            InfobloxAuth::Passthrough { fallback: Some(_) }
        ));
        let bare = text
            .replace("username = \"svc-ipam\"", "")
            .replace("password = \"ib-literal-456\"", "");
        assert!(matches!(
            infoblox(&bare).auth,
            InfobloxAuth::Passthrough { fallback: None }
        ));
    }
}
