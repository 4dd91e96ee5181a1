//! Bounded, jittered retries of backend **reads** (shared by the phpIPAM and Infoblox clients).
//!
//! Only idempotent requests (`GET`) are retried, only on a connect error, a timeout, or an answer
//! of 502/503/504, at most [`ATTEMPTS`] times in all, with a random 50–200 ms pause between
//! attempts, and never beyond the backend's configured timeout: the whole exchange, retries
//! included, shares one deadline (each attempt gets what is left of it). Writes — allocations
//! above all — are sent exactly once: a write whose answer was lost is recovered by the service
//! through the owner lookup, never by sending it again (which could take a second address).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use crate::domain::IpamError;

/// Attempts per read, the first included.
pub const ATTEMPTS: u32 = 3;
/// Bounds of the random pause between two attempts.
pub const JITTER_MIN: Duration = Duration::from_millis(50);
pub const JITTER_MAX: Duration = Duration::from_millis(200);

/// Status codes of a gateway or proxy in front of the IPAM that is briefly unavailable.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Transport failures worth another attempt (the request never reached the IPAM, or its answer
/// did not come in time). A refused certificate or a failed TLS handshake is not one: it fails
/// the same way a moment later.
pub fn retryable_error(e: &reqwest::Error) -> bool {
    (e.is_connect() && super::tls::describe(e).is_none()) || e.is_timeout()
}

/// A uniformly random pause in `[JITTER_MIN, JITTER_MAX]` (std's per-instance random hash keys
/// are enough randomness to spread concurrent retries; no crypto needed).
pub fn jitter() -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let span = (JITTER_MAX - JITTER_MIN).as_millis() as u64;
    JITTER_MIN + Duration::from_millis(h.finish() % (span + 1))
}

/// One HTTP answer, read to its end.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

async fn once(req: reqwest::RequestBuilder) -> Result<Raw, reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?.into();
    Ok(Raw {
        status,
        headers,
        body,
    })
}

/// Sends the request `build` makes; a `GET` is retried as the module says, within `budget`.
/// `build` is called once per attempt. Any other method is sent exactly once.
pub async fn exchange(
    backend: &str,
    method: &Method,
    budget: Duration,
    mut build: impl FnMut() -> reqwest::RequestBuilder,
) -> Result<Raw, reqwest::Error> {
    if *method != Method::GET {
        return once(build()).await;
    }
    let deadline = Instant::now() + budget;
    let mut attempt = 1;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = once(build().timeout(left)).await;
        let why = match &outcome {
            Ok(raw) if retryable_status(raw.status) => format!("status {}", raw.status),
            Err(e) if retryable_error(e) => if e.is_timeout() {
                "timeout"
            } else {
                "connect error"
            }
            .to_owned(),
            _ => return outcome,
        };
        let pause = jitter();
        if attempt >= ATTEMPTS || Instant::now() + pause >= deadline {
            return outcome;
        }
        tracing::debug!(backend, attempt, reason = %why, pause_ms = pause.as_millis() as u64,
            "backend read failed; retrying");
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

/// The domain error for a request that got no HTTP answer: a timeout, a refused connection, or
/// another transport failure, naming the backend and `what` it is (`phpIPAM`, `the Infoblox
/// grid`) at `base_url`, and TLS as the cause when it is (the reason a certificate was refused,
/// with its fingerprint). Never the request URL (it may carry query values) nor any header.
pub fn transport_error(
    backend: &str,
    what: &str,
    base_url: &str,
    timeout: Duration,
    e: &reqwest::Error,
) -> IpamError {
    if e.is_timeout() {
        IpamError::Timeout {
            backend: backend.to_owned(),
            seconds: timeout.as_secs(),
        }
    } else if let Some(tls) = super::tls::describe(e) {
        IpamError::Unavailable {
            backend: backend.to_owned(),
            detail: format!("cannot connect to {what} at {base_url}: {tls}"),
        }
    } else if e.is_connect() {
        IpamError::Unavailable {
            backend: backend.to_owned(),
            detail: format!("cannot connect to {what} at {base_url}"),
        }
    } else {
        IpamError::Unavailable {
            backend: backend.to_owned(),
            detail: format!(
                "request to {what} at {base_url} failed: {}",
                std::error::Error::source(e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "transport error".to_owned())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((JITTER_MIN..=JITTER_MAX).contains(&j), "{j:?}");
        }
    }

    #[test]
    fn only_gateway_errors_are_retried() {
        assert!(retryable_status(502) && retryable_status(503) && retryable_status(504));
        assert!(!retryable_status(500) && !retryable_status(501) && !retryable_status(404));
        assert!(!retryable_status(200) && !retryable_status(505));
    }
}
