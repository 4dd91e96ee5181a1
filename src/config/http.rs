//! The checks every HTTP backend section shares: base URL, transport (CA bundle, timeouts),
//! certificate pin and service account. Each backend's `config` module calls them.

use std::path::Path;

use super::{ConfigError, Secret};
use secrecy::{ExposeSecret, SecretString};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
