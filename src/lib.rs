//! ipam-gateway: one service in front of phpIPAM, Infoblox or an embedded store, speaking the vRA 8
//! IPAM contract and the Avi custom IPAM contract.
//!
//! [`Application`] is the composition root, used by `main` and by the tests alike.

pub mod auth;
pub mod backends;
pub mod config;
pub mod contracts;
pub mod dns;
pub mod domain;
pub mod ipmath;
pub mod package;
pub mod server;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::service::Ipam;
use crate::state::AppState;

/// A built gateway: listeners bound, backends open, ready to serve.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    router: axum::Router,
    tls: Option<RustlsConfig>,
    fingerprint: Option<String>,
    ipam: Arc<Ipam>,
    shutdown: ShutdownHandle,
}

/// Stops a running [`Application`]: in-flight requests get `grace` to finish.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: axum_server::Handle<SocketAddr>,
    metrics: watch::Sender<bool>,
    grace: Duration,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.server.graceful_shutdown(Some(self.grace));
        let _ = self.metrics.send(true);
    }
}

impl Application {
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        // A configured inventory is held once at a time: the config's lists are validated into
        // `settings.backends`, and each backend's validated list goes once it has been seeded.
        settings.release_inventories();
        let avi_dns = Arc::new(crate::contracts::avi_dns::AviDnsTargets::from_settings(
            &settings,
        ));
        let mut backends = Vec::new();
        for b in std::mem::take(&mut settings.backends) {
            let backend = backends::build(&b)
                .with_context(|| format!("cannot start backend `{}`", b.name()))?;
            backends.push(backend);
        }
        let server = &settings.server;
        if let Some(p) = &settings.passthrough
            && let Some(b) = backends.iter().find(|b| b.name() == *p)
            && !b.supports_passthrough()
        {
            anyhow::bail!(
                "config key `passthrough.backend`: backend `{}` ({}) cannot verify callers' credentials",
                b.name(),
                b.kind()
            );
        }
        let ipam = Arc::new(Ipam::new(backends, settings.cache.networks_ttl).with_dns(
            service::DnsRegistry::from_settings(&settings.dns, &settings.dns_attach),
        ));
        let state = AppState {
            ipam: ipam.clone(),
            auth: Arc::new(Authenticator::new(&settings)),
            backend_timeout: server.readyz_timeout,
        };
        let router = server::router(state, server.request_timeout, server.body_limit_bytes)
            .layer(axum::Extension(avi_dns));

        let material = tls::load_or_create(&server.tls, &server.state_dir).context("server.tls")?;
        let (tls, fingerprint) = match material {
            Some(m) => {
                let config = tls::server_config(&m).context("server.tls")?;
                let rustls = RustlsConfig::from_config(Arc::new(config));
                (Some(rustls), Some(m.fingerprint))
            }
            None => (None, None),
        };

        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("server.listen: cannot bind {}", settings.listen))?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .with_context(|| format!("metrics.listen: cannot bind {addr}"))?,
            ),
            None => None,
        };
        let (metrics_tx, _) = watch::channel(false);
        Ok(Application {
            listener,
            metrics_listener,
            router,
            tls,
            fingerprint,
            ipam,
            shutdown: ShutdownHandle {
                server: axum_server::Handle::new(),
                metrics: metrics_tx,
                grace: server.shutdown_grace,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// `https://…` or `http://…` for the main listener.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// SHA-256 fingerprint of the served certificate, when TLS is on.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    pub fn ipam(&self) -> Arc<Ipam> {
        self.ipam.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until [`ShutdownHandle::shutdown`] is called.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if let (Some(listener), Some(handle)) = (self.metrics_listener, telemetry::metrics_handle())
        {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let mut stop = self.shutdown.metrics.subscribe();
            let app = server::metrics_router(handle);
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        match self.tls {
            Some(tls) => {
                // TCP_NODELAY: the last TLS record of an answer must not wait for the client's
                // delayed ACK (Nagle), which cost ~40 ms at p99 on large listings.
                axum_server::from_tcp_rustls(self.listener, tls)?
                    .map(|a| a.acceptor(axum_server::accept::NoDelayAcceptor::new()))
                    .handle(self.shutdown.server.clone())
                    .serve(service)
                    .await
            }
            None => {
                axum_server::from_tcp(self.listener)?
                    .acceptor(axum_server::accept::NoDelayAcceptor::new())
                    .handle(self.shutdown.server.clone())
                    .serve(service)
                    .await
            }
        }
    }
}
