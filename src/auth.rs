//! Client authentication: HTTP Basic against configured clients (argon2 hashes), or passthrough to
//! the backend. Verified credentials are remembered briefly by their SHA-256, never in clear.

pub mod gate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::backends::{CallContext, Credentials};
use crate::config::Settings;
use crate::domain::IpamError;
use crate::service::{Caller, Ipam};

/// Why a request was not let in. Messages are safe to return to the caller.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required (HTTP Basic)")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("invalid username or password")]
    Invalid,
    #[error("cannot verify credentials: {0}")]
    Unavailable(String),
}

struct Client {
    hash: SecretString,
    backend: String,
}

pub struct Authenticator {
    clients: HashMap<String, Client>,
    passthrough: Option<String>,
    verified: Cache<[u8; 32], Caller>,
    limiter: Option<FailureLimiter>,
}

/// A valid argon2 hash of nothing anyone can send, verified for unknown users so that the answer
/// takes as long as for a known one.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lzYWx0ZGVjb3k$3m7rK0A8oD8a0m5jrKj5l9H3Qy6g8s0m1yq3o0kXo3Y";

impl Authenticator {
    pub fn new(settings: &Settings) -> Self {
        Authenticator {
            clients: settings
                .clients
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        Client {
                            hash: c.password_hash.clone(),
                            backend: c.backend.clone(),
                        },
                    )
                })
                .collect(),
            passthrough: settings.passthrough.clone(),
            verified: Cache::builder()
                .name("verified_credentials")
                .max_capacity(10_000)
                .time_to_live(settings.cache.auth_ttl)
                .build(),
            limiter: FailureLimiter::new(
                settings.server.auth_failure_limit,
                settings.server.auth_failure_window,
                settings.server.auth_block,
            ),
        }
    }

    /// The failed-authentication throttle (`None` when `server.auth_failure_limit = 0`).
    pub fn limiter(&self) -> Option<&FailureLimiter> {
        self.limiter.as_ref()
    }

    pub async fn authenticate(
        &self,
        header: Option<&HeaderValue>,
        ipam: &Ipam,
    ) -> Result<Caller, AuthError> {
        let (user, password) = parse_basic(header)?;
        let key = cache_key(&user, &password);
        if let Some(caller) = self.verified.get(&key).await {
            metrics::counter!("ipamgw_cache_requests_total", "cache" => "auth", "result" => "hit")
                .increment(1);
            return Ok(caller);
        }
        metrics::counter!("ipamgw_cache_requests_total", "cache" => "auth", "result" => "miss")
            .increment(1);
        let caller = if let Some(client) = self.clients.get(&user) {
            if !verify(client.hash.clone(), password).await {
                return Err(AuthError::Invalid);
            }
            Caller {
                name: user,
                backend: client.backend.clone(),
                cx: CallContext::default(),
            }
        } else if let Some(backend_name) = &self.passthrough {
            let backend = ipam
                .backend(backend_name)
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
            let cx = CallContext {
                credentials: Some(Credentials {
                    username: user.clone(),
                    password,
                }),
            };
            match backend.ping(&cx).await {
                Ok(()) => Caller {
                    name: user,
                    backend: backend_name.clone(),
                    cx,
                },
                Err(IpamError::Unauthorized(_)) => return Err(AuthError::Invalid),
                Err(e) => return Err(AuthError::Unavailable(e.to_string())),
            }
        } else {
            // Same work as for a known user, so timing does not reveal which names exist.
            let _ = verify(SecretString::from(DECOY_HASH), password).await;
            return Err(AuthError::Invalid);
        };
        self.verified.insert(key, caller.clone()).await;
        Ok(caller)
    }
}

fn parse_basic(header: Option<&HeaderValue>) -> Result<(String, SecretString), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let text = header
        .to_str()
        .map_err(|_| AuthError::Malformed("not ASCII"))?;
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected 'Basic <base64>'"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed("only the Basic scheme is supported"));
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthError::Malformed("credentials are not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| AuthError::Malformed("credentials are not UTF-8"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or(AuthError::Malformed("expected user:password"))?;
    if user.is_empty() {
        return Err(AuthError::Malformed("empty user name"));
    }
    Ok((user.to_owned(), SecretString::from(password.to_owned())))
}

fn cache_key(user: &str, password: &SecretString) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(password.expose_secret().as_bytes());
    h.finalize().into()
}

async fn verify(hash: SecretString, password: SecretString) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(hash.expose_secret())
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &SecretString) -> Result<String, String> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    use argon2::password_hash::rand_core::OsRng;
    // 16 bytes from the OS generator (the recommended salt length).
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Shared handle used by the server.
pub type SharedAuth = Arc<Authenticator>;

/// Failed-authentication throttle, per client address (IPv6: per /64).
///
/// After `limit` failures within `window` from one address, that address is refused (429 with
/// `Retry-After`) for `block` without its credentials being looked at; other addresses are not
/// affected, and successful authentications never count. Memory is bounded: both tables are
/// moka caches with a capacity and a time-to-live.
pub struct FailureLimiter {
    limit: u32,
    failures: Cache<IpAddr, Arc<AtomicU32>>,
    blocked: Cache<IpAddr, Instant>,
    block: Duration,
}

