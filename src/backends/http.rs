//! What the HTTP backends (phpIPAM, Infoblox) share: one `reqwest::Client` per backend instance
//! with timeouts always set, and credential keys that never hold credentials in clear.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::{IpamError, IpamResult};

/// The backend's HTTP client: connect and total timeouts, an optional CA bundle merged into the
/// system roots, verification on unless `verify_tls` is false (logged), redirects never followed.
/// `what` names the IPAM in the warning (`phpIPAM`, `the Infoblox grid`).
pub fn client(
    backend: &str,
    what: &str,
    connect_timeout: Duration,
    timeout: Duration,
    ca_pem: Option<&[u8]>,
    verify_tls: bool,
) -> IpamResult<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("ipam-gateway/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        // phpIPAM answers 401 with `Location: /api//user/`; never follow anything.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            IpamError::Internal(format!(
                "backend {backend}: ca_file is not a PEM bundle: {e}"
            ))
        })?;
        b = b.tls_certs_merge(certs);
    }
    if !verify_tls {
        tracing::warn!(backend, "TLS certificate verification of {what} is OFF");
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| {
        IpamError::Internal(format!("backend {backend}: cannot build HTTP client: {e}"))
    })
}

/// Cache key for a user's session or token: SHA-256 of `user \0 password`, hex.
pub fn credential_key(username: &str, password: &SecretString) -> String {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update([0u8]);
    h.update(password.expose_secret().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
