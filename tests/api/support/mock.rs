//! What the phpIPAM and Infoblox wiremock facades share: an endpoint being set up (a matcher and
//! its answer) and a mounted one (how often it may or must be hit). Each facade adds its own
//! matchers (a phpIPAM token, an Infoblox session cookie) as methods on [`Endpoint`].

use wiremock::{Mock, MockBuilder, MockServer, Respond, ResponseTemplate};

pub struct Endpoint<'a> {
    server: &'a MockServer,
    mock: MockBuilder,
    response: Box<dyn Respond>,
}

impl<'a> Endpoint<'a> {
    pub fn new(
        server: &'a MockServer,
        mock: MockBuilder,
        response: impl Respond + 'static,
    ) -> Self {
        Endpoint {
            server,
            mock,
            response: Box::new(response),
        }
    }

    /// Also requires `matcher` (a facade's token or cookie check).
    pub fn and(self, matcher: impl wiremock::Match + 'static) -> Self {
        Endpoint {
            mock: self.mock.and(matcher),
            ..self
        }
    }

    pub fn mounted(self) -> Mounted<'a> {
        Mounted {
            server: self.server,
            mock: self.mock.respond_with(Boxed(self.response)),
        }
    }

    pub async fn mount(self) {
        self.mounted().mount().await
    }
}

struct Boxed(Box<dyn Respond>);

impl Respond for Boxed {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.0.respond(request)
    }
}

pub struct Mounted<'a> {
    server: &'a MockServer,
    mock: Mock,
}

impl Mounted<'_> {
    pub fn expect(self, n: u64) -> Self {
        Self {
            mock: self.mock.expect(n),
            ..self
        }
    }

    pub fn times(self, n: u64) -> Self {
        Self {
            mock: self.mock.up_to_n_times(n),
            ..self
        }
    }

    pub fn priority(self, p: u8) -> Self {
        Self {
            mock: self.mock.with_priority(p),
            ..self
        }
    }

    pub async fn mount(self) {
        self.mock.mount(self.server).await
    }
}
