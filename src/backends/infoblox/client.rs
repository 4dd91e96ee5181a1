//! HTTP to the grid: one `reqwest::Client`, the `ibapauth` session, paging, and the mapping of
//! WAPI's transport and error answers onto [`IpamError`].
//!
//! Session: the first call for a credential is `GET /wapi/vX/?_schema` with HTTP Basic (as
//! ibx-nios-sdk logs in); the grid answers `Set-Cookie: ibapauth="…"`, and every later call sends
//! that cookie instead of the password. A 401 on a cookie drops it and logs in once more. Sessions
//! live in a moka cache keyed by the SHA-256 of `user NUL password`; concurrent first calls share
//! one login (`try_get_with`). Failed logins are remembered for a minute: repeated bad passwords
//! make NIOS lock out every user of the gateway's address for a while (403).
//!
//! Concurrent calls whose cookie is refused share one new login (each drops only the session it
//! used, and `try_get_with` runs one login per key). Reads (`GET`) are retried a bounded number of
//! times ([`retry`]); writes are sent once.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, COOKIE, HeaderValue, SET_COOKIE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::config::{InfobloxAuth, InfobloxSettings};
use super::wire::{Page, WapiError};
use crate::backends::http::Sessions;
use crate::backends::{CallContext, retry};
use crate::domain::{IpamError, IpamResult};

/// Page size of every search (WAPI's own limit for unpaged searches is 1000).
pub const PAGE_SIZE: &str = "1000";
/// A guard against a grid that never stops paging.
const MAX_PAGES: usize = 10_000;

/// One answer that was not an authentication or availability failure.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The body as JSON (`Null` when it is not JSON: HTML error pages, plain text).
    pub body: Value,
    /// The body as text when it is not JSON (first 200 characters), for messages.
    pub plain: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn wapi(&self) -> WapiError {
        serde_json::from_value(self.body.clone()).unwrap_or_default()
    }

    /// The human text of a WAPI error (`text`, else `Error`, else the plain body).
    pub fn text(&self) -> String {
        let e = self.wapi();
        e.text
            .filter(|t| !t.trim().is_empty())
            .or(e.error)
            .unwrap_or_else(|| self.plain.clone())
    }

    /// `text (AdmConDataError, Client.Ibap.Data.Conflict)`: the whole `{Error, code, text}`.
    pub fn detail(&self) -> String {
        let e = self.wapi();
        let kind = e
            .error
            .as_deref()
            .and_then(|x| x.split(':').next())
            .map(str::trim)
            .filter(|x| !x.is_empty());
        let text = self.text();
        let text = if text.trim().is_empty() {
            "empty or non-JSON answer".to_owned()
        } else {
            text
        };
        match (kind, e.code.as_deref()) {
            (Some(k), Some(c)) => format!("{text} ({k}, {c})"),
            (None, Some(c)) => format!("{text} ({c})"),
            (Some(k), None) => format!("{text} ({k})"),
            (None, None) => text,
        }
    }

    /// True when the error text or code contains `needle` (case-insensitive).
    pub fn says(&self, needle: &str) -> bool {
        let n = needle.to_ascii_lowercase();
        let e = self.wapi();
        [e.text, e.error, e.code, Some(self.plain.clone())]
            .into_iter()
            .flatten()
            .any(|t| t.to_ascii_lowercase().contains(&n))
    }
}

/// How a credential talks to the grid after its login.
#[derive(Clone)]
enum Session {
    /// `ibapauth=…` as the grid set it.
    Cookie(SecretString),
    /// The grid set no cookie: Basic on every call.
    Basic,
}

impl Session {
    fn same(&self, other: &Session) -> bool {
        match (self, other) {
            (Session::Cookie(a), Session::Cookie(b)) => a.expose_secret() == b.expose_secret(),
            (Session::Basic, Session::Basic) => true,
            _ => false,
        }
    }
}

