//! Typed, layered, validated settings.
//!
//! Layers, lowest first: the embedded default (`config/ipam-gateway.toml`) or the file given with
//! `--config`, then `IPAMGW_…` environment variables (`IPAMGW_SERVER__LISTEN=0.0.0.0:8443`). Every
//! validation error names the key and the reason. Secrets are literal text, `env:NAME` or
//! `file:/path`, held as [`SecretString`] from the moment they are read.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::{BlockInfo, NetworkInfo, Tag};

mod infoblox;
mod inventory;
use infoblox::validate_infoblox;
pub use infoblox::{
    FreeCounts, InfobloxAuth, InfobloxAuthMode, InfobloxConfig, InfobloxSettings, InfobloxUser,
    OwnerMarker, RecordStyle,
};

/// The default configuration, compiled in: `ipam-gateway serve` with no `--config` runs on it.
pub const DEFAULT_CONFIG: &str = include_str!("../config/ipam-gateway.toml");

/// A configuration problem, always naming the key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("config key `{key}`: {why}")]
pub struct ConfigError {
    pub key: String,
    pub why: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, why: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            why: why.into(),
        }
    }
}

/// Where a secret lives: inline, in an environment variable, or in a file.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// Reads the secret. `key` is the config key, used in errors.
    pub fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        let spec = self.0.expose_secret();
        if let Some(name) = spec.strip_prefix("env:") {
            return match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                Ok(_) => Err(ConfigError::new(
                    key,
                    format!("environment variable {name} is empty"),
                )),
                Err(_) => Err(ConfigError::new(
                    key,
                    format!("environment variable {name} is not set"),
                )),
            };
        }
        if let Some(path) = spec.strip_prefix("file:") {
            return match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim_end().to_owned())),
                Ok(_) => Err(ConfigError::new(
                    key,
                    format!("secret file {path} is empty"),
                )),
                Err(e) => Err(ConfigError::new(
                    key,
                    format!("cannot read secret file {path}: {e}"),
                )),
            };
        }
        if spec.is_empty() {
            return Err(ConfigError::new(key, "must not be empty"));
        }
        Ok(self.0.clone())
    }

    /// What `print-config` and `Debug` show: references as written, literals redacted.
    fn display_form(&self) -> String {
        let spec = self.0.expose_secret();
        if spec.starts_with("env:") || spec.starts_with("file:") {
            spec.to_owned()
        } else {
            "[REDACTED]".to_owned()
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(SecretString::from(s))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.display_form())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display_form())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub clients: BTreeMap<String, ClientConfig>,
    #[serde(default)]
    pub passthrough: Option<PassthroughConfig>,
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// `[dns.<name>]`: DNS registration (RFC 2136), attached to a backend with its `dns` key.
    #[serde(default)]
    pub dns: BTreeMap<String, crate::dns::DnsConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where generated TLS material and embedded data files live (relative paths are relative to
    /// the working directory).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// How long `/readyz` waits for each backend's check.
    #[serde(default = "default_readyz_timeout")]
    pub readyz_timeout_secs: u64,
    /// Failed authentications from one client address within `auth_failure_window_secs` before
    /// that address is refused (429) for `auth_block_secs`. 0 turns the throttle off.
    #[serde(default = "default_auth_failure_limit")]
    pub auth_failure_limit: u32,
    #[serde(default = "default_auth_failure_window")]
    pub auth_failure_window_secs: u64,
    #[serde(default = "default_auth_block")]
    pub auth_block_secs: u64,
    #[serde(default)]
    pub tls: TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            state_dir: default_state_dir(),
            request_timeout_secs: default_request_timeout(),
            body_limit_bytes: default_body_limit(),
            shutdown_grace_secs: default_shutdown_grace(),
            readyz_timeout_secs: default_readyz_timeout(),
            auth_failure_limit: default_auth_failure_limit(),
            auth_failure_window_secs: default_auth_failure_window(),
            auth_block_secs: default_auth_block(),
            tls: TlsConfig::default(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_request_timeout() -> u64 {
    30
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_readyz_timeout() -> u64 {
    5
}
fn default_auth_failure_limit() -> u32 {
    10
}
fn default_auth_failure_window() -> u64 {
    60
}
fn default_auth_block() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Generate a self-signed certificate on first start and keep it in `state_dir/tls/`.
    SelfSigned,
    /// Use `cert_file` and `key_file`.
    Files,
    /// Plain HTTP. Only for a gateway behind a TLS-terminating proxy, or tests.
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "default_tls_mode")]
    pub mode: TlsMode,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Extra DNS names / IPs for the self-signed certificate (localhost, 127.0.0.1 and ::1 are
    /// always included).
    #[serde(default)]
    pub hostnames: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            mode: default_tls_mode(),
            cert_file: None,
            key_file: None,
            hostnames: Vec::new(),
        }
    }
}

fn default_tls_mode() -> TlsMode {
    TlsMode::SelfSigned
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: default_metrics_listen(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `RUST_LOG` overrides this.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a network listing is served from memory.
    #[serde(default = "default_networks_ttl")]
    pub networks_ttl_secs: u64,
    /// How long a verified client credential is remembered (by hash), sparing argon2 work.
    #[serde(default = "default_auth_ttl")]
    pub auth_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            networks_ttl_secs: default_networks_ttl(),
            auth_ttl_secs: default_auth_ttl(),
        }
    }
}

fn default_networks_ttl() -> u64 {
    60
}
fn default_auth_ttl() -> u64 {
    300
}

/// A gateway client: HTTP Basic user, bound to one backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// argon2 PHC string, from `ipam-gateway hash-password`.
    pub password_hash: Secret,
    pub backend: String,
}

/// Passthrough: Basic credentials that do not name a configured client are handed to this backend,
/// which verifies them itself (phpIPAM user, Infoblox user).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    pub backend: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    Embedded(EmbeddedConfig),
    Phpipam(Box<PhpipamConfig>),
    Infoblox(Box<InfobloxConfig>),
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Embedded(_) => "embedded",
            BackendConfig::Phpipam(_) => "phpipam",
            BackendConfig::Infoblox(_) => "infoblox",
        }
    }
}

/// How the gateway authenticates to phpIPAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhpipamAuthMode {
    /// `username` + `password` → token from `POST /api/{app}/user/`, kept and reused.
    User,
    /// The static app code of an `ssl_code` API app, sent as `phpipam-token`; no login.
    AppCode,
    /// Each caller's own HTTP Basic credentials are a phpIPAM user's; `username`/`password`, when
    /// set, are used for calls without caller credentials (gateway clients, `check`).
    Passthrough,
}

