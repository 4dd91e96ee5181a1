//! What the HTTP backends (phpIPAM, Infoblox) share: one `reqwest::Client` per backend instance
//! with timeouts always set, and credential keys that never hold credentials in clear.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::tls::{self, CertFingerprint, Verification};
use crate::domain::{IpamError, IpamResult};

/// The backend's HTTP client: connect and total timeouts, redirects never followed, and the
/// certificate verification of [`super::tls`]: system roots plus the optional `ca_pem` bundle,
/// or exactly the certificate `pin` names, or none when `verify_tls` is false (logged). `what`
/// names the IPAM in the log lines (`phpIPAM`, `the Infoblox grid`).
pub fn client(
    backend: &str,
    what: &str,
    connect_timeout: Duration,
    timeout: Duration,
    ca_pem: Option<&[u8]>,
    verify_tls: bool,
    pin: Option<CertFingerprint>,
) -> IpamResult<reqwest::Client> {
    let verification = match (pin, verify_tls) {
        (Some(fp), _) => {
            tracing::info!(backend, fingerprint = %fp,
                "TLS certificate of {what} pinned: exactly that certificate is accepted");
            Verification::Pinned(fp)
        }
        (None, false) => {
            tracing::warn!(backend, "TLS certificate verification of {what} is OFF");
            Verification::Off
        }
        (None, true) => Verification::Chain {
            ca_pem: ca_pem.map(<[u8]>::to_vec),
        },
    };
    let tls = tls::client_config(&format!("backends.{backend}"), backend, &verification)
        .map_err(|e| IpamError::Internal(format!("backend {backend}: {e}")))?;
    reqwest::Client::builder()
        .user_agent(concat!("ipam-gateway/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        // phpIPAM answers 401 with `Location: /api//user/`; never follow anything.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| {
            IpamError::Internal(format!("backend {backend}: cannot build HTTP client: {e}"))
        })
}

/// Cache key for a user's session or token: SHA-256 of `user \0 password`, hex.
pub fn credential_key(username: &str, password: &SecretString) -> String {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update([0u8]);
    h.update(password.expose_secret().as_bytes());
    format!("{:x}", h.finalize())
}

/// Sessions per credential (phpIPAM tokens, Infoblox cookies): one login at a time per credential
/// however many requests need it, and a refused login remembered for a minute, so that a wrong
/// password is not tried against the IPAM on every request (NIOS locks an address out after
/// repeated failures).
pub struct Sessions<T> {
    live: moka::future::Cache<String, T>,
    refused: moka::future::Cache<String, IpamError>,
}

