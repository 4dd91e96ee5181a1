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
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::backends::embedded::config::{EmbeddedConfig, validate_embedded};
use crate::backends::infoblox::config::{
    InfobloxConfig, InfobloxSettings, RecordStyle, validate_infoblox,
};
use crate::backends::phpipam::config::{PhpipamConfig, PhpipamSettings, validate_phpipam};
use crate::domain::{BlockInfo, NetworkInfo};

pub mod http;
pub use http::ServiceAccount;

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

pub(crate) fn default_true() -> bool {
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

/// Settings after validation: addresses parsed, secrets resolved, references checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration as written (secrets as references or redacted): only what
    /// [`Settings::to_toml`] prints. Everything else reads the validated fields.
    config: Config,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub server: ServerSettings,
    pub cache: CacheSettings,
    pub log: LogConfig,
    /// `passthrough.backend`: the backend that verifies credentials naming no configured client.
    pub passthrough: Option<String>,
    pub clients: Vec<ClientSettings>,
    pub backends: Vec<BackendSettings>,
    /// Validated `[dns.<name>]` sections, by name.
    pub dns: Vec<crate::dns::DnsSettings>,
    /// Which `[dns.<name>]` section each backend (and network) registers names with.
    pub dns_attach: BTreeMap<String, DnsAttach>,
}

/// `[server]` validated: durations as [`Duration`]s (`listen` is [`Settings::listen`]).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub state_dir: PathBuf,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub shutdown_grace: Duration,
    pub readyz_timeout: Duration,
    /// 0: the failed-authentication throttle is off.
    pub auth_failure_limit: u32,
    pub auth_failure_window: Duration,
    pub auth_block: Duration,
    /// `cert_file` and `key_file` are set when `mode = "files"`.
    pub tls: TlsConfig,
}

/// `[cache]` validated.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub networks_ttl: Duration,
    pub auth_ttl: Duration,
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
        // Large network lists belong in an embedded backend's `inventory` file, read by serde
        // without figment (see `EmbeddedConfig::read_inventory`).
        let figment = Figment::new().merge(Toml::string(text));
        let figment = match env {
            Some(env) => figment.merge(env),
            None => figment,
        };
        figment
            .extract::<Config>()
            .map_err(figment_error)?
            .validate()
    }
}

impl Settings {
    /// Drops the configured network and block lists of embedded backends, once validated into
    /// [`BackendSettings`], so that a large inventory is not held twice while the backends are
    /// seeded (`print-config` runs before this).
    pub fn release_inventories(&mut self) {
        self.config.release_inventories();
    }

    /// The effective configuration as TOML, for `print-config`: secrets given inline are
    /// redacted, `env:`/`file:` references shown as written, unset optional keys left out.
    pub fn to_toml(&self) -> Result<String, String> {
        // Through JSON so that the redacting `Serialize` of secrets applies.
        let mut value = serde_json::to_value(&self.config).map_err(|e| e.to_string())?;
        drop_nulls(&mut value);
        let value: toml::Value = serde_json::from_value(value).map_err(|e| e.to_string())?;
        toml::to_string_pretty(&value).map_err(|e| e.to_string())
    }
}

/// TOML has no null: unset optional keys are left out.
fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

impl Config {
    /// Reads TOML text into the raw (unvalidated) configuration, without environment overrides:
    /// for tests that change a key before [`Config::validate`].
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Figment::new()
            .merge(Toml::string(text))
            .extract::<Config>()
            .map_err(figment_error)
    }

    /// Drops the configured network and block lists of embedded backends, once validated into
    /// [`BackendSettings`] (only `print-config` shows them from here), so that a large inventory
    /// is not held twice while the backends are seeded.
    fn release_inventories(&mut self) {
        for backend in self.backends.values_mut() {
            if let BackendConfig::Embedded(e) = backend {
                e.release_inventory();
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

pub(crate) fn parse_addr(key: &str, text: &str) -> Result<IpAddr, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::new(key, format!("'{text}' is not an IP address")))
}

pub(crate) fn parse_cidr(key: &str, text: &str) -> Result<IpNet, ConfigError> {
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

pub(crate) fn parse_socket(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("'{text}' is not an address:port (e.g. 127.0.0.1:8443)"),
        )
    })
}

pub(crate) fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
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

impl Config {
    pub fn validate(mut self) -> Result<Settings, ConfigError> {
        for (name, backend) in &mut self.backends {
            if let BackendConfig::Embedded(e) = backend {
                e.read_inventory(&format!("backends.{name}"))?;
            }
        }
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

        let server = ServerSettings {
            state_dir: self.server.state_dir.clone(),
            request_timeout: Duration::from_secs(self.server.request_timeout_secs),
            body_limit_bytes: self.server.body_limit_bytes,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            readyz_timeout: Duration::from_secs(self.server.readyz_timeout_secs),
            auth_failure_limit: self.server.auth_failure_limit,
            auth_failure_window: Duration::from_secs(self.server.auth_failure_window_secs),
            auth_block: Duration::from_secs(self.server.auth_block_secs),
            tls: self.server.tls.clone(),
        };
        let cache = CacheSettings {
            networks_ttl: Duration::from_secs(self.cache.networks_ttl_secs),
            auth_ttl: Duration::from_secs(self.cache.auth_ttl_secs),
        };
        Ok(Settings {
            listen,
            metrics_listen,
            server,
            cache,
            log: self.log.clone(),
            passthrough: self.passthrough.as_ref().map(|p| p.backend.clone()),
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
                for (item, n) in e.all_networks(&format!("backends.{name}")) {
                    if let Some(d) = &n.dns {
                        let d = known(format!("{item}.dns"), d)?;
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
                    let registers = p.record_style == RecordStyle::APtr
                        || (p.record_style == RecordStyle::Host && p.configure_for_dns);
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
                let key = format!("backends.{name}");
                let (path, networks, blocks) = validate_embedded(&key, e, &self.server.state_dir)?;
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
}
