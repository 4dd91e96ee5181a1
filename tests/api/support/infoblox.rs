//! A typed facade over wiremock for the Infoblox WAPI: the exchanges of `fixtures/infoblox/`
//! (written from the sources their `source` field names) become mocks, so adapter tests read as
//! intent and the paths, queries and bodies live in the fixtures.

use ipam_gateway::backends::infoblox::InfobloxBackend;
use ipam_gateway::config::{BackendSettings, Settings};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer, Respond};

use super::exchange::Recording;
use super::mock::Endpoint;

/// The lab grid's API user (fixture 01 authenticates as it).
pub const USER: &str = "admin";
pub const PASSWORD: &str = "infoblox";
/// What the gateway sends back after fixture 01's `Set-Cookie`.
pub const COOKIE: &str = "ibapauth=\"ip=127.0.0.1,client=API,group=admin-group,ctime=1731651582,timeout=600,mtime=1731651582,su=1,auth=LOCAL,user=admin,xOdj0yvvEvBpRXesDLHIirxYXyER0m6CrKg\"";

/// The WAPI exchanges of `fixtures/infoblox/`.
#[derive(Debug, Clone)]
pub struct Infoblox;

impl Recording for Infoblox {
    const DIR: &'static str = "infoblox";
    const SYSTEM: &'static str = "Infoblox";
    const DEFAULT_CONTENT_TYPE: &'static str = "application/json";
    const REPLAYED_HEADERS: &'static [&'static str] = &["Set-Cookie"];
}

/// Every fixture file name, sorted.
pub fn all() -> Vec<String> {
    super::exchange::all::<Infoblox>()
}

/// A fixture exchange, by number (`"10"`) or file name.
pub type Exchange = super::exchange::Exchange<Infoblox>;

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

    /// Fixture 09: `GET networkview`, the grid's network views.
    pub fn network_views(&self) -> Endpoint<'_> {
        self.fixture("09")
    }

    /// Fixture 14: `GET record:host?ipv4addr=10.20.0.2`, the host records holding an address.
    pub fn host_by_address(&self) -> Endpoint<'_> {
        self.fixture("14")
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