impl<T: Clone + Send + Sync + 'static> Sessions<T> {
    /// `name` labels the caches (`phpipam`, `infoblox`); a session unused for `idle` is dropped.
    pub fn new(name: &str, idle: Duration) -> Self {
        Sessions {
            live: moka::future::Cache::builder()
                .name(&format!("{name}_sessions"))
                .max_capacity(10_000)
                .time_to_idle(idle)
                .build(),
            refused: moka::future::Cache::builder()
                .name(&format!("{name}_failed_logins"))
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// The session for these credentials, logging in with `login` when there is none.
    pub async fn get_or_login(
        &self,
        username: &str,
        password: &SecretString,
        login: impl Future<Output = IpamResult<T>>,
    ) -> IpamResult<T> {
        let key = credential_key(username, password);
        if let Some(e) = self.refused.get(&key).await {
            return Err(e);
        }
        let result = self
            .live
            .try_get_with(key.clone(), login)
            .await
            .map_err(|e| (*e).clone());
        if let Err(e @ IpamError::Unauthorized(_)) = &result {
            self.refused.insert(key, e.clone()).await;
        }
        result
    }

    /// Drops the session the IPAM refused (`is_refused` tells it), unless another task already
    /// replaced it with a fresh one.
    pub async fn forget(
        &self,
        username: &str,
        password: &SecretString,
        is_refused: impl Fn(&T) -> bool,
    ) {
        let key = credential_key(username, password);
        if let Some(current) = self.live.get(&key).await
            && is_refused(&current)
        {
            self.live.invalidate(&key).await;
        }
    }

    /// Keeps a session the IPAM renewed on its own (a refreshed cookie).
    pub async fn renew(&self, username: &str, password: &SecretString, session: T) {
        self.live
            .insert(credential_key(username, password), session)
            .await;
    }
}

/// What a backend has read of its IPAM's inventory (networks, blocks, routing data), per
/// credential scope, for `ttl`: listings reload it, allocations route with what is remembered.
pub struct Inventories<T> {
    by_scope: moka::future::Cache<String, std::sync::Arc<T>>,
}

impl<T: Send + Sync + 'static> Inventories<T> {
    pub fn new(name: &str, ttl: Duration) -> Self {
        Inventories {
            by_scope: moka::future::Cache::builder()
                .name(&format!("{name}_inventory"))
                .max_capacity(1_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Loads it now and remembers it.
    pub async fn fresh(
        &self,
        scope: String,
        load: impl Future<Output = IpamResult<T>>,
    ) -> IpamResult<std::sync::Arc<T>> {
        let inv = std::sync::Arc::new(load.await?);
        self.by_scope.insert(scope, inv.clone()).await;
        Ok(inv)
    }

    /// The remembered one, or loads it (one load at a time per scope; failures not remembered).
    pub async fn cached(
        &self,
        scope: String,
        load: impl Future<Output = IpamResult<T>>,
    ) -> IpamResult<std::sync::Arc<T>> {
        self.by_scope
            .try_get_with(scope, async { load.await.map(std::sync::Arc::new) })
            .await
            .map_err(|e| (*e).clone())
    }

    /// Forgets it after a change (a network carved or deleted).
    pub async fn invalidate(&self, scope: &str) {
        self.by_scope.invalidate(scope).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn credential_keys_are_hashes_not_text() {
        let k = credential_key("Admin", &SecretString::from("phpipam-lab"));
        assert_eq!(k.len(), 64);
        assert!(!k.contains("Admin") && !k.contains("phpipam-lab"));
        assert_ne!(k, credential_key("Admin", &SecretString::from("other")));
        // SHA-256 of `Admin\0secret` in lower-case hex (checked with Python's hashlib).
        assert_eq!(
            credential_key("Admin", &SecretString::from("secret")),
            "8be170f28a13c604156ad05864242b3eefa88fe89cdf650269c687bbd2ab7d7c"
        );
        assert_ne!(
            k,
            credential_key("admin", &SecretString::from("phpipam-lab"))
        );
    }

    #[tokio::test]
    async fn one_login_serves_concurrent_callers_and_a_refusal_is_remembered() {
        let sessions: Arc<Sessions<String>> =
            Arc::new(Sessions::new("test", Duration::from_secs(60)));
        let logins = Arc::new(AtomicUsize::new(0));
        let good = SecretString::from("right");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (sessions, logins, good) = (sessions.clone(), logins.clone(), good.clone());
            tasks.push(tokio::spawn(async move {
                sessions
                    .get_or_login("u", &good, async {
                        logins.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok("token-1".to_owned())
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("session"), "token-1");
        }
        assert_eq!(logins.load(Ordering::SeqCst), 1, "one login for 20 callers");

        // A refused session is dropped; the next caller logs in again.
        sessions.forget("u", &good, |t| t == "token-1").await;
        let again = sessions
            .get_or_login("u", &good, async { Ok("token-2".to_owned()) })
            .await
            .expect("session");
        assert_eq!(again, "token-2");
        // Forgetting a session another task already replaced keeps the new one.
        sessions.forget("u", &good, |t| t == "token-1").await;
        let kept = sessions
            .get_or_login("u", &good, async { Ok("token-3".to_owned()) })
            .await
            .expect("session");
        assert_eq!(kept, "token-2");

        // A wrong password: refused once, then answered from memory without asking the IPAM.
        let bad = SecretString::from("wrong");
        let refused = sessions
            .get_or_login("u", &bad, async {
                Err(IpamError::Unauthorized("bad password".into()))
            })
            .await;
        assert!(
            matches!(refused, Err(IpamError::Unauthorized(_))),
            "{refused:?}"
        );
        let asked = AtomicUsize::new(0);
        let again = sessions
            .get_or_login("u", &bad, async {
                asked.fetch_add(1, Ordering::SeqCst);
                Ok("never".to_owned())
            })
            .await;
        assert!(
            matches!(again, Err(IpamError::Unauthorized(_))),
            "{again:?}"
        );
        assert_eq!(
            asked.load(Ordering::SeqCst),
            0,
            "the refusal was remembered"
        );
        // Other failures (the IPAM down) are not remembered.
        let down = sessions
            .get_or_login("v", &good, async {
                Err(IpamError::Internal("connection refused".into()))
            })
            .await;
        assert!(down.is_err());
        let up = sessions
            .get_or_login("v", &good, async { Ok("token-v".to_owned()) })
            .await;
        assert_eq!(up.expect("session"), "token-v");
    }
}
