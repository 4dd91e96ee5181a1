//! HTTP to phpIPAM: one `reqwest::Client`, authentication (token login, static app code,
//! passthrough), and the mapping of phpIPAM's transport and framework errors.
//!
//! Tokens live in a moka cache keyed by the SHA-256 of `user NUL password`, never by the clear
//! credentials. A 401 drops the token and logs in once more; failed logins are remembered for a
//! minute so a caller with a wrong password cannot push phpIPAM into its IP block (more than 10
//! failures in 5 minutes blocks the gateway's address for every user).
//!
//! Concurrent calls that find the token refused share one new login: each drops the token it used
//! only if the cache still holds that very token, and `try_get_with` runs one login per key.
//! Reads (`GET`) are retried a bounded number of times ([`retry`]); writes are sent once.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::config::{PhpipamAuth, PhpipamSettings};
use super::wire::{Envelope, Login};
use crate::backends::http::Sessions;
use crate::backends::{CallContext, retry};
use crate::domain::{IpamError, IpamResult};

/// One answer from phpIPAM that was not an authentication or availability failure; `data` as
/// JSON, or as the reader given to [`Api::get_with`] made it.
#[derive(Debug)]
pub struct Reply<D = Value> {
    pub status: u16,
    pub env: Envelope<D>,
}

/// Reads a whole answer body into an envelope.
pub type Reader<'a, D> = &'a (dyn Fn(&[u8]) -> serde_json::Result<Envelope<D>> + Sync);

fn read_json(body: &[u8]) -> serde_json::Result<Envelope> {
    serde_json::from_slice(body)
}

impl<D> Reply<D> {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn message(&self) -> &str {
        self.env.message.as_deref().unwrap_or("")
    }

    /// True when phpIPAM's message contains `needle` (case-insensitive).
    pub fn says(&self, needle: &str) -> bool {
        self.message()
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
    }
}

enum Credential<'a> {
    Code(&'a SecretString),
    User {
        username: &'a str,
        password: &'a SecretString,
    },
}

pub struct Api {
    backend: String,
    http: reqwest::Client,
    base_url: String,
    api_base: String,
    timeout: Duration,
    auth: PhpipamAuth,
    tokens: Sessions<SecretString>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("backend", &self.backend)
            .field("api_base", &self.api_base)
            .field("auth", &self.auth_mode())
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(backend: &str, s: &PhpipamSettings) -> IpamResult<Self> {
        let http = crate::backends::http::client(
            backend,
            "phpIPAM",
            s.connect_timeout,
            s.timeout,
            s.ca_pem.as_deref(),
            s.verify_tls,
            s.tls_fingerprint,
        )?;
        Ok(Api {
            backend: backend.to_owned(),
            http,
            base_url: crate::config::http::shown(&s.base_url),
            api_base: s.api_base(),
            timeout: s.timeout,
            auth: s.auth.clone(),
            // phpIPAM tokens slide 6 h from the last use; an idle one is dropped well before.
            tokens: Sessions::new("phpipam", Duration::from_secs(3600)),
        })
    }

