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

/// The exchanges tests read (besides mounting them), by what they are.
impl Exchange {
    /// Fixture 02: the login refused with 401 and the web server's HTML page.
    pub fn auth_401_html() -> Exchange {
        Exchange::load("02")
    }

    /// Fixture 10: `POST record:host` with the next available IP, the router excluded.
    pub fn host_create_next_ip() -> Exchange {
        Exchange::load("10")
    }

    /// Fixture 11: `POST record:host` in a full network: 400 "Cannot find 1 available IP
    /// address".
    pub fn host_create_exhausted() -> Exchange {
        Exchange::load("11")
    }

    /// Fixture 15: `PUT record:host/<ref>` with the address list carrying a MAC.
    pub fn host_put_mac() -> Exchange {
        Exchange::load("15")
    }

    /// Fixture 18: `POST fixedaddress` with the next available IP.
    pub fn fixed_create() -> Exchange {
        Exchange::load("18")
    }

    /// Fixture 19: `POST record:a` with the next available IP.
    pub fn a_create() -> Exchange {
        Exchange::load("19")
    }

    /// Fixture 20: `POST record:ptr` for fixture 19's address.
    pub fn ptr_create() -> Exchange {
        Exchange::load("20")
    }

    /// Fixture 21: `GET ipv4address` for 10.20.0.1: used, a reservation holds it.
    pub fn ipv4address_used() -> Exchange {
        Exchange::load("21")
    }

    /// Fixture 22: `POST network` with `func:nextavailablenetwork` in the block.
    pub fn network_create_next_network() -> Exchange {
        Exchange::load("22")
    }

    /// Fixture 23: `PUT network/<ref>` setting a carved network's options.
    pub fn network_put_options() -> Exchange {
        Exchange::load("23")
    }

    /// Fixture 24: `POST fixedaddress` reserving a carved network's gateway.
    pub fn fixed_reserve_gateway() -> Exchange {
        Exchange::load("24")
    }

    /// Fixture 26: `POST record:host` naming an EA the grid does not define: 400.
    pub fn unknown_ea() -> Exchange {
        Exchange::load("26")
    }

    /// Fixture 30: `GET network` with `utilization` among the return fields.
    pub fn networks_utilization() -> Exchange {
        Exchange::load("30")
    }

    /// Fixture 33: `POST record:host` with the next available IPv6 address, the `Gateway` EA's
    /// router excluded.
    pub fn host_create_next_ip_v6() -> Exchange {
        Exchange::load("33")
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

    /// The request of a fixture, answered with its response (tests name it: the methods below).
    pub fn fixture(&self, which: &str) -> Endpoint<'_> {
        self.replay(&Exchange::load(which))
    }

    /// The request of an exchange, answered with its response.
    pub fn replay(&self, ex: &Exchange) -> Endpoint<'_> {
        Endpoint::new(&self.server, Self::matcher(ex), ex.response())
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

