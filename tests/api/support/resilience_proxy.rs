//! A fault-injecting HTTP proxy in front of a stateful fake IPAM (phpIPAM or WAPI), for the
//! resilience tests: it passes requests through, or delays them, or answers a status code, or
//! answers garbage, or stops listening altogether (a closed loopback port) and comes back later on
//! the same port. It counts what it forwards, per method.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// What the proxy does with the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward to the fake.
    Pass,
    /// Forward to the fake after this delay.
    Slow(Duration),
    /// Answer this status with an HTML error page, as a load balancer in front of an IPAM does.
    Status(u16),
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Requests matching `(method, path prefix)` never get an answer: with `forward`, the fake
    /// receives them first (the IPAM did the work, the answer is lost); without, it never sees
    /// them (a slow step the gateway is still waiting for). The rest pass.
    Hold {
        method: Method,
        path: String,
        /// Only requests whose body contains this text (e.g. the network a WAPI POST targets).
        body: Option<String>,
        forward: bool,
    },
}

#[derive(Debug)]
struct Shared {
    target: String,
    fault: Fault,
    /// (method, path) → requests seen (forwarded or not).
    seen: HashMap<(String, String), usize>,
    http: reqwest::Client,
}

pub struct FaultProxy {
    pub url: String,
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let (fault, target, http) = {
        let mut s = shared.lock().expect("proxy state");
        *s.seen
            .entry((method.to_string(), path.clone()))
            .or_default() += 1;
        let fault = match &mut s.fault {
            Fault::Hold {
                method: m,
                path: p,
                body: b,
                ..
            } if !(*m == method
                && path.starts_with(p.as_str())
                && b.as_ref()
                    .is_none_or(|b| String::from_utf8_lossy(&body).contains(b.as_str()))) =>
            {
                Fault::Pass
            }
            other => other.clone(),
        };
        (fault, s.target.clone(), s.http.clone())
    };
    match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).expect("status");
            return (
                status,
                [("content-type", "text/html")],
                format!(
                    "<html><head><title>{code} Proxy Error</title></head><body>down</body></html>"
                ),
            )
                .into_response();
        }
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"code\":200,\"success\":tru<<garbage>>",
            )
                .into_response();
        }
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::Hold { forward: false, .. } => {
            std::future::pending::<()>().await;
        }
        Fault::Hold { forward: true, .. } | Fault::Pass => {}
    }
    let hang = matches!(fault, Fault::Hold { forward: true, .. });
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = http.request(method, format!("{target}{pq}")).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::builder().status(status);
            for (k, v) in resp.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    out = out.header(k, v);
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            if hang {
                std::future::pending::<()>().await;
            }
            out.body(Body::from(bytes)).expect("response")
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl FaultProxy {
    /// A proxy on a fresh loopback port forwarding to `target` (`http://127.0.0.1:port`).
    pub async fn start(target: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared {
            target: target.to_owned(),
            fault: Fault::Pass,
            seen: HashMap::new(),
            http: reqwest::Client::new(),
        }));
        let mut p = FaultProxy {
            url: format!("http://{addr}"),
            addr,
            shared,
            task: None,
            stop: None,
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        }));
    }

    pub fn set(&self, fault: Fault) {
        self.shared.lock().expect("proxy state").fault = fault;
    }

    /// Stops listening and closes its idle keep-alive connections (graceful shutdown), so the
    /// port is closed until [`FaultProxy::resume`].
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Requests seen with this method whose path starts with `prefix`.
    pub fn seen(&self, method: &str, prefix: &str) -> usize {
        self.shared
            .lock()
            .expect("proxy state")
            .seen
            .iter()
            .filter(|((m, p), _)| m == method && p.starts_with(prefix))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Every (method, path) seen, with counts, for failure messages.
    pub fn log(&self) -> Vec<((String, String), usize)> {
        let mut v: Vec<_> = self
            .shared
            .lock()
            .expect("proxy state")
            .seen
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }
}
