//! Where a secret lives (inline, `env:NAME`, `file:/path`) and how it is read: held as a
//! [`SecretString`] from the moment it is read, shown only as its kind.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::ConfigError;

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