    /// Fixture 02: the login refused with 401 and the web server's HTML page (a wrong password).
    pub fn auth_401_html(&self) -> Endpoint<'_> {
        self.replay(&Exchange::auth_401_html())
    }

    /// Fixture 03: the login refused with 403, the account locked out.
    pub fn auth_403_lockout(&self) -> Endpoint<'_> {
        self.fixture("03")
    }

    /// Fixtures 04 and 05: `GET network` without utilization, both pages (`_next_page_id`).
    pub fn networks_paged(&self) -> [Endpoint<'_>; 2] {
        [self.fixture("04"), self.fixture("05")]
    }

    /// Fixtures 06–08: the searches of an inventory besides the IPv4 networks: `GET
    /// ipv6network`, `GET networkcontainer`, and `GET ipv6networkcontainer` (empty).
    pub fn other_inventory_searches(&self) -> [Endpoint<'_>; 3] {
        [self.fixture("06"), self.fixture("07"), self.fixture("08")]
    }

    /// Fixture 10: `POST record:host` with the next available IP of 10.20.0.0/24, the router
    /// excluded; 201 with the host's ref.
    pub fn host_create_next_ip(&self) -> Endpoint<'_> {
        self.replay(&Exchange::host_create_next_ip())
    }

    /// Fixture 11: `POST record:host` in a full network: 400 "Cannot find 1 available IP
    /// address".
    pub fn host_create_exhausted(&self) -> Endpoint<'_> {
        self.fixture("11")
    }

    /// Fixture 12: `POST record:host` for a name that exists: 400 "already exists".
    pub fn host_create_duplicate(&self) -> Endpoint<'_> {
        self.fixture("12")
    }

    /// Fixture 10's request answered like fixture 26: 400, the owner EA is not defined on the
    /// grid.
    pub fn host_create_unknown_ea(&self) -> Endpoint<'_> {
        self.fixture_as("10", "26")
    }

    /// Fixture 13: `GET record:host` by the owner EA, the host of `vm-1`.
    pub fn host_search_owner(&self) -> Endpoint<'_> {
        self.fixture("13")
    }

    /// Fixture 15: `PUT record:host/<ref>` with the address list carrying a MAC.
    pub fn host_put_mac(&self) -> Endpoint<'_> {
        self.replay(&Exchange::host_put_mac())
    }

    /// Fixture 16: `DELETE record:host/<ref>`: 200 with the deleted ref.
    pub fn host_delete(&self) -> Endpoint<'_> {
        self.fixture("16")
    }

    /// Fixture 17: the same `DELETE` once the ref is gone: 404.
    pub fn host_delete_gone(&self) -> Endpoint<'_> {
        self.fixture("17")
    }

    /// Fixture 18: `POST fixedaddress` with the next available IP (`fixed_address` style).
    pub fn fixed_create(&self) -> Endpoint<'_> {
        self.replay(&Exchange::fixed_create())
    }

    /// Fixture 19: `POST record:a` with the next available IP (`a_ptr` style).
    pub fn a_create(&self) -> Endpoint<'_> {
        self.replay(&Exchange::a_create())
    }

    /// Fixture 20: `POST record:ptr` for fixture 19's address.
    pub fn ptr_create(&self) -> Endpoint<'_> {
        self.replay(&Exchange::ptr_create())
    }

    /// Fixture 21: `GET ipv4address` for 10.20.0.1: used, a reservation holds it.
    pub fn ipv4address_used(&self) -> Endpoint<'_> {
        self.replay(&Exchange::ipv4address_used())
    }

    /// Fixture 22: `POST network` with `func:nextavailablenetwork` in the block (carving).
    pub fn network_create_next_network(&self) -> Endpoint<'_> {
        self.replay(&Exchange::network_create_next_network())
    }

    /// Fixture 23: `PUT network/<ref>` setting the carved network's options (routers, DNS).
    pub fn network_put_options(&self) -> Endpoint<'_> {
        self.replay(&Exchange::network_put_options())
    }

    /// Fixture 24: `POST fixedaddress` reserving the carved network's gateway.
    pub fn fixed_reserve_gateway(&self) -> Endpoint<'_> {
        self.replay(&Exchange::fixed_reserve_gateway())
    }

    /// Fixture 25: the login answered 503, the grid temporarily unavailable.
    pub fn grid_503(&self) -> Endpoint<'_> {
        self.fixture("25")
    }

    /// Fixture 30: `GET network` with `utilization` among the return fields, one page.
    pub fn networks_utilization(&self) -> Endpoint<'_> {
        self.replay(&Exchange::networks_utilization())
    }

    /// Fixture 31: `GET extensibleattributedef` by name, the definition found.
    pub fn ea_definition(&self) -> Endpoint<'_> {
        self.fixture("31")
    }

    /// Fixture 32: `GET extensibleattributedef` by name, no such definition (`[]`).
    pub fn ea_definition_undefined(&self) -> Endpoint<'_> {
        self.fixture("32")
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
        let searches = self.networks_paged().into_iter();
        let searches = searches.chain(self.other_inventory_searches());
        for search in searches.chain([self.networks_utilization()]) {
            search.with_cookie().mount().await;
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
