//! A typed facade over wiremock for the Infoblox WAPI: the exchanges of `fixtures/infoblox/`
//! (written from the sources their `source` field names) become mocks, so adapter tests read as
//! intent and the paths, queries and bodies live in the fixtures.

use std::path::PathBuf;

use ipam_gateway::backends::infoblox::InfobloxBackend;
use ipam_gateway::config::{BackendSettings, Settings};
use serde_json::Value;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer, Respond, ResponseTemplate};

use super::mock::Endpoint;

/// The lab grid's API user (fixture 01 authenticates as it).
pub const USER: &str = "admin";
pub const PASSWORD: &str = "infoblox";
/// What the gateway sends back after fixture 01's `Set-Cookie`.
pub const COOKIE: &str = "ibapauth=\"ip=127.0.0.1,client=API,group=admin-group,ctime=1731651582,timeout=600,mtime=1731651582,su=1,auth=LOCAL,user=admin,xOdj0yvvEvBpRXesDLHIirxYXyER0m6CrKg\"";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/infoblox")
}

/// Every fixture file name, sorted.
pub fn all() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("fixtures/infoblox")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A fixture exchange, by number (`"10"`) or file name.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub name: String,
    pub raw: Value,
}

impl Exchange {
    pub fn load(which: &str) -> Exchange {
        let prefix = format!("{}-", which.trim_end_matches(".json"));
        let entry = all()
            .into_iter()
            .find(|n| n == which || n.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no Infoblox fixture {which}"));
        let text = std::fs::read_to_string(dir().join(&entry)).expect("read fixture");
        Exchange {
            name: entry,
            raw: serde_json::from_str(&text).expect("fixture JSON"),
        }
    }

    pub fn source(&self) -> &str {
        self.raw["source"].as_str().unwrap_or_default()
    }

    pub fn method(&self) -> &str {
        self.raw["request"]["method"].as_str().expect("method")
    }

    /// The request path and query as sent.
    pub fn target(&self) -> &str {
        self.raw["request"]["path"].as_str().expect("path")
    }

    pub fn path(&self) -> &str {
        let p = self.target();
        p.split('?').next().unwrap_or(p)
    }

    pub fn query(&self) -> Vec<(String, String)> {
        self.target()
            .split_once('?')
            .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }

    pub fn request_body(&self) -> &Value {
        &self.raw["request"]["body"]
    }

    pub fn status(&self) -> u16 {
        u16::try_from(self.raw["response"]["status"].as_u64().expect("status")).expect("u16")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw["response"]["headers"]
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }

    /// The response body as JSON (`Null` for raw bodies).
    pub fn body(&self) -> &Value {
        &self.raw["response"]["body"]
    }

    pub fn body_text(&self) -> String {
        match self.raw["response"]["body_raw"].as_str() {
            Some(raw) => raw.to_owned(),
            None => self.body().to_string(),
        }
    }

    pub fn response(&self) -> ResponseTemplate {
        let ct = self.header("content-type").unwrap_or("application/json");
        let mut t = ResponseTemplate::new(self.status()).set_body_raw(self.body_text(), ct);
        if let Some(c) = self.header("set-cookie") {
            t = t.insert_header("Set-Cookie", c);
        }
        t
    }
}

/// The `Cookie` header, compared whole (wiremock's `header` matcher splits values at commas,
/// and an `ibapauth` value is full of them).
struct CookieIs(&'static str);

impl wiremock::Match for CookieIs {
    fn matches(&self, request: &wiremock::Request) -> bool {
        request
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == self.0)
    }
}

pub struct InfobloxMock {
    pub server: MockServer,
}

impl InfobloxMock {
    pub async fn start() -> Self {
        InfobloxMock {
            server: MockServer::start().await,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    fn matcher(ex: &Exchange) -> MockBuilder {
        let mut mock = Mock::given(method(ex.method())).and(path(ex.path()));
        let query = ex.query();
        for (k, v) in &query {
            mock = mock.and(query_param(k.as_str(), v.as_str()));
        }
        if query.iter().any(|(k, _)| k == "_paging") && !query.iter().any(|(k, _)| k == "_page_id")
        {
            mock = mock.and(query_param_is_missing("_page_id"));
        }
        mock
    }

    /// The request of a fixture, answered with its response.
    pub fn fixture(&self, which: &str) -> Endpoint<'_> {
        let ex = Exchange::load(which);
        Endpoint::new(&self.server, Self::matcher(&ex), ex.response())
    }

    /// Fixture 01: the schema request that logs in, answered with the session cookie
    /// ([`COOKIE`]).
    pub fn login(&self) -> Endpoint<'_> {
        self.fixture("01")
    }

    /// The request of one fixture answered with another's response (e.g. fixture 10's request
    /// answered like 11 when the network is full).
    pub fn fixture_as(&self, which: &str, answer: &str) -> Endpoint<'_> {
        let ex = Exchange::load(which);
        Endpoint::new(
            &self.server,
            Self::matcher(&ex),
            Exchange::load(answer).response(),
        )
    }

    pub fn respond(&self, verb: &str, at: &str, r: impl Respond + 'static) -> Endpoint<'_> {
        Endpoint::new(&self.server, Mock::given(method(verb)).and(path(at)), r)
    }

    /// Login plus the searches of an inventory (fixtures 01, 04–08, and 30: the IPv4 networks
    /// with their utilization, as `free_counts = "utilization"`, the default, asks for them).
    pub async fn inventory(&self) {
        self.login().mount().await;
        for f in ["04", "05", "06", "07", "08", "30"] {
            self.fixture(f).with_cookie().mount().await;
        }
    }

    pub async fn requests(&self) -> Vec<wiremock::Request> {
        self.server.received_requests().await.unwrap_or_default()
    }
}

impl Endpoint<'_> {
    /// Only requests carrying fixture 01's session cookie.
    pub fn with_cookie(self) -> Self {
        self.and(CookieIs(COOKIE))
    }
}

/// A gateway config on a grid at `url`: client `demo` on backend `ipam`, user admin, view
/// `default` (plus `views`), `vRA-Enabled=true` networks, block 10.100.0.0/16; `extra` lines go
/// into `[backends.ipam]` (e.g. `record_style = "a_ptr"`).
pub fn config_with(url: &str, views: &str, extra: &str) -> String {
    format!(
        r#"
[server.tls]
mode = "off"
[metrics]
enabled = false
[clients.demo]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo"
backend = "ipam"
[backends.ipam]
kind = "infoblox"
url = "{url}"
network_views = [{views}]
blocks = ["10.100.0.0/16"]
connect_timeout_secs = 2
timeout_secs = 5
{extra}
[backends.ipam.network_filter]
"vRA-Enabled" = "true"
"#
    )
}

/// [`config_with`] on view `default` with the lab user.
pub fn config(url: &str, extra: &str) -> String {
    let extra = if extra.contains("username") || extra.contains("passthrough") {
        extra.to_owned()
    } else {
        format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"\n{extra}")
    };
    config_with(url, "\"default\"", &extra)
}

pub fn settings(text: &str) -> Settings {
    Settings::from_toml(text).expect("Infoblox test config")
}

pub fn backend_from(text: &str) -> InfobloxBackend {
    let s = settings(text);
    let BackendSettings::Infoblox { name, settings } = &s.backends[0] else {
        panic!("infoblox backend expected");
    };
    InfobloxBackend::new(name, settings).expect("backend builds")
}

pub fn backend(url: &str, extra: &str) -> InfobloxBackend {
    backend_from(&config(url, extra))
}
