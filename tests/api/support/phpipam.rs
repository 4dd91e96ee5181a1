//! A typed facade over wiremock for phpIPAM: recorded exchanges from `fixtures/phpipam/` become
//! mocks, so adapter tests read as intent and the paths live in the fixtures, not in the tests.

use ipam_gateway::backends::phpipam::PhpipamBackend;
use ipam_gateway::config::{BackendSettings, Settings};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Respond};

use super::exchange::Recording;
use super::mock::Endpoint;

/// The lab credentials of the recordings (user `Admin`).
pub const USER: &str = "Admin";
pub const PASSWORD: &str = "phpipam-lab";
/// The token the recordings carry for `Admin`.
pub const TOKEN: &str = "f1xture-t0ken";

/// The phpIPAM 1.8.2 recordings of `fixtures/phpipam/`.
#[derive(Debug, Clone)]
pub struct Phpipam;

impl Recording for Phpipam {
    const DIR: &'static str = "phpipam";
    const SYSTEM: &'static str = "phpIPAM";
    const DEFAULT_CONTENT_TYPE: &'static str = "application/json; charset=utf-8";
    const REPLAYED_HEADERS: &'static [&'static str] = &["Location"];
}

/// A recorded exchange, by number (`"49"`) or file name.
pub type Exchange = super::exchange::Exchange<Phpipam>;

/// The path of the lab's API app `gateway`, as recorded.
const API: &str = "/api/gateway";

/// The exchanges tests read (besides mounting them), by what they are.
impl Exchange {
    /// Fixture 01: `POST user/` with the lab credentials (Basic).
    pub fn login() -> Exchange {
        Exchange::load("01")
    }

    /// Fixture 25: `GET sections/`, the lab's sections.
    pub fn sections_list() -> Exchange {
        Exchange::load("25")
    }

    /// Fixture 28: `GET sections/3/subnets/`, the subnets of section `Gateway`.
    pub fn section_subnets() -> Exchange {
        Exchange::load("28")
    }

    /// Fixture 35: `GET vlan/3/`, one VLAN.
    pub fn vlan() -> Exchange {
        Exchange::load("35")
    }

    /// Fixture 38: `GET subnets/7/`, phpIPAM answering every number as a string.
    pub fn subnet_stringified() -> Exchange {
        Exchange::load("38")
    }

    /// Fixture 74: `GET addresses/15/`, one address by id.
    pub fn address_by_id() -> Exchange {
        Exchange::load("74")
    }
}

pub struct PhpipamMock {
    pub server: MockServer,
}

impl PhpipamMock {
    pub async fn start() -> Self {
        PhpipamMock {
            server: MockServer::start().await,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The request of a fixture, answered with its recorded response (tests name it: the
    /// methods below).
    pub fn fixture(&self, which: &str) -> Endpoint<'_> {
        self.replay(&Exchange::load(which))
    }

    /// The request of an exchange, answered with its recorded response.
    pub fn replay(&self, ex: &Exchange) -> Endpoint<'_> {
        let mut mock = Mock::given(method(ex.method())).and(path(ex.path()));
        for (k, v) in ex.query() {
            mock = mock.and(query_param(k, v));
        }
        Endpoint::new(&self.server, mock, ex.response())
    }

    /// Fixture 01: `POST user/` with the lab credentials, answered with [`TOKEN`].
    pub fn login(&self) -> Endpoint<'_> {
        self.replay(&Exchange::login())
    }