/// A section by name or numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SectionRef {
    Id(u64),
    Name(String),
}

/// A scalar written in TOML as a string, an integer or a boolean (`1`, `"1"`, `true`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ScalarValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl ScalarValue {
    /// The value as phpIPAM compares it (booleans are 0/1).
    pub fn as_text(&self) -> String {
        match self {
            ScalarValue::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
            ScalarValue::Int(i) => i.to_string(),
            ScalarValue::Text(t) => t.trim().to_owned(),
        }
    }
}

/// Which phpIPAM subnets a selector picks: explicit ids, and/or every subnet whose `field` equals
/// `value` (e.g. `custom_vRA_Range = 1`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSelectorConfig {
    pub field: Option<String>,
    pub value: Option<ScalarValue>,
    #[serde(default)]
    pub ids: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhpipamConfig {
    /// phpIPAM root URL, e.g. `https://ipam.example.com` or `https://host/phpipam` (no `/api`).
    pub url: String,
    /// The API app id (Administration → API).
    pub app_id: String,
    #[serde(default = "default_phpipam_auth")]
    pub auth: PhpipamAuthMode,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub app_code: Option<Secret>,
    /// PEM bundle of extra CAs to trust (internal CA).
    pub ca_file: Option<PathBuf>,
    /// TLS certificate verification. Turn off only for a lab.
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// Accept exactly the certificate with this SHA-256 fingerprint (`SHA256:AB:CD:…`) instead of
    /// a chain to a trusted root: an appliance's self-signed certificate.
    pub tls_fingerprint: Option<String>,
    #[serde(default = "default_phpipam_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Total time of one HTTP call to phpIPAM.
    #[serde(default = "default_phpipam_timeout")]
    pub timeout_secs: u64,
    /// Sections whose subnets are considered (names or ids); empty = every section.
    #[serde(default)]
    pub sections: Vec<SectionRef>,
    /// Subnets exposed as networks; empty = every subnet of the sections that is not a block or a
    /// folder.
    #[serde(default)]
    pub networks: SubnetSelectorConfig,
    /// Subnets used as blocks for on-demand networks; empty = none.
    #[serde(default)]
    pub blocks: SubnetSelectorConfig,
    /// Address field holding the gateway's owner marker: `owner` (phpIPAM's own field, 128
    /// characters) or a `custom_…` field.
    #[serde(default = "default_owner_field")]
    pub owner_field: String,
    /// Subnet custom field holding the DNS domain (e.g. `custom_dnsDomain`).
    pub dns_domain_field: Option<String>,
    /// Subnet custom field holding search domains (comma, semicolon or space separated).
    pub search_domains_field: Option<String>,
    /// `[dns.<name>]` section registering the names of this backend's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// How long gateway addresses and VLAN numbers (looked up by id) are remembered.
    #[serde(default = "default_phpipam_lookup_cache")]
    pub lookup_cache_secs: u64,
}

