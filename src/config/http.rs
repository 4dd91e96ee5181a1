//! The checks every HTTP backend section shares: base URL, transport (CA bundle, timeouts),
//! certificate pin and service account. Each backend's `config` module calls them.

use std::path::Path;

use super::{ConfigError, Secret};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

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

/// The `url` key of an HTTP backend section: http(s), a host, no credentials (`credentials`
/// says where they go instead), no query or fragment. Path segments from the one `api_at` picks
/// on (the API path a user may have pasted) are cut off; the path of the result ends in `/`.
pub(crate) fn http_base_url(
    key: &str,
    url: &str,
    credentials: &str,
    api_at: impl Fn(&[&str]) -> Option<usize>,
) -> Result<Url, ConfigError> {
    let bad = |why: String| ConfigError::new(format!("{key}.url"), why);
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("must start with https:// or http://".into()));
    };
    if scheme != "https" && scheme != "http" {
        // Not echoed: a URL with another scheme may still carry credentials.
        return Err(bad("must start with https:// or http://".into()));
    }
    // The URL standard reads `https:///api` as host `api`: an empty authority is refused first.
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return Err(bad("has no host".into()));
    }
    // The parser's message never repeats the URL (which may hold credentials).
    let mut parsed = Url::parse(url).map_err(|e| bad(format!("is not a URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(format!(
            "must not contain credentials; use {credentials}"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("must not contain a query or fragment".into()));
    }
    let segments: Vec<String> = parsed
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let names: Vec<&str> = segments.iter().map(String::as_str).collect();
    let keep = api_at(&names).unwrap_or(names.len()).min(names.len());
    let mut path = String::from("/");
    for s in &names[..keep] {
        path.push_str(s);
        path.push('/');
    }
    parsed.set_path(&path);
    Ok(parsed)
}

/// `base` with `segments` appended, without a trailing slash: the root the backend's client
/// puts request paths under (`…/api/{app_id}`, `…/wapi/v2.12`).
pub fn join_segments(base: &Url, segments: &[&str]) -> String {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url.into()
}

/// How a base URL is shown in messages: without the trailing slash of its path.
pub fn shown(base: &Url) -> String {
    base.as_str().trim_end_matches('/').to_owned()
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
        let none = |_: &[&str]| None;
        assert!(
            http_base_url("backends.x", "https://ipam.example.com:8443/sub", "y", none).is_ok()
        );
        assert!(http_base_url("backends.x", "http://10.0.0.5", "y", none).is_ok());
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
            let e = http_base_url("backends.x", url, "the keys", none).expect_err(url);
            assert_eq!(e.key, "backends.x.url", "{url}");
            assert!(e.why.contains(why), "{url}: {e}");
            assert!(!e.why.contains("u:p"), "{url}: credentials echoed: {e}");
        }
    }

    #[test]
    fn base_urls_are_parsed_and_the_api_path_cut_by_segment() {
        let api = |path: &[&str]| (path.last() == Some(&"api")).then(|| path.len() - 1);
        let wapi = |path: &[&str]| path.iter().position(|s| s.starts_with("wapi"));
        for (url, cut, root) in [
            (
                "https://ipam.example.com/api/",
                &api as &dyn Fn(&[&str]) -> Option<usize>,
                "https://ipam.example.com/",
            ),
            ("https://host/phpipam/api", &api, "https://host/phpipam/"),
            ("https://host/phpipam", &api, "https://host/phpipam/"),
            ("https://host/api/x", &api, "https://host/api/x/"),
            (
                "https://gm.example.com/wapi/v2.12/",
                &wapi,
                "https://gm.example.com/",
            ),
            // A host that starts with "wapi" is a host, not the API path.
            (
                "https://wapi.example.com",
                &wapi,
                "https://wapi.example.com/",
            ),
            (" http://10.0.0.5:8080// ", &wapi, "http://10.0.0.5:8080/"),
        ] {
            let base = http_base_url("backends.x", url, "y", cut).expect(url);
            assert_eq!(base.as_str(), root, "{url}");
        }
        let base = http_base_url("backends.x", "https://host/phpipam/", "y", api).expect("base");
        assert_eq!(
            join_segments(&base, &["api", "gw"]),
            "https://host/phpipam/api/gw"
        );
        assert_eq!(shown(&base), "https://host/phpipam");
        let root = http_base_url("backends.x", "https://gm", "y", wapi).expect("root");
        assert_eq!(
            join_segments(&root, &["wapi", "v2.12"]),
            "https://gm/wapi/v2.12"
        );
        assert_eq!(shown(&root), "https://gm");
    }
}
