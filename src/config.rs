//! Typed, layered, validated settings.
//!
//! Layers, lowest first: the embedded default (`config/ipam-gateway.toml`) or the file given with
//! `--config`, then `IPAMGW_…` environment variables (`IPAMGW_SERVER__LISTEN=0.0.0.0:8443`). Every
//! validation error names the key and the reason. Secrets are literal text, `env:NAME` or
//! `file:/path`, held as [`SecretString`] from the moment they are read.

use std::collections::BTreeMap;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::backends::embedded::config::{EmbeddedConfig, validate_embedded};
use crate::backends::infoblox::config::{
    InfobloxConfig, InfobloxSettings, RecordStyle, validate_infoblox,
};
use crate::backends::phpipam::config::{PhpipamConfig, PhpipamSettings, validate_phpipam};
use crate::domain::{BlockInfo, NetworkInfo};

pub mod http;
mod secret;
mod server;
pub use http::ServiceAccount;
pub use secret::Secret;
pub use server::*;

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
mod tests;
