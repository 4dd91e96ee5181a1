//! A programmable in-memory backend for edge cases the embedded store cannot produce: slowness,
//! failures, passthrough credentials. It counts calls so tests can assert caching behaviour.
//! It has no blocks, no on-demand networks and cannot change records: the `Backend` defaults
//! answer `Unsupported` for those.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::domain::*;
use secrecy::ExposeSecret;

#[derive(Debug, Clone, Default)]
pub enum Mode {
    #[default]
    Ok,
    Fail(IpamError),
    Slow(Duration),
}

#[derive(Debug, Default)]
pub struct FakeBackend {
    pub mode: Mutex<Mode>,
    pub network_calls: AtomicUsize,
    pub check_calls: AtomicUsize,
    pub allocated: Mutex<Vec<AllocationInfo>>,
}

pub const NET: &str = "fake-net-1";

impl FakeBackend {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    async fn behave(&self) -> IpamResult<()> {
        let mode = self.mode.lock().expect("mode").clone();
        match mode {
            Mode::Ok => Ok(()),
            Mode::Fail(e) => Err(e),
            Mode::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    pub fn networks_seen(&self) -> usize {
        self.network_calls.load(Ordering::SeqCst)
    }
}

fn network() -> NetworkInfo {
    let cidr: ipnet::IpNet = "198.51.100.0/24".parse().expect("cidr");
    NetworkInfo {
        backend_id: NET.into(),
        name: "fake".into(),
        description: None,
        cidr,
        range_start: "198.51.100.1".parse().expect("ip"),
        range_end: "198.51.100.254".parse().expect("ip"),
        gateway: None,
        dns_servers: vec![],
        dns_domain: None,
        dns_search_domains: vec![],
        address_space: "default".into(),
        vlan: None,
        tags: vec![],
        free: None,
        block: None,
        owner: None,
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &str {
        "fake"
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn supports_passthrough(&self) -> bool {
        true
    }
    async fn check(&self, cx: &CallContext) -> IpamResult<BackendStatus> {
        self.check_calls.fetch_add(1, Ordering::SeqCst);
        self.behave().await?;
        if let Some(c) = &cx.credentials
            && !(c.username == "alice" && c.password.expose_secret() == "wonderland")
        {
            return Err(IpamError::Unauthorized("bad user".into()));
        }
        Ok(BackendStatus {
            backend: "fake".into(),
            kind: "fake",
            detail: String::new(),
            networks: 1,
            blocks: 0,
            problems: Vec::new(),
            unchecked: Vec::new(),
        })
    }
    async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
        self.network_calls.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent callers overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.behave().await?;
        Ok(vec![network()])
    }
    async fn allocate(&self, _cx: &CallContext, req: &AllocateIn) -> IpamResult<AllocationInfo> {
        self.behave().await?;
        let mut all = self.allocated.lock().expect("allocated");
        let address: IpAddr = format!("198.51.100.{}", all.len() + 1).parse().expect("ip");
        let a = AllocationInfo {
            network: req.network.clone(),
            address,
            owner: Some(req.owner.clone()),
            details: req.details.clone(),
            reference: None,
        };
        all.push(a.clone());
        Ok(a)
    }
    async fn find(&self, _cx: &CallContext, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
        self.behave().await?;
        let all = self.allocated.lock().expect("allocated");
        Ok(all
            .iter()
            .filter(|a| match lookup {
                Lookup::Owner(o) => a.owner.as_ref() == Some(o),
                Lookup::Address { address, .. } => &a.address == address,
            })
            .cloned()
            .collect())
    }
    async fn release(&self, _cx: &CallContext, _network: &str, address: IpAddr) -> IpamResult<()> {
        self.behave().await?;
        self.allocated
            .lock()
            .expect("allocated")
            .retain(|a| a.address != address);
        Ok(())
    }
}

/// A router in front of a fake backend, served on loopback. Clients: `demo`/`demo-secret`;
/// passthrough: `alice`/`wonderland` is the backend's own user.
pub struct FakeApp {
    pub base_url: String,
    pub backend: Arc<FakeBackend>,
    pub client: reqwest::Client,
    pub ipam: Arc<ipam_gateway::service::Ipam>,
}

pub async fn spawn_fake(request_timeout: Duration, readyz_timeout: Duration) -> FakeApp {
    let demo_hash = ipam_gateway::config::DEFAULT_CONFIG
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .and_then(|l| l.split('"').nth(1))
        .expect("demo hash");
    let text = format!(
        "[clients.demo]\npassword_hash = \"{demo_hash}\"\nbackend = \"fake\"\n\
         [passthrough]\nbackend = \"fake\"\n[backends.fake]\nkind = \"embedded\"\n"
    );
    let settings = ipam_gateway::config::Settings::from_toml(&text).expect("settings");
    let backend = FakeBackend::new();
    let ipam = Arc::new(ipam_gateway::service::Ipam::new(
        vec![backend.clone() as Arc<dyn Backend>],
        Duration::from_secs(60),
    ));
    let state = ipam_gateway::state::AppState {
        ipam: ipam.clone(),
        auth: Arc::new(ipam_gateway::auth::Authenticator::new(&settings)),
        backend_timeout: readyz_timeout,
    };
    let router = ipam_gateway::server::router(state, request_timeout, 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    FakeApp {
        base_url: format!("http://{addr}"),
        backend,
        client: reqwest::Client::new(),
        ipam,
    }
}

impl FakeApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .basic_auth("demo", Some(super::DEMO_PASSWORD))
    }
}