/// The unit of throttling: an IPv4 address (also when it arrives IPv4-mapped on a dual-stack
/// socket), or an IPv6 /64 — one host commonly owns a whole /64 and could rotate through it.
fn bucket(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// Addresses tracked at once (each table); beyond that the least recently used are forgotten.
const LIMITER_CAPACITY: u64 = 100_000;

impl FailureLimiter {
    /// `None` when `limit` is 0 (throttling off).
    pub fn new(limit: u32, window: Duration, block: Duration) -> Option<Self> {
        (limit > 0).then(|| FailureLimiter {
            limit,
            failures: Cache::builder()
                .name("auth_failures")
                .max_capacity(LIMITER_CAPACITY)
                .time_to_live(window)
                .build(),
            blocked: Cache::builder()
                .name("auth_blocked")
                .max_capacity(LIMITER_CAPACITY)
                .time_to_live(block)
                .build(),
            block,
        })
    }

    /// The remaining block time when `addr` is currently refused.
    pub async fn blocked_for(&self, addr: IpAddr) -> Option<Duration> {
        let until = self.blocked.get(&bucket(addr)).await?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Records a failed attempt; returns the block duration when this failure starts a block.
    pub async fn record_failure(&self, addr: IpAddr) -> Option<Duration> {
        let addr = bucket(addr);
        let counter = self
            .failures
            .get_with(addr, async { Arc::new(AtomicU32::new(0)) })
            .await;
        let seen = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if seen < self.limit {
            return None;
        }
        self.failures.invalidate(&addr).await;
        self.blocked.insert(addr, Instant::now() + self.block).await;
        metrics::counter!("ipamgw_auth_blocked_total").increment(1);
        Some(self.block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(s))).expect("header")
    }

    #[test]
    fn basic_headers_are_parsed_strictly() {
        let (u, p) = parse_basic(Some(&basic("demo:pa:ss"))).expect("ok");
        assert_eq!(u, "demo");
        assert_eq!(p.expose_secret(), "pa:ss", "only the first colon splits");
        assert_eq!(parse_basic(None).expect_err("none"), AuthError::Missing);
        assert!(matches!(
            parse_basic(Some(&HeaderValue::from_static("Bearer x"))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_basic(Some(&HeaderValue::from_static("Basic !!!"))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_basic(Some(&basic("nocolon"))),
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn hashes_verify_and_the_decoy_is_a_valid_hash() {
        let h = hash_password(&SecretString::from("pw")).expect("hash");
        assert!(verify(SecretString::from(h.clone()), SecretString::from("pw")).await);
        assert!(!verify(SecretString::from(h), SecretString::from("nope")).await);
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }

    #[test]
    fn every_hash_gets_a_fresh_16_byte_salt() {
        let a = hash_password(&SecretString::from("pw")).expect("hash");
        let b = hash_password(&SecretString::from("pw")).expect("hash");
        let (a, b) = (
            PasswordHash::new(&a).expect("phc"),
            PasswordHash::new(&b).expect("phc"),
        );
        assert_eq!(a.algorithm.as_str(), "argon2id");
        let (sa, sb) = (a.salt.expect("salt"), b.salt.expect("salt"));
        assert_ne!(sa, sb, "a salt is never reused");
        let mut buf = [0u8; 64];
        assert_eq!(sa.decode_b64(&mut buf).expect("b64").len(), 16);
    }

    #[tokio::test]
    async fn the_limiter_blocks_one_address_after_the_limit_and_no_other() {
        let limiter =
            FailureLimiter::new(3, Duration::from_secs(60), Duration::from_secs(30)).expect("on");
        let (a, b): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip"));
        assert_eq!(limiter.record_failure(a).await, None);
        assert_eq!(limiter.record_failure(a).await, None);
        assert_eq!(limiter.blocked_for(a).await, None, "below the limit");
        assert_eq!(
            limiter.record_failure(a).await,
            Some(Duration::from_secs(30))
        );
        let left = limiter.blocked_for(a).await.expect("blocked");
        assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(25));
        assert_eq!(
            limiter.blocked_for(b).await,
            None,
            "another address is not blocked"
        );
        assert!(FailureLimiter::new(0, Duration::from_secs(1), Duration::from_secs(1)).is_none());
        // IPv4-mapped is the IPv4 address; an IPv6 /64 is one client.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert!(limiter.blocked_for(mapped).await.is_some());
        for i in 1..=3 {
            let ip: IpAddr = format!("2001:db8:1:2::{i}").parse().expect("ip");
            limiter.record_failure(ip).await;
        }
        let sibling: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(limiter.blocked_for(sibling).await.is_some(), "same /64");
        assert_eq!(limiter.blocked_for(elsewhere).await, None, "another /64");
    }
}
