//! Is a backend there: the cheap readiness question ([`Ipam::ping`]) and the full set-up check
//! ([`Ipam::check`]), both with the gateway's own credentials.

use super::{Ipam, timed};
use crate::backends::CallContext;
use crate::domain::{BackendStatus, IpamResult};

impl Ipam {
    /// Credentials and reachability of one backend, with the gateway's own credentials.
    /// Reachable and authenticated, cheaply (see [`Backend::ping`]); the backend's kind.
    pub async fn ping(&self, backend: &str) -> IpamResult<&'static str> {
        let b = self.backend(backend)?;
        timed(backend, "ping", b.ping(&CallContext::default())).await?;
        Ok(b.kind())
    }

    /// Credentials, reachability and set-up of one backend ([`Backend::check`]), with the
    /// gateway's own credentials. Set-up problems are an error here
    /// ([`BackendStatus::setup_error`]): what vRA's validate-endpoint and Avi's TestLogin report.
    pub async fn check(&self, backend: &str) -> IpamResult<BackendStatus> {
        let b = self.backend(backend)?;
        let status = timed(backend, "check", b.check(&CallContext::default())).await?;
        match status.setup_error() {
            Some(e) => Err(e),
            None => Ok(status),
        }
    }
}