fn default_phpipam_auth() -> PhpipamAuthMode {
    PhpipamAuthMode::User
}
fn default_phpipam_connect_timeout() -> u64 {
    5
}
fn default_phpipam_timeout() -> u64 {
    30
}
fn default_owner_field() -> String {
    "owner".into()
}
fn default_phpipam_lookup_cache() -> u64 {
    3600
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// The redb data file; relative paths are inside `server.state_dir`.
    #[serde(default = "default_embedded_path")]
    pub path: PathBuf,
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    #[serde(default)]
    pub blocks: Vec<BlockConfig>,
    /// `[dns.<name>]` section registering the names of this backend's addresses (a network's
    /// own `dns` key overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

fn default_embedded_path() -> PathBuf {
    PathBuf::from("embedded.redb")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    pub cidr: String,
    pub description: Option<String>,
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    pub domain: Option<String>,
    #[serde(default)]
    pub search_domains: Vec<String>,
    #[serde(default = "default_space")]
    pub address_space: String,
    pub vlan: Option<u16>,
    /// First and last address to hand out (default: every usable host).
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `[dns.<name>]` section for this network's addresses, instead of the backend's `dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    pub name: String,
    pub cidr: String,
    pub description: Option<String>,
    #[serde(default = "default_space")]
    pub address_space: String,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    pub domain: Option<String>,
    #[serde(default)]
    pub search_domains: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_space() -> String {
    "default".into()
}

/// Settings after validation: addresses parsed, secrets resolved, references checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub clients: Vec<ClientSettings>,
    pub backends: Vec<BackendSettings>,
    /// Validated `[dns.<name>]` sections, by name.
    pub dns: Vec<crate::dns::DnsSettings>,
    /// Which `[dns.<name>]` section each backend (and network) registers names with.
    pub dns_attach: BTreeMap<String, DnsAttach>,
}

/// The DNS sections one backend registers names with: its own (`backends.<b>.dns`) and, for
/// networks the backend describes in config, each network's override (by backend-local id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAttach {
    pub default: Option<String>,
    pub networks: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub name: String,
    pub password_hash: SecretString,
    pub backend: String,
}

#[derive(Debug, Clone)]
pub enum BackendSettings {
    Embedded {
        name: String,
        path: PathBuf,
        networks: Vec<NetworkInfo>,
        blocks: Vec<BlockInfo>,
    },
    Phpipam {
        name: String,
        settings: Box<PhpipamSettings>,
    },
    Infoblox {
        name: String,
        settings: Box<InfobloxSettings>,
    },
}

impl BackendSettings {
    pub fn name(&self) -> &str {
        match self {
            BackendSettings::Embedded { name, .. }
            | BackendSettings::Phpipam { name, .. }
            | BackendSettings::Infoblox { name, .. } => name,
        }
    }
}

/// Validated phpIPAM settings: URL checked, secrets resolved, CA bundle read.
#[derive(Debug, Clone)]
pub struct PhpipamSettings {
    /// Root URL without a trailing slash; the API lives at `{base_url}/api/{app_id}/`.
    pub base_url: String,
    pub app_id: String,
    pub auth: PhpipamAuth,
    pub ca_pem: Option<Vec<u8>>,
    pub verify_tls: bool,
    /// Exactly this certificate is accepted (`tls_fingerprint`).
    pub tls_fingerprint: Option<crate::backends::tls::CertFingerprint>,
    pub connect_timeout: std::time::Duration,
    pub timeout: std::time::Duration,
    pub sections: Vec<SectionRef>,
    pub networks: SubnetSelector,
    pub blocks: SubnetSelector,
    pub owner_field: String,
    pub dns_domain_field: Option<String>,
    pub search_domains_field: Option<String>,
    pub lookup_cache_ttl: std::time::Duration,
}

/// A backend's own user: the gateway's service account on phpIPAM or the grid (the password never
/// leaves a `SecretString`).
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub username: String,
    pub password: SecretString,
}

/// The transport keys every HTTP backend section has: a readable PEM `ca_file` (returned) and
/// non-zero `connect_timeout_secs` / `timeout_secs`.
pub(crate) fn http_transport(
    key: &str,
    ca_file: Option<&Path>,
    connect_timeout_secs: u64,
    timeout_secs: u64,
) -> Result<Option<Vec<u8>>, ConfigError> {
    for (field, secs) in [
        ("connect_timeout_secs", connect_timeout_secs),
        ("timeout_secs", timeout_secs),
    ] {
        if secs == 0 {
            return Err(ConfigError::new(
                format!("{key}.{field}"),
                "must be at least 1",
            ));
        }
    }
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            format!("{key}.ca_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::new(
            format!("{key}.ca_file"),
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(Some(pem))
}

/// The `tls_fingerprint` key of an HTTP backend section (see [`CertFingerprint::parse`] for what
/// it accepts). The pin replaces chain validation, so it goes with neither `ca_file` (which would
/// be silently unused) nor `verify_tls = false` (which would contradict it).
///
/// [`CertFingerprint::parse`]: crate::backends::tls::CertFingerprint::parse
pub(crate) fn tls_pin(
    key: &str,
    text: Option<&str>,
    ca_file: Option<&Path>,
    verify_tls: bool,
) -> Result<Option<crate::backends::tls::CertFingerprint>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let field = format!("{key}.tls_fingerprint");
    let pin = crate::backends::tls::CertFingerprint::parse(text)
        .map_err(|why| ConfigError::new(&field, why))?;
    if ca_file.is_some() {
        return Err(ConfigError::new(
            field,
            "accepts exactly one certificate whatever its chain; ca_file would not be used \
             (remove one of them)",
        ));
    }
    if !verify_tls {
        return Err(ConfigError::new(
            field,
            "is a verification; it cannot go with verify_tls = false (remove one of them)",
        ));
    }
    Ok(Some(pin))
}

/// The `url` key of an HTTP backend section, its API path already cut off: http(s), a host, no
/// credentials (`credentials` says where they go instead), no query or fragment.
pub(crate) fn http_base_url(key: &str, url: &str, credentials: &str) -> Result<(), ConfigError> {
    let bad = |why: String| Err(ConfigError::new(format!("{key}.url"), why));
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        // Not echoed: a URL with another scheme may still carry credentials.
        return bad("must start with https:// or http://".into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return bad("has no host".into());
    }
    if authority.contains('@') {
        return bad(format!("must not contain credentials; use {credentials}"));
    }
    if rest.contains('?') || rest.contains('#') {
        return bad("must not contain a query or fragment".into());
    }
    Ok(())
}

/// A phpIPAM user.
pub type PhpipamUser = ServiceAccount;

/// Reads `username` and `password` of the backend section `key` as a pair: both, or (when not
/// `required` by `auth = "user"`) neither; one without the other names the missing key.
pub(crate) fn service_account(
    key: &str,
    username: Option<&Secret>,
    password: Option<&Secret>,
    required: bool,
) -> Result<Option<ServiceAccount>, ConfigError> {
    let missing = |field: &str, other: &str| {
        ConfigError::new(
            format!("{key}.{field}"),
            if required {
                "required when auth = \"user\"".to_owned()
            } else {
                format!("required when {other} is set")
            },
        )
    };
    match (username, password) {
        (Some(u), Some(pw)) => {
            let username = u.resolve(&format!("{key}.username"))?;
            let password = pw.resolve(&format!("{key}.password"))?;
            Ok(Some(ServiceAccount {
                username: username.expose_secret().trim().to_owned(),
                password,
            }))
        }
        (None, None) if !required => Ok(None),
        (None, _) => Err(missing("username", "password")),
        (Some(_), None) => Err(missing("password", "username")),
    }
}

#[derive(Debug, Clone)]
pub enum PhpipamAuth {
    User(PhpipamUser),
    AppCode(SecretString),
    Passthrough { fallback: Option<PhpipamUser> },
}

/// A validated subnet selector; `field`/`value` are both set or both unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetSelector {
    pub ids: Vec<u64>,
    pub field: Option<(String, String)>,
}

impl SubnetSelector {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.field.is_none()
    }
}

impl Settings {
    /// Loads the file at `path` (or the embedded default), applies `IPAMGW_…` overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError::new("--config", format!("cannot read {}: {e}", p.display()))
                })?;
                Self::parse(&text, Some(env_layer()))
            }
            None => Self::parse(DEFAULT_CONFIG, Some(env_layer())),
        }
    }

    /// Parses and validates TOML text without environment overrides (tests, benches).
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        Self::parse(text, None)
    }

    fn parse(text: &str, env: Option<Env>) -> Result<Settings, ConfigError> {
        // Large `[[backends.<name>.networks]]` lists element by element (see `inventory`); the
        // whole document through figment otherwise, and for every error.
        let config = match inventory::extract(text, env.clone()) {
            Some(config) => config,
            None => {
                let figment = Figment::new().merge(Toml::string(text));
                let figment = match env {
                    Some(env) => figment.merge(env),
                    None => figment,
                };
                figment.extract::<Config>().map_err(figment_error)?
            }
        };
        config.validate()
    }
}

impl Config {
    /// Drops the configured network and block lists of embedded backends, once validated into
    /// [`BackendSettings`] (only `print-config` shows them from here), so that a large inventory
    /// is not held twice while the backends are seeded.
    pub fn release_inventories(&mut self) {
        for backend in self.backends.values_mut() {
            if let BackendConfig::Embedded(e) = backend {
                e.networks = Vec::new();
                e.blocks = Vec::new();
            }
        }
    }
}

fn env_layer() -> Env {
    // IPAMGW_CONFIG names the file (see `main`); it is not a key.
    Env::prefixed("IPAMGW_").ignore(&["config"]).split("__")
}

fn figment_error(e: figment::Error) -> ConfigError {
    // Report the first error: it is the one the user has to fix first.
    let first = e.into_iter().next();
    match first {
        Some(err) => {
            let key = if err.path.is_empty() {
                "(top level)".to_owned()
            } else {
                err.path.join(".")
            };
            ConfigError::new(key, err.kind.to_string())
        }
        None => ConfigError::new("(top level)", "unreadable configuration"),
    }
}

fn parse_addr(key: &str, text: &str) -> Result<IpAddr, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::new(key, format!("'{text}' is not an IP address")))
}

fn parse_cidr(key: &str, text: &str) -> Result<IpNet, ConfigError> {
    let net: IpNet = text.trim().parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("'{text}' is not a CIDR (expected e.g. 10.0.0.0/24 or 2001:db8::/64)"),
        )
    })?;
    if net != net.trunc() {
        return Err(ConfigError::new(
            key,
            format!("'{text}' has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    Ok(net)
}

fn parse_socket(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("'{text}' is not an address:port (e.g. 127.0.0.1:8443)"),
        )
    })
}

fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("'{name}' must be 1-64 characters of a-z, 0-9, '-' or '_'"),
        ))
    }
}

fn tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// The address after `a` (saturating at the top of the family).
fn next_addr(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(v) => IpAddr::from(u32::from(v).saturating_add(1).to_be_bytes()),
        IpAddr::V6(v) => IpAddr::from(u128::from(v).saturating_add(1).to_be_bytes()),
    }
}

/// First and last assignable host of a network: IPv4 skips the network and broadcast addresses
/// (except /31 and /32), IPv6 skips the subnet-router anycast address (except /127 and /128).
pub fn usable_range(net: &IpNet) -> (IpAddr, IpAddr) {
    match net {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            if n.prefix_len() >= 31 {
                (
                    IpAddr::from(lo.to_be_bytes()),
                    IpAddr::from(hi.to_be_bytes()),
                )
            } else {
                (
                    IpAddr::from((lo + 1).to_be_bytes()),
                    IpAddr::from((hi - 1).to_be_bytes()),
                )
            }
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            if n.prefix_len() >= 127 {
                (
                    IpAddr::from(lo.to_be_bytes()),
                    IpAddr::from(hi.to_be_bytes()),
                )
            } else {
                (
                    IpAddr::from((lo + 1).to_be_bytes()),
                    IpAddr::from(hi.to_be_bytes()),
                )
            }
        }
    }
}

impl Config {
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen = parse_socket("server.listen", &self.server.listen)?;
        let metrics_listen = if self.metrics.enabled {
            Some(parse_socket("metrics.listen", &self.metrics.listen)?)
        } else {
            None
        };
        if self.server.request_timeout_secs == 0 {
            return Err(ConfigError::new(
                "server.request_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(ConfigError::new(
                "server.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if self.server.auth_failure_limit > 0 {
            if !(1..=86_400).contains(&self.server.auth_failure_window_secs) {
                return Err(ConfigError::new(
                    "server.auth_failure_window_secs",
                    "must be between 1 and 86400",
                ));
            }
            if !(1..=86_400).contains(&self.server.auth_block_secs) {
                return Err(ConfigError::new(
                    "server.auth_block_secs",
                    "must be between 1 and 86400",
                ));
            }
        }
        if self.server.tls.mode == TlsMode::Files {
            if self.server.tls.cert_file.is_none() {
                return Err(ConfigError::new(
                    "server.tls.cert_file",
                    "required when server.tls.mode = \"files\"",
                ));
            }
            if self.server.tls.key_file.is_none() {
                return Err(ConfigError::new(
                    "server.tls.key_file",
                    "required when server.tls.mode = \"files\"",
                ));
            }
        }
        if self.backends.is_empty() {
            return Err(ConfigError::new(
                "backends",
                "at least one backend is required",
            ));
        }

        let mut backends = Vec::new();
        for (name, backend) in &self.backends {
            check_name(&format!("backends.{name}"), name)?;
            backends.push(self.validate_backend(name, backend)?);
        }

        let mut dns = Vec::new();
        for (name, d) in &self.dns {
            check_name(&format!("dns.{name}"), name)?;
            dns.push(crate::dns::config::validate(name, d)?);
        }
        let mut dns_attach = BTreeMap::new();
        for (name, backend) in &self.backends {
            let attach = self.dns_attach(name, backend)?;
            if attach != DnsAttach::default() {
                dns_attach.insert(name.clone(), attach);
            }
        }

        let mut clients = Vec::new();
        for (name, client) in &self.clients {
            let key = format!("clients.{name}");
            if name.is_empty() || name.contains(':') {
                return Err(ConfigError::new(
                    key,
                    "client names must be non-empty and contain no ':'",
                ));
            }
            if !self.backends.contains_key(&client.backend) {
                return Err(ConfigError::new(
                    format!("{key}.backend"),
                    format!("no backend named '{}'", client.backend),
                ));
            }
            let hash_key = format!("{key}.password_hash");
            let hash = client.password_hash.resolve(&hash_key)?;
            if argon2::PasswordHash::new(hash.expose_secret()).is_err() {
                return Err(ConfigError::new(
                    hash_key,
                    "not an argon2 hash (make one with `ipam-gateway hash-password`)",
                ));
            }
            clients.push(ClientSettings {
                name: name.clone(),
                password_hash: hash,
                backend: client.backend.clone(),
            });
        }
        if let Some(p) = &self.passthrough
            && !self.backends.contains_key(&p.backend)
        {
            return Err(ConfigError::new(
                "passthrough.backend",
                format!("no backend named '{}'", p.backend),
            ));
        }
        if clients.is_empty() && self.passthrough.is_none() {
            return Err(ConfigError::new(
                "clients",
                "no client can log in: configure at least one client or passthrough",
            ));
        }

        Ok(Settings {
            listen,
            metrics_listen,
            clients,
            backends,
            dns,
            dns_attach,
            config: self,
        })
    }

    /// `backends.<b>.dns` (and an embedded network's `dns`): each names a `[dns.<name>]`
    /// section. An Infoblox backend whose record style registers DNS itself (host records with
    /// `configure_for_dns`, or `a_ptr`) refuses one unless `dns_override = true`.
    fn dns_attach(&self, name: &str, backend: &BackendConfig) -> Result<DnsAttach, ConfigError> {
        let known = |key: String, d: &str| -> Result<String, ConfigError> {
            if self.dns.contains_key(d) {
                Ok(d.to_owned())
            } else {
                let have: Vec<&str> = self.dns.keys().map(String::as_str).collect();
                Err(ConfigError::new(
                    key,
                    format!(
                        "no [dns.{d}] section (configured: {})",
                        if have.is_empty() {
                            "none".to_owned()
                        } else {
                            have.join(", ")
                        }
                    ),
                ))
            }
        };
        let key = format!("backends.{name}.dns");
        let mut attach = DnsAttach::default();
        match backend {
            BackendConfig::Embedded(e) => {
                attach.default = e.dns.as_deref().map(|d| known(key, d)).transpose()?;
                for (i, n) in e.networks.iter().enumerate() {
                    if let Some(d) = &n.dns {
                        let d = known(format!("backends.{name}.networks[{i}].dns"), d)?;
                        let id = match parse_cidr("", &n.cidr) {
                            Ok(c) => format!("{}/{}", n.address_space, c),
                            Err(_) => continue,
                        };
                        attach.networks.insert(id, d);
                    }
                }
            }
            BackendConfig::Phpipam(p) => {
                attach.default = p.dns.as_deref().map(|d| known(key, d)).transpose()?;
            }
            BackendConfig::Infoblox(p) => {
                if let Some(d) = &p.dns {
                    let registers = p.record_style == infoblox::RecordStyle::APtr
                        || (p.record_style == infoblox::RecordStyle::Host && p.configure_for_dns);
                    if registers && !p.dns_override {
                        return Err(ConfigError::new(
                            key,
                            format!(
                                "the grid already registers DNS for this backend (record_style = \"{}\"{}); \
                                 set backends.{name}.dns_override = true to register with [dns.{d}] as well",
                                p.record_style.as_str(),
                                if p.configure_for_dns {
                                    " with configure_for_dns"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                    attach.default = Some(known(key, d)?);
                }
            }
        }
        Ok(attach)
    }

    fn validate_backend(
        &self,
        name: &str,
        backend: &BackendConfig,
    ) -> Result<BackendSettings, ConfigError> {
        match backend {
            BackendConfig::Embedded(e) => {
                let mut networks: Vec<NetworkInfo> = Vec::new();
                // (address space, family, first address) → (last address, index): finds an
                // overlap in O(log n), so large seeded configs validate quickly.
                let mut seen: BTreeMap<(String, bool, u128), (u128, usize)> = BTreeMap::new();
                for (i, n) in e.networks.iter().enumerate() {
                    let key = format!("backends.{name}.networks[{i}]");
                    let net = validate_network(&key, n)?;
                    let (lo, hi) = bounds(&net.cidr);
                    let v6 = matches!(net.cidr, IpNet::V6(_));
                    let space = net.address_space.clone();
                    let before = seen
                        .range(..=(space.clone(), v6, lo))
                        .next_back()
                        .filter(|((s, f, _), (end, _))| s == &space && *f == v6 && *end >= lo);
                    let after = seen
                        .range((space.clone(), v6, lo)..)
                        .next()
                        .filter(|((s, f, start), _)| s == &space && *f == v6 && *start <= hi);
                    if let Some((_, (_, j))) = before.or(after) {
                        let other: &NetworkInfo = &networks[*j];
                        return Err(ConfigError::new(
                            format!("{key}.cidr"),
                            format!(
                                "{} overlaps network '{}' ({}) in address space '{}'",
                                net.cidr, other.name, other.cidr, net.address_space
                            ),
                        ));
                    }
                    seen.insert((space, v6, lo), (hi, networks.len()));
                    networks.push(net);
                }
                let mut blocks: Vec<BlockInfo> = Vec::new();
                for (i, b) in e.blocks.iter().enumerate() {
                    let key = format!("backends.{name}.blocks[{i}]");
                    let block = validate_block(&key, b)?;
                    if let Some(n) = networks.iter().find(|n| {
                        n.address_space == block.address_space
                            && (n.cidr.contains(&block.cidr) || block.cidr.contains(&n.cidr))
                    }) {
                        return Err(ConfigError::new(
                            format!("{key}.cidr"),
                            format!(
                                "{} overlaps network '{}' ({}); blocks must be free space",
                                block.cidr, n.name, n.cidr
                            ),
                        ));
                    }
                    if blocks.iter().any(|o| o.backend_id == block.backend_id) {
                        return Err(ConfigError::new(
                            format!("{key}.name"),
                            format!("duplicate block name '{}'", block.name),
                        ));
                    }
                    blocks.push(block);
                }
                let path = if e.path.is_absolute() {
                    e.path.clone()
                } else {
                    self.server.state_dir.join(&e.path)
                };
                Ok(BackendSettings::Embedded {
                    name: name.to_owned(),
                    path,
                    networks,
                    blocks,
                })
            }
            BackendConfig::Phpipam(p) => Ok(BackendSettings::Phpipam {
                name: name.to_owned(),
                settings: Box::new(validate_phpipam(&format!("backends.{name}"), p)?),
            }),
            BackendConfig::Infoblox(p) => Ok(BackendSettings::Infoblox {
                name: name.to_owned(),
                settings: Box::new(validate_infoblox(&format!("backends.{name}"), p)?),
            }),
        }
    }
}

fn validate_phpipam(key: &str, p: &PhpipamConfig) -> Result<PhpipamSettings, ConfigError> {
    let url = p.url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/api").unwrap_or(url);
    http_base_url(key, url, "username/password or app_code")?;
    let app_id = p.app_id.trim();
    if app_id.is_empty()
        || !app_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::new(
            format!("{key}.app_id"),
            format!("'{app_id}' must be the API app id: letters, digits, '-' or '_'"),
        ));
    }
    let user =
        |required: bool| service_account(key, p.username.as_ref(), p.password.as_ref(), required);
    let auth = match p.auth {
        PhpipamAuthMode::User => {
            if p.app_code.is_some() {
                return Err(ConfigError::new(
                    format!("{key}.app_code"),
                    "only used when auth = \"app_code\"",
                ));
            }
            let Some(u) = user(true)? else {
                return Err(ConfigError::new(
                    format!("{key}.username"),
                    "required when auth = \"user\"",
                ));
            };
            PhpipamAuth::User(u)
        }
        PhpipamAuthMode::AppCode => {
            if p.username.is_some() || p.password.is_some() {
                return Err(ConfigError::new(
                    format!("{key}.username"),
                    "not used when auth = \"app_code\" (the app code is the credential)",
                ));
            }
            let code = p.app_code.as_ref().ok_or_else(|| {
                ConfigError::new(
                    format!("{key}.app_code"),
                    "required when auth = \"app_code\"",
                )
            })?;
            PhpipamAuth::AppCode(code.resolve(&format!("{key}.app_code"))?)
        }
        PhpipamAuthMode::Passthrough => {
            if p.app_code.is_some() {
                return Err(ConfigError::new(
                    format!("{key}.app_code"),
                    "only used when auth = \"app_code\"",
                ));
            }
            PhpipamAuth::Passthrough {
                fallback: user(false)?,
            }
        }
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
    for (i, s) in p.sections.iter().enumerate() {
        if let SectionRef::Name(n) = s
            && n.trim().is_empty()
        {
            return Err(ConfigError::new(
                format!("{key}.sections[{i}]"),
                "must not be empty",
            ));
        }
    }
    let field_name = |k: &str, f: &str| -> Result<String, ConfigError> {
        let f = f.trim();
        if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::new(
                k,
                format!("'{f}' is not a phpIPAM field name (letters, digits, '_')"),
            ));
        }
        Ok(f.to_owned())
    };
    let selector = |which: &str, s: &SubnetSelectorConfig| -> Result<SubnetSelector, ConfigError> {
        let field = match (&s.field, &s.value) {
            (Some(f), Some(v)) => {
                Some((field_name(&format!("{key}.{which}.field"), f)?, v.as_text()))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    format!("{key}.{which}.value"),
                    format!("required when {which}.field is set"),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("{key}.{which}.field"),
                    format!("required when {which}.value is set"),
                ));
            }
        };
        Ok(SubnetSelector {
            ids: s.ids.clone(),
            field,
        })
    };
    let networks = selector("networks", &p.networks)?;
    let blocks = selector("blocks", &p.blocks)?;
    if let Some(id) = networks.ids.iter().find(|id| blocks.ids.contains(id)) {
        return Err(ConfigError::new(
            format!("{key}.blocks.ids"),
            format!("subnet {id} is also listed in networks.ids; a subnet is a network or a block"),
        ));
    }
    let owner_field = field_name(&format!("{key}.owner_field"), &p.owner_field)?;
    if owner_field != "owner" && !owner_field.starts_with("custom_") {
        return Err(ConfigError::new(
            format!("{key}.owner_field"),
            format!("'{owner_field}' must be \"owner\" or a custom field (custom_…)"),
        ));
    }
    let optional_field = |k: &str, f: &Option<String>| {
        f.as_deref()
            .map(|f| field_name(&format!("{key}.{k}"), f))
            .transpose()
    };
    Ok(PhpipamSettings {
        base_url: url.to_owned(),
        app_id: app_id.to_owned(),
        auth,
        ca_pem,
        verify_tls: p.verify_tls,
        tls_fingerprint,
        connect_timeout: std::time::Duration::from_secs(p.connect_timeout_secs),
        timeout: std::time::Duration::from_secs(p.timeout_secs),
        sections: p.sections.clone(),
        networks,
        blocks,
        owner_field,
        dns_domain_field: optional_field("dns_domain_field", &p.dns_domain_field)?,
        search_domains_field: optional_field("search_domains_field", &p.search_domains_field)?,
        lookup_cache_ttl: std::time::Duration::from_secs(p.lookup_cache_secs.max(1)),
    })
}

fn validate_network(key: &str, n: &NetworkConfig) -> Result<NetworkInfo, ConfigError> {
    if n.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
    }
    let cidr = parse_cidr(&format!("{key}.cidr"), &n.cidr)?;
    let in_net = |field: &str, text: &str| -> Result<IpAddr, ConfigError> {
        let k = format!("{key}.{field}");
        let a = parse_addr(&k, text)?;
        if !cidr.contains(&a) {
            return Err(ConfigError::new(k, format!("{a} is outside {cidr}")));
        }
        Ok(a)
    };
    let gateway = n
        .gateway
        .as_deref()
        .map(|g| in_net("gateway", g))
        .transpose()?;
    let (mut start, mut end) = usable_range(&cidr);
    if let Some(s) = &n.range_start {
        start = in_net("range_start", s)?;
    } else if gateway == Some(start) && start < end {
        // The range starts after a gateway on the first host, as phpIPAM's and Infoblox's do
        // and as carved networks do here (the gateway is never handed out either way).
        start = next_addr(start);
    }
    if let Some(e) = &n.range_end {
        end = in_net("range_end", e)?;
    }
    if start > end {
        return Err(ConfigError::new(
            format!("{key}.range_start"),
            format!("{start} is after range_end {end}"),
        ));
    }
    let dns_servers = n
        .dns_servers
        .iter()
        .enumerate()
        .map(|(i, d)| parse_addr(&format!("{key}.dns_servers[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkInfo {
        backend_id: format!("{}/{}", n.address_space, cidr),
        name: n.name.trim().to_owned(),
        description: n.description.clone(),
        cidr,
        range_start: start,
        range_end: end,
        gateway,
        dns_servers,
        dns_domain: n.domain.clone(),
        dns_search_domains: n.search_domains.clone(),
        address_space: n.address_space.clone(),
        vlan: n.vlan,
        tags: tags(&n.tags),
        free: None,
        block: None,
        owner: None,
    })
}

fn validate_block(key: &str, b: &BlockConfig) -> Result<BlockInfo, ConfigError> {
    if b.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
    }
    let cidr = parse_cidr(&format!("{key}.cidr"), &b.cidr)?;
    let dns_servers = b
        .dns_servers
        .iter()
        .enumerate()
        .map(|(i, d)| parse_addr(&format!("{key}.dns_servers[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BlockInfo {
        backend_id: format!("block:{}", b.name.trim()),
        name: b.name.trim().to_owned(),
        description: b.description.clone(),
        cidr,
        address_space: b.address_space.clone(),
        gateway: None,
        dns_servers,
        dns_domain: b.domain.clone(),
        dns_search_domains: b.search_domains.clone(),
        tags: tags(&b.tags),
    })
}

#[cfg(test)]
mod tests {
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
        let text = include_str!("../config/dns.example.toml");
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
        let s = Settings::from_toml(&grid("record_style = \"fixed_address\""))
            .expect("fixed addresses");
        assert_eq!(s.dns_attach["grid"].default.as_deref(), Some("lab"));
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
        let text = format!(
            "{MINIMAL}\n[[backends.local.networks]]\nname = \"n2\"\ncidr = \"10.0.0.0/16\"\n"
        );
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

    const PHPIPAM: &str = r#"
        [clients.demo]
        password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
        backend = "ipam"
        [backends.ipam]
        kind = "phpipam"
        url = "https://ipam.example.com/api/"
        app_id = "gateway"
        username = "svc"
        password = "pw-literal-123"
        sections = ["Gateway", 4]
        [backends.ipam.networks]
        field = "custom_vRA_Range"
        value = 1
        [backends.ipam.blocks]
        ids = [10]
    "#;

    fn phpipam(s: &Settings) -> &PhpipamSettings {
        match &s.backends[0] {
            BackendSettings::Phpipam { settings, .. } => settings,
            other => panic!("phpipam expected, got {other:?}"),
        }
    }

    #[test]
    fn phpipam_config_validates_and_normalises() {
        let s = Settings::from_toml(PHPIPAM).expect("phpipam config");
        let p = phpipam(&s);
        assert_eq!(
            p.base_url, "https://ipam.example.com",
            "trailing /api/ dropped"
        );
        assert_eq!(
            p.sections,
            [SectionRef::Name("Gateway".into()), SectionRef::Id(4)]
        );
        assert_eq!(
            p.networks.field,
            Some(("custom_vRA_Range".into(), "1".into()))
        );
        assert_eq!(p.blocks.ids, [10]);
        assert_eq!(p.owner_field, "owner");
        assert_eq!(p.timeout.as_secs(), 30);
        assert!(p.verify_tls);
        assert!(matches!(&p.auth, PhpipamAuth::User(u) if u.username == "svc"));
        let printed = format!("{s:?} {}", serde_json::to_string(&s.config).expect("json"));
        assert!(!printed.contains("pw-literal-123"), "{printed}");
    }

    #[test]
    fn http_base_urls_are_checked_naming_the_url_key() {
        assert!(http_base_url("backends.x", "https://ipam.example.com:8443/sub", "y").is_ok());
        assert!(http_base_url("backends.x", "http://10.0.0.5", "y").is_ok());
        for (url, why) in [
            ("ftp://ipam", "must start with https:// or http://"),
            ("ftp://u:p@ipam", "must start with https:// or http://"),
            ("ipam.example.com", "must start with https:// or http://"),
            ("https:///api", "has no host"),
            (
                "https://u:p@ipam",
                "must not contain credentials; use the keys",
            ),
            ("https://ipam/?x=1", "must not contain a query or fragment"),
            ("https://ipam/#top", "must not contain a query or fragment"),
        ] {
            let e = http_base_url("backends.x", url, "the keys").expect_err(url);
            assert_eq!(e.key, "backends.x.url", "{url}");
            assert!(e.why.contains(why), "{url}: {e}");
            assert!(!e.why.contains("u:p"), "{url}: credentials echoed: {e}");
        }
    }

    #[test]
    fn phpipam_errors_name_the_key() {
        let cases = [
            (
                PHPIPAM.replace("https://ipam", "ftp://ipam"),
                "backends.ipam.url",
            ),
            (
                PHPIPAM.replace("https://ipam", "https://u:p@ipam"),
                "backends.ipam.url",
            ),
            (
                PHPIPAM.replace("app_id = \"gateway\"", "app_id = \"a/b\""),
                "backends.ipam.app_id",
            ),
            (
                PHPIPAM.replace("password = \"pw-literal-123\"", ""),
                "backends.ipam.password",
            ),
            (
                PHPIPAM.replace("username = \"svc\"", ""),
                "backends.ipam.username",
            ),
            (
                PHPIPAM.replace(
                    "username = \"svc\"",
                    "auth = \"app_code\"\nusername = \"svc\"",
                ),
                "backends.ipam.username",
            ),
            (
                PHPIPAM
                    .replace("username = \"svc\"", "auth = \"app_code\"")
                    .replace("password = \"pw-literal-123\"", ""),
                "backends.ipam.app_code",
            ),
            (
                PHPIPAM.replace("value = 1", ""),
                "backends.ipam.networks.value",
            ),
            (
                PHPIPAM.replace("ids = [10]", "ids = [10]\nfield = \"bad field\"\nvalue = 1"),
                "backends.ipam.blocks.field",
            ),
            (
                PHPIPAM.replace("sections = [", "timeout_secs = 0\nsections = ["),
                "backends.ipam.timeout_secs",
            ),
            (
                PHPIPAM.replace(
                    "sections = [",
                    "ca_file = \"/nonexistent/ca.pem\"\nsections = [",
                ),
                "backends.ipam.ca_file",
            ),
            (
                PHPIPAM.replace("sections = [", "owner_field = \"hostname\"\nsections = ["),
                "backends.ipam.owner_field",
            ),
            (
                PHPIPAM.replace(
                    "password = \"pw-literal-123\"",
                    "password = \"env:IPAMGW_TEST_NO_SUCH_PHPIPAM_PW\"",
                ),
                "backends.ipam.password",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(err(&text).key, key, "{text}");
        }
    }

    #[test]
    fn phpipam_passthrough_takes_an_optional_service_account() {
        let text = PHPIPAM.replace(
            "username = \"svc\"",
            "auth = \"passthrough\"\nusername = \"svc\"",
        );
        let s = Settings::from_toml(&text).expect("passthrough with fallback");
        assert!(matches!(
            &phpipam(&s).auth,
            PhpipamAuth::Passthrough { fallback: Some(_) }
        ));
        let bare = text
            .replace("username = \"svc\"", "")
            .replace("password = \"pw-literal-123\"", "");
        let s = Settings::from_toml(&bare).expect("passthrough alone");
        assert!(matches!(
            &phpipam(&s).auth,
            PhpipamAuth::Passthrough { fallback: None }
        ));
    }

    /// A SHA-256 fingerprint, as `openssl x509 -noout -fingerprint -sha256` prints it.
    const PIN: &str = "SHA256:3A:1F:0C:9B:77:E2:51:D4:08:6E:AF:12:C3:95:4B:60:\
                       DE:21:8F:74:0A:B9:5C:E3:16:47:A8:2D:F0:93:6B:C1";

    #[test]
    fn phpipam_tls_fingerprint_is_read_leniently_and_each_mistake_names_the_key() {
        let with = |value: &str| {
            PHPIPAM.replace(
                "sections = [",
                &format!("tls_fingerprint = \"{value}\"\nsections = ["),
            )
        };
        assert_eq!(
            phpipam(&Settings::from_toml(PHPIPAM).expect("no pin")).tls_fingerprint,
            None
        );
        let bare = PIN.trim_start_matches("SHA256:");
        for value in [
            PIN.to_owned(),
            PIN.to_ascii_lowercase(),
            bare.to_owned(),
            bare.replace(':', "").to_ascii_lowercase(),
        ] {
            let s = Settings::from_toml(&with(&value)).expect(&value);
            let pin = phpipam(&s).tls_fingerprint.expect("pinned");
            assert_eq!(pin.to_string(), PIN, "{value}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let cases = [
            (with(""), "is empty"),
            (with(&PIN.replacen("3A", "3Z", 1)), "'Z' (character 9)"),
            (with(&PIN[..PIN.len() - 3]), "has 31 bytes"),
            (with(&format!("{PIN}:00")), "has 33 bytes"),
            (with(&PIN.replacen("3A:1F", "3A1:F", 1)), "found '3A1'"),
            (
                with("SHA1:DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09"),
                "not SHA1",
            ),
            (
                with(PIN).replace(
                    "sections = [",
                    &format!("ca_file = \"{}\"\nsections = [", ca.display()),
                ),
                "ca_file would not be used",
            ),
            (
                with(PIN).replace("sections = [", "verify_tls = false\nsections = ["),
                "verify_tls = false",
            ),
        ];
        for (text, why) in cases {
            let e = Settings::from_toml(&text).expect_err(why);
            assert_eq!(e.key, "backends.ipam.tls_fingerprint", "{why}: {e}");
            assert!(e.to_string().contains(why), "{e}");
        }
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

    /// The whole document through figment: what `Settings::parse` does without `inventory`.
    fn whole_document(text: &str) -> Result<Config, ConfigError> {
        Figment::new()
            .merge(Toml::string(text))
            .extract::<Config>()
            .map_err(figment_error)
    }

    fn same_as_whole_document(text: &str) {
        let whole = whole_document(text).map(|c| serde_json::to_string(&c).expect("json"));
        let parsed = match inventory::extract(text, None) {
            Some(c) => Ok(serde_json::to_string(&c).expect("json")),
            None => whole_document(text).map(|c| serde_json::to_string(&c).expect("json")),
        };
        assert_eq!(parsed, whole, "{text}");
        match (
            Settings::from_toml(text),
            whole_document(text).and_then(Config::validate),
        ) {
            (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} vs {b:?}\n{text}"),
        }
    }

    const INVENTORY: &str = r#"
# A seeded embedded backend, networks and blocks as arrays of tables.
[clients.demo]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
backend = "local"
[backends.local]
kind = "embedded"
path = "local.redb"
[[backends.local.networks]]
name = "n1"   # trailing comment [x]
cidr = "10.0.0.0/24"
gateway = "10.0.0.1"
dns_servers = [
  "10.0.0.53",
  "10.0.0.54",
]
tags = { env = "lab", "owner team" = "net" }
  [[ backends.local.networks ]]
name = "n2"
cidr = "10.0.1.0/24"
description = """
[[backends.local.networks]]
not a header
"""
vlan = 12
search_domains = ["a.example", 'b.example']
[[backends.local.blocks]]
name = "b1"
cidr = "10.8.0.0/16"
[server]
listen = "127.0.0.1:9443"
[[backends.local.networks]]
name = "n3"
cidr = "10.0.2.0/24"
address_space = "other"
range_start = "10.0.2.10"
range_end = "10.0.2.20"
"#;

    #[test]
    fn inventories_are_read_element_by_element_with_the_same_result() {
        let config = inventory::extract(INVENTORY, None).expect("element by element");
        let BackendConfig::Embedded(e) = &config.backends["local"] else {
            panic!("embedded expected");
        };
        let names: Vec<_> = e.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        assert!(
            e.networks[1]
                .description
                .as_deref()
                .unwrap_or_default()
                .contains("not a header")
        );
        assert_eq!(e.blocks.len(), 1);
        assert_eq!(config.server.listen, "127.0.0.1:9443");
        same_as_whole_document(INVENTORY);
        same_as_whole_document(MINIMAL);
        same_as_whole_document(DEFAULT_CONFIG);
        assert!(inventory::extract(MINIMAL, None).is_some());
    }

    #[test]
    fn inventory_errors_are_the_whole_documents() {
        let cases = [
            // Unknown key, wrong type, missing field in an element.
            INVENTORY.replace("vlan = 12", "vlan_id = 12"),
            INVENTORY.replace("vlan = 12", "vlan = \"twelve\""),
            INVENTORY.replace("name = \"n3\"\n", ""),
            // Syntax errors inside and outside the lists.
            INVENTORY.replace("gateway = \"10.0.0.1\"", "gateway = 10.0.0.1"),
            INVENTORY.replace("listen = \"127", "listen = 127"),
            INVENTORY.replace("\"\"\"\nvlan", "\nvlan"),
            // The list also written inline, a table where the array is, a sub-table of an element.
            INVENTORY.replace(
                "path = \"local.redb\"",
                "path = \"local.redb\"\nnetworks = []",
            ),
            format!("{INVENTORY}\n[backends.local.networks]\nname = \"x\"\n"),
            // Lists of a backend that is not embedded, or not configured.
            INVENTORY.replace(
                "kind = \"embedded\"\npath = \"local.redb\"",
                "kind = \"phpipam\"",
            ),
            INVENTORY.replace(
                "[backends.local]\nkind = \"embedded\"\npath = \"local.redb\"",
                "",
            ),
            // Validation after reading: overlap, bad CIDR.
            INVENTORY
                .replace("10.0.2.0/24", "10.0.0.0/16")
                .replace("\"other\"", "\"default\""),
            INVENTORY.replace("10.0.1.0/24", "10.0.1.0/33"),
        ];
        for text in &cases {
            same_as_whole_document(text);
            assert!(Settings::from_toml(text).is_err(), "{text}");
        }
        let e = Settings::from_toml(&cases[0]).expect_err("unknown key");
        assert!(e.to_string().contains("vlan_id"), "{e}");
        let e = Settings::from_toml(&cases[11]).expect_err("bad cidr");
        assert_eq!(e.key, "backends.local.networks[1].cidr");
        // A sub-table of the last element: valid, read by the whole-document path.
        let text = format!("{INVENTORY}\n[backends.local.networks.tags]\nrack = \"r1\"\n");
        assert!(inventory::extract(&text, None).is_none());
        same_as_whole_document(&text);
        let s = Settings::from_toml(&text).expect("sub-table");
        let BackendSettings::Embedded { networks, .. } = &s.backends[0] else {
            panic!("embedded expected");
        };
        assert_eq!(networks[2].tags[0].key, "rack");
    }
}