    pub fn auth_mode(&self) -> &'static str {
        match self.auth {
            PhpipamAuth::User(_) => "user",
            PhpipamAuth::AppCode(_) => "app_code",
            PhpipamAuth::Passthrough { .. } => "passthrough",
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Cache scope of a call: what phpIPAM shows depends on the user in passthrough mode.
    pub fn scope(&self, cx: &CallContext) -> String {
        match (&self.auth, &cx.credentials) {
            (PhpipamAuth::Passthrough { .. }, Some(c)) => format!("user:{}", c.username),
            _ => String::new(),
        }
    }

    fn credential<'a>(&'a self, cx: &'a CallContext) -> IpamResult<Credential<'a>> {
        match &self.auth {
            PhpipamAuth::User(u) => Ok(Credential::User {
                username: &u.username,
                password: &u.password,
            }),
            PhpipamAuth::AppCode(code) => Ok(Credential::Code(code)),
            PhpipamAuth::Passthrough { fallback } => match (&cx.credentials, fallback) {
                (Some(c), _) => Ok(Credential::User {
                    username: &c.username,
                    password: &c.password,
                }),
                (None, Some(u)) => Ok(Credential::User {
                    username: &u.username,
                    password: &u.password,
                }),
                (None, None) => Err(IpamError::Unauthorized(format!(
                    "backend {} uses passthrough auth and this call carries no phpIPAM credentials",
                    self.backend
                ))),
            },
        }
    }

    pub fn upstream<D>(&self, reply: &Reply<D>) -> IpamError {
        IpamError::Upstream {
            backend: self.backend.clone(),
            status: reply.status,
            detail: if reply.message().is_empty() {
                "empty or non-JSON answer".to_owned()
            } else {
                reply.message().to_owned()
            },
        }
    }

    fn transport(&self, e: &reqwest::Error) -> IpamError {
        retry::transport_error(&self.backend, "phpIPAM", &self.base_url, self.timeout, e)
    }

    /// Sends a request (`GET`s with bounded retries, see [`retry`]) and reads phpIPAM's envelope.
    /// A success answer that is not phpIPAM's JSON is an `Undecodable` error, never an empty result.
    async fn exchange<D>(
        &self,
        method: &Method,
        build: impl FnMut() -> reqwest::RequestBuilder,
        read: Reader<'_, D>,
    ) -> IpamResult<Reply<D>> {
        let raw = retry::exchange(&self.backend, method, self.timeout, build)
            .await
            .map_err(|e| self.transport(&e))?;
        let status = raw.status;
        match read(&raw.body) {
            Ok(env) => Ok(Reply { status, env }),
            Err(e) if (200..300).contains(&status) => Err(IpamError::Undecodable {
                backend: self.backend.clone(),
                detail: format!(
                    "phpIPAM answered {status} with something that is not its JSON: {e}"
                ),
            }),
            Err(_) => Ok(Reply {
                status,
                env: Envelope::default(),
            }),
        }
    }

    /// Availability failures every controller can answer with.
    fn availability<D>(&self, reply: &Reply<D>) -> Option<IpamError> {
        if reply.says("has been blocked") || reply.status == 503 {
            return Some(IpamError::Unavailable {
                backend: self.backend.clone(),
                detail: if reply.message().is_empty() {
                    format!(
                        "phpIPAM answered {} (empty or non-JSON answer)",
                        reply.status
                    )
                } else {
                    format!("phpIPAM answered {}: {}", reply.status, reply.message())
                },
            });
        }
        None
    }

    async fn token(&self, username: &str, password: &SecretString) -> IpamResult<SecretString> {
        self.tokens
            .get_or_login(username, password, self.login(username, password))
            .await
    }

    async fn login(&self, username: &str, password: &SecretString) -> IpamResult<SecretString> {
        tracing::debug!(backend = %self.backend, user = %username, "phpIPAM login");
        let reply = self
            .exchange(
                &Method::POST,
                || {
                    self.http
                        .post(format!("{}/user/", self.api_base))
                        .header(ACCEPT, "application/json")
                        .basic_auth(username, Some(password.expose_secret()))
                },
                &read_json,
            )
            .await?;
        if let Some(e) = self.availability(&reply) {
            return Err(e);
        }
        if reply.ok() {
            let login: Login = reply
                .env
                .data
                .clone()
                .and_then(|d| serde_json::from_value(d).ok())
                .ok_or_else(|| IpamError::Undecodable {
                    backend: self.backend.clone(),
                    detail: format!("login answer ({}) carries no token", reply.status),
                })?;
            return Ok(SecretString::from(login.token));
        }
        if reply.says("invalid username or password")
            || reply.says("provide username")
            || reply.status == 401
            || reply.status == 403
        {
            return Err(IpamError::Unauthorized(format!(
                "phpIPAM rejected the credentials of user '{username}': {}",
                reply.message()
            )));
        }
        Err(self.upstream(&reply))
    }

    /// Drops a token that phpIPAM no longer accepts (unless another task already replaced it).
    async fn forget(&self, username: &str, password: &SecretString, used: &SecretString) {
        self.tokens
            .forget(username, password, |current| {
                current.expose_secret() == used.expose_secret()
            })
            .await;
    }

    pub async fn get(
        &self,
        cx: &CallContext,
        path: &str,
        query: &[(&str, &str)],
    ) -> IpamResult<Reply> {
        self.send(cx, Method::GET, path, query, None).await
    }

    /// A `GET` whose answer is read by `read` (see [`super::wire::EnvelopeSeed`]) instead of
    /// into a JSON tree.
    pub async fn get_with<D>(
        &self,
        cx: &CallContext,
        path: &str,
        query: &[(&str, &str)],
        read: Reader<'_, D>,
    ) -> IpamResult<Reply<D>> {
        self.send_with(cx, Method::GET, path, query, None, read)
            .await
    }

    /// One API call (`path` relative to `/api/{app}/`, e.g. `addresses/first_free/7/`), logging in
    /// first when needed and once more after a 401.
    pub async fn send(
        &self,
        cx: &CallContext,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> IpamResult<Reply> {
        self.send_with(cx, method, path, query, body, &read_json)
            .await
    }

    async fn send_with<D>(
        &self,
        cx: &CallContext,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        read: Reader<'_, D>,
    ) -> IpamResult<Reply<D>> {
        let cred = self.credential(cx)?;
        let mut relogged = false;
        loop {
            let token = match &cred {
                Credential::Code(code) => (*code).clone(),
                Credential::User { username, password } => self.token(username, password).await?,
            };
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                IpamError::Unauthorized("phpIPAM token is not a valid header value".to_owned())
            })?;
            value.set_sensitive(true);
            let url = format!("{}/{}", self.api_base, path);
            let reply = self
                .exchange(
                    &method,
                    || {
                        let mut req = self
                            .http
                            .request(method.clone(), &url)
                            .header(ACCEPT, "application/json")
                            .header("phpipam-token", value.clone());
                        if !query.is_empty() {
                            req = req.query(query);
                        }
                        if let Some(b) = body {
                            req = req.json(b);
                        }
                        req
                    },
                    read,
                )
                .await?;
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(e) = self.availability(&reply) {
                return Err(e);
            }
            // A write through a read-only app (`app_permissions` 1) is 401 "invalid permissions"
            // with a valid token (fixture 126; phpIPAM 1.8.2 api/index.php checks it per method
            // before any controller runs): not a token problem, so no new login, the caller
            // reads the answer.
            if status == StatusCode::UNAUTHORIZED && reply.says("invalid permissions") {
                return Ok(reply);
            }
            // 401 everywhere; 403 "Invalid token" for another app's code on an ssl_code app.
            if status == StatusCode::UNAUTHORIZED
                || (status == StatusCode::FORBIDDEN && reply.says("invalid token"))
            {
                match &cred {
                    Credential::User { username, password } if !relogged => {
                        tracing::debug!(backend = %self.backend, user = %username,
                            "phpIPAM token refused; logging in again");
                        self.forget(username, password, &token).await;
                        relogged = true;
                        continue;
                    }
                    Credential::User { username, .. } => {
                        return Err(IpamError::Unauthorized(format!(
                            "phpIPAM refused user '{username}': {}",
                            reply.message()
                        )));
                    }
                    Credential::Code(_) => {
                        return Err(IpamError::Unauthorized(format!(
                            "phpIPAM refused the app code of app '{}': {}",
                            self.api_base.rsplit('/').next().unwrap_or_default(),
                            reply.message()
                        )));
                    }
                }
            }
            return Ok(reply);
        }
    }
}
