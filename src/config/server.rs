//! The gateway's own sections: `[server]` (listen address, state directory, timeouts, limits,
//! throttling), `[server.tls]`, `[metrics]`, `[log]` and `[cache]`, with their defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
