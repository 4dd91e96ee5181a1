//! What every request handler shares: the core, the authenticator and the readiness timeout.
//!
//! Its own module so that the dependencies point one way: contracts (`contracts::*`) use the
//! state, the HTTP edge (`server`) mounts the contracts, and nothing in a contract imports the
//! edge.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::service::Ipam;

#[derive(Clone)]
pub struct AppState {
    pub ipam: Arc<Ipam>,
    pub auth: Arc<Authenticator>,
    /// How long `/readyz` waits for each backend's answer.
    pub backend_timeout: Duration,
}
