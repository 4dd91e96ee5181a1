//! Test harness: builds the real [`Application`] on loopback port 0 with a temp state dir.

pub mod avi_common;
pub mod bind;
pub mod dns_lab;
pub mod dns_stub;
pub mod exchange;
pub mod fake;
pub mod gateway_process;
pub mod infoblox;
pub mod infoblox_fake;
pub mod matrix;
pub mod mock;
pub mod phpipam;
pub mod phpipam_fake;
pub mod python;
pub mod resilience_proxy;
pub mod vra_common;

use std::path::PathBuf;
use std::sync::LazyLock;

use ipam_gateway::config::Config;
use ipam_gateway::{Application, ShutdownHandle};
use serde_json::Value;

/// Password of the `demo` client in [`BASE_CONFIG`] (and in the embedded default config).
pub const DEMO_PASSWORD: &str = "demo-secret";

/// The embedded default config with its demo client, networks and block.
pub static BASE_CONFIG: LazyLock<String> =
    LazyLock::new(|| ipam_gateway::config::DEFAULT_CONFIG.to_owned());

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        ipam_gateway::telemetry::init_logging(&Default::default());
    }
});

pub struct TestApp {
    pub base_url: String,
    pub metrics_url: Option<String>,
    /// Trusts exactly the app's certificate (or plain HTTP).
    pub client: reqwest::Client,
    pub state_dir: tempfile::TempDir,
    pub fingerprint: Option<String>,
    pub cert_pem: Option<Vec<u8>>,
    pub ipam: std::sync::Arc<ipam_gateway::service::Ipam>,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub struct AppOptions {
    /// Full TOML text; defaults to [`BASE_CONFIG`].
    pub config: String,
    pub tls: bool,
    pub metrics: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            config: BASE_CONFIG.clone(),
            tls: false,
            metrics: false,
        }
    }
}

/// Plain-HTTP gateway on the default config (fast; TLS has its own tests).
pub async fn spawn_app() -> TestApp {
    spawn_with(AppOptions::default()).await
}

/// Rewrites the `[server]`, `[server.tls]` and `[metrics]` settings for isolation and builds the app.
pub async fn spawn_with(opts: AppOptions) -> TestApp {
    LazyLock::force(&TRACING);
    let state_dir = tempfile::tempdir().expect("temp state dir");
    let mut config = Config::from_toml(&opts.config).expect("test config is valid");
    config.server.listen = "127.0.0.1:0".into();
    config.server.state_dir = state_dir.path().to_owned();
    config.server.tls.mode = if opts.tls {
        ipam_gateway::config::TlsMode::SelfSigned
    } else {
        ipam_gateway::config::TlsMode::Off
    };
    config.metrics.enabled = opts.metrics;
    config.metrics.listen = "127.0.0.1:0".into();
    let settings = config.validate().expect("test config is valid");
    let app = Application::build(settings).await.expect("app builds");
    let base_url = app.base_url();
    let metrics_url = app.metrics_addr().map(|a| format!("http://{a}/metrics"));
    let fingerprint = app.fingerprint().map(str::to_owned);
    let cert_pem = opts
        .tls
        .then(|| std::fs::read(state_dir.path().join("tls/cert.pem")).expect("generated cert"));
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(pem) = &cert_pem {
        let cert = reqwest::Certificate::from_pem(pem).expect("pem");
        builder = builder.tls_certs_only([cert]);
    }
    let client = builder.build().expect("client");
    let shutdown = app.shutdown_handle();
    let ipam = app.ipam();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        base_url,
        metrics_url,
        client,
        state_dir,
        fingerprint,
        cert_pem,
        ipam,
        shutdown,
        task,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .basic_auth("demo", Some(DEMO_PASSWORD))
    }

    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .basic_auth("demo", Some(DEMO_PASSWORD))
            .json(body)
    }

    pub fn patch(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .patch(self.url(path))
            .basic_auth("demo", Some(DEMO_PASSWORD))
            .json(body)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .delete(self.url(path))
            .basic_auth("demo", Some(DEMO_PASSWORD))
    }

    /// An authenticated `GET` of a native API path that must answer JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// The seeded networks, by name → id.
    pub async fn network_id(&self, name: &str) -> String {
        let body = self.get_json("/api/v1/networks").await;
        body["networks"]
            .as_array()
            .expect("networks")
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no network named {name}"))["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    pub async fn stop(self) {
        self.shutdown.shutdown();
        let _ = self.task.await;
    }
}

/// `POST /api/v1/allocations`: the status and the JSON answer.
pub async fn allocate(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .post("/api/v1/allocations", &body)
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// The native API's `allocations` of an owner (a JSON array).
pub async fn allocations_of(app: &TestApp, owner: &str) -> Value {
    app.get_json(&format!("/api/v1/allocations?owner={owner}"))
        .await["allocations"]
        .clone()
}

/// Path of the built `ipam-gateway` binary (for tests that run it as a process).
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ipam-gateway"))
}

/// Two replicas at once: `n` concurrent allocations (owners `vm-0`…) in backend network `network`,
/// alternating between two gateway services, each on its own backend instance. Returns the
/// addresses given and how many requests were a clean `Exhausted`; any other failure panics.
pub async fn allocate_from_two_replicas(
    replicas: [std::sync::Arc<dyn ipam_gateway::backends::Backend>; 2],
    network: &str,
    n: usize,
) -> (Vec<std::net::IpAddr>, usize) {
    use ipam_gateway::domain::{IpamError, NetworkId, Owner, RecordDetails};
    use ipam_gateway::service::{AllocationRequest, Caller, Ipam};
    use std::sync::Arc;
    let ipams: Vec<Arc<Ipam>> = replicas
        .into_iter()
        .map(|b| Arc::new(Ipam::new(vec![b], std::time::Duration::from_secs(60))))
        .collect();
    let net = NetworkId::new("ipam", network);
    let mut tasks = Vec::new();
    for i in 0..n {
        let ipam = ipams[i % 2].clone();
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let req = AllocationRequest {
                owner: Owner::parse(&format!("vm-{i}")).expect("owner"),
                networks: vec![net],
                address: None,
                details: RecordDetails::default(),
                aliases: Vec::new(),
            };
            let caller = Caller {
                name: "test".into(),
                backend: "ipam".into(),
                cx: Default::default(),
            };
            ipam.allocate(&caller, &req).await
        }));
    }
    let mut got = Vec::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(a) => got.push(a.address),
            Err(IpamError::Exhausted(_)) => exhausted += 1,
            Err(other) => panic!("every failure must be a clean Exhausted, got {other:?}"),
        }
    }
    (got, exhausted)
}
