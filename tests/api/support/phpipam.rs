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

    /// The request of a fixture, answered with its recorded response.
    pub fn fixture(&self, which: &str) -> Endpoint<'_> {
        let ex = Exchange::load(which);
        let mut mock = Mock::given(method(ex.method())).and(path(ex.path()));
        for (k, v) in ex.query() {
            mock = mock.and(query_param(k, v));
        }
        Endpoint::new(&self.server, mock, ex.response())
    }

    /// Fixture 01: `POST user/` with the lab credentials, answered with [`TOKEN`].
    pub fn login(&self) -> Endpoint<'_> {
        self.fixture("01")
    }

    /// Fixture 25: `GET sections/`, the lab's sections (`Gateway` among them).
    pub fn sections_list(&self) -> Endpoint<'_> {
        self.fixture("25")
    }

    /// Fixture 28: `GET sections/{Gateway}/subnets/`, the subnets of section `Gateway`.
    pub fn section_subnets(&self) -> Endpoint<'_> {
        self.fixture("28")
    }

    /// Fixture 35: `GET vlan/{id}/`, the VLAN a recorded subnet names.
    pub fn vlan(&self) -> Endpoint<'_> {
        self.fixture("35")
    }

    /// Fixture 49: `POST addresses/first_free/{subnet 7}/`, the first free address reserved.
    pub fn first_free(&self) -> Endpoint<'_> {
        self.fixture("49")
    }

    /// Fixture 65: `GET addresses/search/10.10.0.50/`, the addresses holding an IP.
    pub fn search_ip(&self) -> Endpoint<'_> {
        self.fixture("65")
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