pub struct Api {
    backend: String,
    http: reqwest::Client,
    base_url: String,
    wapi_base: String,
    timeout: Duration,
    auth: InfobloxAuth,
    sessions: Sessions<Session>,
    logins: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("backend", &self.backend)
            .field("wapi_base", &self.wapi_base)
            .field("auth", &self.auth_mode())
            .finish_non_exhaustive()
    }
}

/// `ibapauth=<value>` from a `Set-Cookie` header, as it goes back in `Cookie`.
fn ibapauth(headers: &reqwest::header::HeaderMap) -> Option<SecretString> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let pair = text.split(';').next()?.trim();
        let value = pair.strip_prefix("ibapauth=")?;
        (!value.is_empty()).then(|| SecretString::from(pair.to_owned()))
    })
}

impl Api {
    pub fn new(backend: &str, s: &InfobloxSettings) -> IpamResult<Self> {
        let http = crate::backends::http::client(
            backend,
            "the Infoblox grid",
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
            wapi_base: s.wapi_base(),
            timeout: s.timeout,
            auth: s.auth.clone(),
            // NIOS sessions time out after 10 minutes idle by default (`timeout=600`).
            sessions: Sessions::new("infoblox", Duration::from_secs(540)),
            logins: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    pub fn auth_mode(&self) -> &'static str {
        match self.auth {
            InfobloxAuth::User(_) => "user",
            InfobloxAuth::Passthrough { .. } => "passthrough",
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Logins performed so far (sessions opened), for diagnostics.
    pub fn logins(&self) -> usize {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cache scope of a call: what the grid shows depends on the user in passthrough mode.
    pub fn scope(&self, cx: &CallContext) -> String {
        match (&self.auth, &cx.credentials) {
            (InfobloxAuth::Passthrough { .. }, Some(c)) => format!("user:{}", c.username),
            _ => String::new(),
        }
    }

    fn credential<'a>(&'a self, cx: &'a CallContext) -> IpamResult<(&'a str, &'a SecretString)> {
        match &self.auth {
            InfobloxAuth::User(u) => Ok((&u.username, &u.password)),
            InfobloxAuth::Passthrough { fallback } => match (&cx.credentials, fallback) {
                (Some(c), _) => Ok((&c.username, &c.password)),
                (None, Some(u)) => Ok((&u.username, &u.password)),
                (None, None) => Err(IpamError::Unauthorized(format!(
                    "backend {} uses passthrough auth and this call carries no grid credentials",
                    self.backend
                ))),
            },
        }
    }

    fn transport(&self, e: &reqwest::Error) -> IpamError {
        retry::transport_error(
            &self.backend,
            "the Infoblox grid",
            &self.base_url,
            self.timeout,
            e,
        )
    }

    /// Sends a request (`GET`s with bounded retries, see [`retry`]) and reads the answer; returns
    /// it with the `ibapauth` cookie it set, if any. A success answer that is not JSON is an
    /// `Undecodable` error, never an empty result.
    async fn exchange(
        &self,
        method: &Method,
        build: impl FnMut() -> reqwest::RequestBuilder,
    ) -> IpamResult<(Reply, Option<SecretString>)> {
        let raw = retry::exchange(&self.backend, method, self.timeout, build)
            .await
            .map_err(|e| self.transport(&e))?;
        let cookie = ibapauth(&raw.headers);
        let status = raw.status;
        let parsed = serde_json::from_slice::<Value>(&raw.body);
        if let Err(e) = &parsed
            && (200..300).contains(&status)
        {
            return Err(IpamError::Undecodable {
                backend: self.backend.clone(),
                detail: format!("the grid answered {status} with something that is not JSON: {e}"),
            });
        }
        let body = parsed.unwrap_or(Value::Null);
        let plain = if body.is_null() {
            let text = String::from_utf8_lossy(&raw.body);
            // HTML error pages carry nothing useful beyond their title.
            let text = match (text.find("<title>"), text.find("</title>")) {
                (Some(a), Some(b)) if b > a => text[a + 7..b].to_owned(),
                _ => text.into_owned(),
            };
            text.trim().chars().take(200).collect()
        } else {
            String::new()
        };
        Ok((
            Reply {
                status,
                body,
                plain,
            },
            cookie,
        ))
    }

    fn unauthorized(&self, username: &str, reply: &Reply) -> IpamError {
        let why = if reply.status == 403 {
            "403 Forbidden: the user lacks API access, or the grid locked this address out \
             after repeated bad passwords"
                .to_owned()
        } else {
            format!("{} {}", reply.status, reply.text())
        };
        IpamError::Unauthorized(format!(
            "the Infoblox grid refused user '{username}': {}",
            why.trim()
        ))
    }

    fn unavailable(&self, reply: &Reply) -> IpamError {
        IpamError::Unavailable {
            backend: self.backend.clone(),
            detail: format!("the Infoblox grid answered 503: {}", reply.detail()),
        }
    }

    async fn session(&self, username: &str, password: &SecretString) -> IpamResult<Session> {
        self.sessions
            .get_or_login(username, password, self.login(username, password))
            .await
    }

    async fn login(&self, username: &str, password: &SecretString) -> IpamResult<Session> {
        tracing::debug!(backend = %self.backend, user = %username, "Infoblox login");
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, cookie) = self
            .exchange(&Method::GET, || {
                self.http
                    .get(format!("{}/", self.wapi_base))
                    .query(&[("_schema", "1")])
                    .header(ACCEPT, "application/json")
                    .basic_auth(username, Some(password.expose_secret()))
            })
            .await?;
        match reply.status {
            200..=299 => Ok(cookie.map(Session::Cookie).unwrap_or(Session::Basic)),
            401 | 403 => Err(self.unauthorized(username, &reply)),
            503 => Err(self.unavailable(&reply)),
            status => Err(IpamError::Upstream {
                backend: self.backend.clone(),
                status,
                detail: format!("login (GET /?_schema): {}", reply.detail()),
            }),
        }
    }

    async fn forget(&self, username: &str, password: &SecretString, used: &Session) {
        self.sessions
            .forget(username, password, |current| current.same(used))
            .await;
    }

    /// One WAPI call: `path` is an object type (`network`), a ref, or `""` for the root; logs in
    /// first when needed and once more when the session is refused.
    pub async fn send(
        &self,
        cx: &CallContext,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> IpamResult<Reply> {
        let (username, password) = self.credential(cx)?;
        let mut relogged = false;
        loop {
            let session = self.session(username, password).await?;
            let cookie = match &session {
                Session::Cookie(c) => {
                    let mut v = HeaderValue::from_str(c.expose_secret()).map_err(|_| {
                        IpamError::Unauthorized(
                            "the grid's ibapauth cookie is not a valid header value".to_owned(),
                        )
                    })?;
                    v.set_sensitive(true);
                    Some(v)
                }
                Session::Basic => None,
            };
            let url = format!("{}/{}", self.wapi_base, path);
            let (reply, refreshed) = self
                .exchange(&method, || {
                    let mut req = self
                        .http
                        .request(method.clone(), &url)
                        .header(ACCEPT, "application/json");
                    req = match &cookie {
                        Some(v) => req.header(COOKIE, v.clone()),
                        None => req.basic_auth(username, Some(password.expose_secret())),
                    };
                    if !query.is_empty() {
                        req = req.query(query);
                    }
                    if let Some(b) = body {
                        req = req.json(b);
                    }
                    req
                })
                .await?;
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                if !relogged {
                    tracing::debug!(backend = %self.backend, user = %username,
                        "Infoblox session refused; logging in again");
                    self.forget(username, password, &session).await;
                    relogged = true;
                    continue;
                }
                return Err(self.unauthorized(username, &reply));
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return Err(self.unavailable(&reply));
            }
            if let Some(c) = refreshed
                && reply.ok()
                && !matches!(&session, Session::Cookie(old) if old.expose_secret() == c.expose_secret())
            {
                self.sessions
                    .renew(username, password, Session::Cookie(c))
                    .await;
            }
            return Ok(reply);
        }
    }

    pub async fn get(
        &self,
        cx: &CallContext,
        path: &str,
        query: &[(String, String)],
    ) -> IpamResult<Reply> {
        self.send(cx, Method::GET, path, query, None).await
    }

    /// Every object of a search, page by page (`_paging=1&_max_results=1000&_return_as_object=1`,
    /// then `_page_id=<next_page_id>` until the grid sends none).
    pub async fn get_all(
        &self,
        cx: &CallContext,
        object: &str,
        filters: &[(String, String)],
        return_fields: &str,
    ) -> IpamResult<Vec<Value>> {
        self.get_all_with(cx, object, filters, return_fields, Some)
            .await
    }

    /// [`Api::get_all`], each object read by `read` (`None` drops it) as soon as its page has
    /// arrived: only one page is ever held as JSON.
    pub async fn get_all_with<T>(
        &self,
        cx: &CallContext,
        object: &str,
        filters: &[(String, String)],
        return_fields: &str,
        read: impl Fn(Value) -> Option<T>,
    ) -> IpamResult<Vec<T>> {
        let mut base: Vec<(String, String)> = filters.to_vec();
        base.push(("_return_fields".into(), return_fields.into()));
        base.push(("_paging".into(), "1".into()));
        base.push(("_max_results".into(), PAGE_SIZE.into()));
        base.push(("_return_as_object".into(), "1".into()));
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = base.clone();
            if let Some(c) = &cursor {
                q.push(("_page_id".into(), c.clone()));
            }
            let reply = self.get(cx, object, &q).await?;
            if !reply.ok() {
                return Err(self.error(&reply, &format!("search {object}")));
            }
            let page: Page =
                serde_json::from_value(reply.body).map_err(|e| IpamError::Undecodable {
                    backend: self.backend.clone(),
                    detail: format!("unexpected answer to a paged search of {object}: {e}"),
                })?;
            let next = page.next();
            out.extend(page.result.into_iter().filter_map(&read));
            match next {
                Some(n) if cursor.as_deref() != Some(n.as_str()) => cursor = Some(n),
                _ => return Ok(out),
            }
        }
        Err(IpamError::Upstream {
            backend: self.backend.clone(),
            status: 200,
            detail: format!("search of {object} did not end after {MAX_PAGES} pages"),
        })
    }

    /// Maps a WAPI error answer: no free address → `Exhausted`, `already exists` → `Conflict`,
    /// a missing ref or object → `NotFound`, anything else → `Upstream` with `{text, Error, code}`.
    pub fn error(&self, reply: &Reply, context: &str) -> IpamError {
        let detail = reply.detail();
        if reply.says("Cannot find 1 available IP")
            || (reply.says("Cannot find") && reply.says("available"))
        {
            return IpamError::Exhausted(format!("Infoblox, {context}: {detail}"));
        }
        if reply.says("already exists") {
            return IpamError::Conflict(format!("Infoblox, {context}: {detail}"));
        }
        if reply.status == 404 || reply.says("Data.NotFound") {
            return IpamError::NotFound(format!("Infoblox, {context}: {detail}"));
        }
        IpamError::Upstream {
            backend: self.backend.clone(),
            status: reply.status,
            detail: format!("{context}: {detail}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_keep_text_type_and_code() {
        let r = Reply {
            status: 400,
            body: json!({"Error": "AdmConProtoError: Unknown extensible attribute: VM Name",
                "code": "Client.Ibap.Proto", "text": "Unknown extensible attribute: VM Name"}),
            plain: String::new(),
        };
        assert_eq!(
            r.detail(),
            "Unknown extensible attribute: VM Name (AdmConProtoError, Client.Ibap.Proto)"
        );
        assert!(r.says("unknown extensible"));
    }
}
