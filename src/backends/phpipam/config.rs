//! `kind = "phpipam"`: the phpIPAM REST backend's configuration and its validation.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::http::{
    ServiceAccount, http_base_url, http_transport, join_segments, service_account, tls_pin,
};
use crate::config::{ConfigError, ScalarValue, Secret, default_true};

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

/// Validated phpIPAM settings: URL checked, secrets resolved, CA bundle read.
#[derive(Debug, Clone)]
pub struct PhpipamSettings {
    /// Root URL (its path ends in `/`); the API lives at [`PhpipamSettings::api_base`].
    pub base_url: Url,
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

impl PhpipamSettings {
    /// `{base_url}api/{app_id}`, without a trailing slash: request paths go under it.
    pub fn api_base(&self) -> String {
        join_segments(&self.base_url, &["api", &self.app_id])
    }
}

/// A phpIPAM user.
pub type PhpipamUser = ServiceAccount;

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

pub(crate) fn validate_phpipam(
    key: &str,
    p: &PhpipamConfig,
) -> Result<PhpipamSettings, ConfigError> {
    // A pasted `…/api/` is not part of the root.
    let base_url = http_base_url(key, &p.url, "username/password or app_code", |path| {
        (path.last() == Some(&"api")).then(|| path.len() - 1)
    })?;
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
        base_url,
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

#[cfg(test)]
mod tests {
    use crate::config::{BackendSettings, ConfigError, Settings};

    use super::*;

    fn err(text: &str) -> ConfigError {
        Settings::from_toml(text).expect_err("config should be rejected")
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
            p.base_url.as_str(),
            "https://ipam.example.com/",
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
        let printed = format!("{s:?} {}", s.to_toml().expect("print-config"));
        assert!(!printed.contains("pw-literal-123"), "{printed}");
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
}