    /// Fixture 03: `POST user/` with a wrong password: 500 (!) "Invalid username or password".
    pub fn login_bad_password(&self) -> Endpoint<'_> {
        self.fixture("03")
    }

    /// Fixture 138: `POST user/` as `gwtest`, answered with `f1xture-t0ken-gwtest`.
    pub fn login_gwtest(&self) -> Endpoint<'_> {
        self.fixture("138")
    }

    /// Fixture 141: `gwtest`'s login after its token expired, answered with
    /// `f1xture-t0ken-gwtest-2`.
    pub fn login_after_expiry(&self) -> Endpoint<'_> {
        self.fixture("141")
    }

    /// Fixture 144: `POST user/` from an IP phpIPAM has blocked after failed logins: 500.
    pub fn login_ip_blocked(&self) -> Endpoint<'_> {
        self.fixture("144")
    }

    /// Fixture 139: `GET sections/` with an expired token: 401.
    pub fn expired_token(&self) -> Endpoint<'_> {
        self.fixture("139")
    }

    /// Fixture 116: `GET sections/` with a token phpIPAM does not know: 401.
    pub fn invalid_token(&self) -> Endpoint<'_> {
        self.fixture("116")
    }

    /// Fixture 130: `GET sections/` of the `gatewaytok` app, its static app code as the token
    /// (no login).
    pub fn code_app_sections(&self) -> Endpoint<'_> {
        self.fixture("130")
    }

    /// Fixture 94's answer, PHP's fatal error (a 500 with an empty text/html body), to `verb
    /// at`.
    pub fn empty_500_at(&self, verb: &str, at: &str) -> Endpoint<'_> {
        self.fixture_at("94", verb, at)
    }

    /// Fixture 25: `GET sections/`, the lab's sections (`Gateway` among them).
    pub fn sections_list(&self) -> Endpoint<'_> {
        self.replay(&Exchange::sections_list())
    }

    /// Fixture 28: `GET sections/{Gateway}/subnets/`, the subnets of section `Gateway`.
    pub fn section_subnets(&self) -> Endpoint<'_> {
        self.replay(&Exchange::section_subnets())
    }

    /// Fixture 28 asked through the API app `app` (`/api/<app>/sections/3/subnets/`).
    pub fn section_subnets_of_app(&self, app: &str) -> Endpoint<'_> {
        self.fixture_at("28", "GET", &format!("/api/{app}/sections/3/subnets/"))
    }

    /// Fixture 152: `GET addresses/?filter_by=is_gateway&filter_value=1`, every gateway address
    /// of every subnet in one request.
    pub fn gateway_addresses(&self) -> Endpoint<'_> {
        self.fixture("152")
    }

    /// Fixture 84: `GET subnets/7/addresses/`, every address of subnet 7.
    pub fn subnet_addresses(&self) -> Endpoint<'_> {
        self.fixture("84")
    }

    /// Fixture 87's answer, 404 "No addresses found" (a subnet without addresses), to `GET
    /// subnets/<subnet>/addresses/`.
    pub fn subnet_addresses_empty(&self, subnet: u32) -> Endpoint<'_> {
        self.fixture_at("87", "GET", &format!("{API}/subnets/{subnet}/addresses/"))
    }

    /// Fixture 89's answer, 404 "Invalid subnet Id" (a sub-resource of a subnet that does not
    /// exist), to `GET subnets/<subnet>/addresses/`.
    pub fn subnet_addresses_of_unknown_subnet(&self, subnet: u32) -> Endpoint<'_> {
        self.fixture_at("89", "GET", &format!("{API}/subnets/{subnet}/addresses/"))
    }

    /// Fixture 104: `POST subnets/10/first_subnet/26/`, a child subnet carved in block 10.
    pub fn first_subnet(&self) -> Endpoint<'_> {
        self.fixture("104")
    }

    /// Fixture 35: `GET vlan/{id}/`, the VLAN a recorded subnet names.
    pub fn vlan(&self) -> Endpoint<'_> {
        self.replay(&Exchange::vlan())
    }

    /// Fixture 49: `POST addresses/first_free/{subnet 7}/`, the first free address reserved.
    pub fn first_free(&self) -> Endpoint<'_> {
        self.fixture("49")
    }

    /// Fixture 96: `POST addresses/first_free/8/`, the first allocation in the empty /28.
    pub fn first_free_in_empty_28(&self) -> Endpoint<'_> {
        self.fixture("96")
    }

    /// Fixture 98: `POST addresses/first_free/8/` in a full subnet: 404.
    pub fn first_free_full(&self) -> Endpoint<'_> {
        self.fixture("98")
    }

    /// Fixture 23: `POST addresses/` with `is_gateway`, a subnet's gateway address created.
    pub fn address_create_gateway(&self) -> Endpoint<'_> {
        self.fixture("23")
    }

    /// Fixture 53: `POST addresses/` for an address that exists: 409.
    pub fn address_create_duplicate(&self) -> Endpoint<'_> {
        self.fixture("53")
    }

    /// Fixture 54: `POST addresses/` outside the subnet: 500 "<ip> is not a valid address for
    /// subnet <cidr>".
    pub fn address_create_outside_subnet(&self) -> Endpoint<'_> {
        self.fixture("54")
    }

    /// Fixture 65: `GET addresses/search/10.10.0.50/`, the addresses holding an IP.
    pub fn search_ip(&self) -> Endpoint<'_> {
        self.fixture("65")
    }

    /// Fixture 67: `GET addresses/search/10.10.0.200/`, an IP nothing holds: 404.
    pub fn search_ip_not_found(&self) -> Endpoint<'_> {
        self.fixture("67")
    }

    /// Fixture 76: `PATCH addresses/15/` setting a MAC.
    pub fn address_patch_mac(&self) -> Endpoint<'_> {
        self.fixture("76")
    }

    /// Fixture 91's answer (200, deleted) to `DELETE addresses/<id>/`.
    pub fn address_delete(&self, id: u32) -> Endpoint<'_> {
        self.fixture_at("91", "DELETE", &format!("{API}/addresses/{id}/"))
    }

    /// Fixture 92's answer (404, deleted already) to `DELETE addresses/<id>/`.
    pub fn address_delete_again(&self, id: u32) -> Endpoint<'_> {
        self.fixture_at("92", "DELETE", &format!("{API}/addresses/{id}/"))
    }

    /// Another request (same app), answered with a fixture's recorded response: for calls the
    /// recordings show with other ids (e.g. `DELETE addresses/15/` answered like fixture 91).
    pub fn fixture_at(&self, which: &str, verb: &str, at: &str) -> Endpoint<'_> {
        let ex = Exchange::load(which);
        Endpoint::new(
            &self.server,
            Mock::given(method(verb)).and(path(at)),
            ex.response(),
        )
    }

    pub fn respond(&self, verb: &str, at: &str, r: impl Respond + 'static) -> Endpoint<'_> {
        Endpoint::new(&self.server, Mock::given(method(verb)).and(path(at)), r)
    }

    pub async fn requests(&self) -> Vec<wiremock::Request> {
        self.server.received_requests().await.unwrap_or_default()
    }
}

impl Endpoint<'_> {
    /// Only requests carrying this `phpipam-token`.
    pub fn token(self, token: &str) -> Self {
        self.and(header("phpipam-token", token))
    }
}

/// `[backends.ipam]` lines for the lab (`auth` lines replace the user/password default), plus the
/// exposure used throughout: section `Gateway`, `custom_vRA_Range = 1`, block 10.
pub fn config(url: &str, auth: &str) -> String {
    let auth = if auth.is_empty() {
        format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"")
    } else {
        auth.to_owned()
    };
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
kind = "phpipam"
url = "{url}"
app_id = "gateway"
{auth}
sections = ["Gateway"]
connect_timeout_secs = 2
timeout_secs = 5
[backends.ipam.networks]
field = "custom_vRA_Range"
value = 1
[backends.ipam.blocks]
ids = [10]
"#
    )
}

pub fn settings(url: &str, auth: &str) -> Settings {
    Settings::from_toml(&config(url, auth)).expect("phpIPAM test config")
}

pub fn backend(url: &str, auth: &str) -> PhpipamBackend {
    let s = settings(url, auth);
    let BackendSettings::Phpipam { name, settings } = &s.backends[0] else {
        panic!("phpipam backend expected");
    };
    PhpipamBackend::new(name, settings).expect("backend builds")
}
