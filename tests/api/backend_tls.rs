//! Backend TLS as appliances and admins ship it (issue 11, point 4): phpIPAM or a grid behind a
//! self-signed certificate made with `openssl req -x509` defaults, which carry `CA:TRUE`
//! (basicConstraints). webpki refuses such a certificate as a server certificate even from
//! `ca_file` (`CaUsedAsEndEntity`); `tls_fingerprint` accepts exactly it. Every refusal names its
//! reason and the presented certificate's fingerprint: in `check`, in error bodies, in logs.
//!
//! The stateful fakes (phpIPAM 1.8.2: `support::phpipam_fake`, WAPI: `support::infoblox_fake`)
//! sit behind [`TlsFront`], a TLS-terminating proxy on 127.0.0.1, as the recorded lab had nginx
//! with a self-signed certificate in front of phpIPAM (`../shared/fixtures/phpipam/README.md`,
//! "HTTPS" row; exchanges 130–137 went through it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use ipam_gateway::backends::tls::CertFingerprint;
use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::domain::{AllocateIn, Owner, RecordDetails};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use crate::support::gateway_process::{GatewayProcess, Run, Stderr};
use crate::support::infoblox::{backend_from as infoblox_from, config_with as infoblox_config};
use crate::support::infoblox_fake::FakeWapi;
use crate::support::phpipam::{PASSWORD, USER, backend as phpipam, config as phpipam_config};
use crate::support::phpipam_fake::FakePhpipam;
use crate::support::{AppOptions, spawn_with};
use crate::vra_common::{error_of, filled, vra};

/// A self-signed certificate for 127.0.0.1 and localhost.
struct Cert {
    pem: String,
    key_pem: String,
    fingerprint: CertFingerprint,
}

/// What `openssl req -x509` makes by default: self-signed, basicConstraints `CA:TRUE`.
fn appliance_cert() -> Cert {
    self_signed(IsCa::Ca(BasicConstraints::Unconstrained))
}

/// A self-signed server certificate without `CA:TRUE` (`openssl req -x509 -addext
/// basicConstraints=critical,CA:FALSE`, or what the gateway generates for itself).
fn leaf_cert() -> Cert {
    self_signed(IsCa::NoCa)
}

fn self_signed(is_ca: IsCa) -> Cert {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params");
    params.is_ca = is_ca;
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Cert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        fingerprint: CertFingerprint::of(cert.der()),
    }
}

struct Forward {
    target: String,
    http: reqwest::Client,
}

/// A TLS-terminating proxy in front of a plain-HTTP fake, serving `cert`; it counts the TCP
/// connections it accepts (each one a handshake).
struct TlsFront {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    async fn start(cert: &Cert, target: &str) -> TlsFront {
        let material = ipam_gateway::tls::TlsMaterial {
            cert_pem: cert.pem.clone().into_bytes(),
            key_pem: cert.key_pem.clone().into_bytes(),
            cert_path: "front.pem".into(),
            fingerprint: String::new(),
            generated: true,
        };
        let config = ipam_gateway::tls::server_config(&material).expect("server config");
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind front");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::new(Forward {
                target: target.to_owned(),
                http: reqwest::Client::new(),
            }));
        let connections = Arc::new(AtomicUsize::new(0));
        let counting = Counting(connections.clone());
        let server = axum_server::from_tcp_rustls(listener, rustls)
            .expect("front")
            .map(|a| a.acceptor(counting));
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        TlsFront {
            url: format!("https://{addr}"),
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Counting(Arc<AtomicUsize>);

impl<I, S> axum_server::accept::Accept<I, S> for Counting {
    type Stream = I;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(I, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok((stream, service)))
    }
}

async fn forward(
    State(f): State<Arc<Forward>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = f
        .http
        .request(method, format!("{}{pq}", f.target))
        .body(body);
    for (k, v) in &headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let answer = req.send().await.expect("the fake answers");
    let mut out = Response::new(Body::empty());
    *out.status_mut() = answer.status();
    for (k, v) in answer.headers() {
        if k != header::TRANSFER_ENCODING && k != header::CONNECTION && k != header::CONTENT_LENGTH
        {
            out.headers_mut().append(k, v.clone());
        }
    }
    *out.body_mut() = Body::from(answer.bytes().await.expect("body"));
    out
}

/// `[backends.ipam]` auth lines of the phpIPAM lab plus `extra`.
fn lab_auth(extra: &str) -> String {
    format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"\n{extra}")
}

fn grid_auth(extra: &str) -> String {
    format!("username = \"admin\"\npassword = \"infoblox\"\n{extra}")
}

fn pin(fp: CertFingerprint) -> String {
    format!("tls_fingerprint = \"{fp}\"")
}

fn ca_file(dir: &tempfile::TempDir, cert: &Cert) -> String {
    let path = dir.path().join("appliance.pem");
    std::fs::write(&path, &cert.pem).expect("write ca_file");
    format!("ca_file = \"{}\"", path.display())
}

#[tokio::test]
async fn a_pinned_ca_true_certificate_is_accepted_for_check_and_allocation() {
    let fake = FakePhpipam::start().await;
    let cert = appliance_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    // Lenient input: lower case, no `SHA256:` prefix.
    let lenient = cert.fingerprint.to_string()["SHA256:".len()..].to_ascii_lowercase();
    let b = phpipam(
        &front.url,
        &lab_auth(&format!("tls_fingerprint = \"{lenient}\"")),
    );
    let cx = CallContext::default();
    let status = b
        .check(&cx)
        .await
        .expect("check through the pinned certificate");
    assert_eq!((status.networks, status.blocks), (3, 1));
    let a = b
        .allocate(
            &cx,
            &AllocateIn {
                network: "7".into(),
                owner: Owner::parse("vm-tls").expect("owner"),
                address: None,
                details: RecordDetails::default(),
            },
        )
        .await
        .expect("allocation through the pinned certificate");
    assert!(
        fake.addresses_in(7).iter().any(|x| x.ip == a.address),
        "{a:?} is held in phpIPAM"
    );
}

#[tokio::test]
async fn ca_file_holding_a_ca_true_certificate_fails_saying_how_to_pin_it() {
    let fake = FakePhpipam::start().await;
    let cert = appliance_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    let dir = tempfile::tempdir().expect("dir");
    let e = phpipam(&front.url, &lab_auth(&ca_file(&dir, &cert)))
        .check(&CallContext::default())
        .await
        .expect_err("webpki refuses a CA certificate as the server's own");
    let text = e.to_string();
    assert_eq!(e.code(), "unavailable", "{text}");
    assert!(
        text.contains(&format!("cannot connect to phpIPAM at {}: ", front.url)),
        "{text}"
    );
    assert!(
        text.contains("certificate verification failed: ")
            && text.contains("CA:TRUE")
            && text.contains("CaUsedAsEndEntity"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "backends.ipam.tls_fingerprint = \"{}\"",
            cert.fingerprint
        )),
        "the admin can copy the pin: {text}"
    );
    // The advice works: the same certificate pinned instead.
    phpipam(&front.url, &lab_auth(&pin(cert.fingerprint)))
        .check(&CallContext::default())
        .await
        .expect("pinned as the message says");
}

#[tokio::test]
async fn another_certificate_under_a_pin_is_refused_naming_both_fingerprints() {
    let fake = FakePhpipam::start().await;
    let (expected, presented) = (appliance_cert(), appliance_cert());
    let front = TlsFront::start(&presented, &fake.url).await;
    let e = phpipam(&front.url, &lab_auth(&pin(expected.fingerprint)))
        .check(&CallContext::default())
        .await
        .expect_err("not the pinned certificate");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "certificate verification failed: the server presents certificate {}, not the one \
             backends.ipam.tls_fingerprint pins ({})",
            presented.fingerprint, expected.fingerprint
        )),
        "{text}"
    );
    assert_eq!(fake.logins(), 0, "no credential was sent to it");
}

#[tokio::test]
async fn a_refused_certificate_is_not_retried() {
    let fake = FakePhpipam::start().await;
    let cert = appliance_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    // App-code auth: the first request is a GET (sections/), which is retried on connect errors.
    let e = phpipam(
        &front.url,
        "auth = \"app_code\"\napp_code = \"gwlabstaticappcode0123456789abcd\"",
    )
    .check(&CallContext::default())
    .await
    .expect_err("untrusted");
    assert!(
        e.to_string().contains("certificate verification failed"),
        "{e}"
    );
    assert_eq!(
        front.connections(),
        1,
        "it fails the same way a moment later"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_in_ca_file_is_trusted() {
    let fake = FakePhpipam::start().await;
    let cert = leaf_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    let dir = tempfile::tempdir().expect("dir");
    phpipam(&front.url, &lab_auth(&ca_file(&dir, &cert)))
        .check(&CallContext::default())
        .await
        .expect("ca_file trusts a certificate without CA:TRUE");
}

#[tokio::test]
async fn an_untrusted_certificate_is_named_in_the_api_error_body() {
    let fake = FakePhpipam::start().await;
    let cert = leaf_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    let app = spawn_with(AppOptions {
        config: phpipam_config(&front.url, ""),
        ..Default::default()
    })
    .await;
    let resp = app.get("/api/v1/networks").send().await.expect("send");
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("certificate verification failed: issued by an authority that is neither in the system roots nor in ca_file (UnknownIssuer)"),
        "{body}"
    );
    assert!(
        body.contains(&format!("presented certificate {}", cert.fingerprint)),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "backends.ipam.tls_fingerprint = \\\"{}\\\"",
            cert.fingerprint
        )),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "{body}");

    // vRA's Validate Endpoint shows the same words to the vRA admin.
    let host = app.base_url.split("://").nth(1).expect("scheme").to_owned();
    let values = [("host".to_owned(), host)].into_iter().collect();
    let (_, out) = vra(
        &app,
        "validate-endpoint",
        &filled("validate-endpoint", &values, &[]),
    )
    .await;
    let (message, _) = error_of(&out);
    assert!(
        message.contains("certificate verification failed: ")
            && message.contains(&cert.fingerprint.to_string()),
        "{out}"
    );

    // Without a pin, the appliance's CA:TRUE certificate: named as such.
    let appliance = appliance_cert();
    let front = TlsFront::start(&appliance, &fake.url).await;
    let app = spawn_with(AppOptions {
        config: phpipam_config(&front.url, ""),
        ..Default::default()
    })
    .await;
    let body = app
        .get("/api/v1/networks")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("certificate verification failed: the server presents a CA certificate (basicConstraints CA:TRUE) as its own certificate (CaUsedAsEndEntity); presented certificate ")
            && body.contains(&appliance.fingerprint.to_string()),
        "{body}"
    );
}

#[tokio::test]
async fn a_tls_failure_that_is_not_about_the_certificate_names_tls() {
    // An https URL on a plain-HTTP port: the handshake fails on the first answer.
    let fake = FakePhpipam::start().await;
    let url = fake.url.replace("http://", "https://");
    let e = phpipam(&url, "")
        .check(&CallContext::default())
        .await
        .expect_err("no TLS there");
    assert!(
        e.to_string().contains(&format!(
            "cannot connect to phpIPAM at {url}: TLS handshake failed: "
        )),
        "{e}"
    );
}

#[tokio::test]
async fn infoblox_pins_and_names_refusals_the_same_way() {
    let fake = FakeWapi::start().await;
    let cert = appliance_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    let cx = CallContext::default();
    let pinned = infoblox_from(&infoblox_config(
        &front.url,
        "\"default\"",
        &grid_auth(&pin(cert.fingerprint)),
    ));
    pinned.check(&cx).await.expect("check through the pin");

    let dir = tempfile::tempdir().expect("dir");
    for (extra, why) in [
        (String::new(), "(CaUsedAsEndEntity)"),
        (ca_file(&dir, &cert), "(CaUsedAsEndEntity)"),
        (pin(appliance_cert().fingerprint), "not the one"),
    ] {
        let e = infoblox_from(&infoblox_config(
            &front.url,
            "\"default\"",
            &grid_auth(&extra),
        ))
        .check(&cx)
        .await
        .expect_err(why);
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "cannot connect to the Infoblox grid at {}: certificate verification failed: ",
                front.url
            )) && text.contains(why)
                && text.contains(&cert.fingerprint.to_string()),
            "{text}"
        );
    }
}

/// The binary on `config`: `ipam-gateway --config … check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_reason_and_the_fingerprint() {
    let fake = FakePhpipam::start().await;
    let cert = appliance_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, phpipam_config(&front.url, "")).expect("config");
    let out = Run::new(["--config"])
        .arg(&path)
        .arg("check")
        .in_dir(dir.path())
        .run_async()
        .await;
    let stdout = &out.stdout;
    assert_eq!(out.code, Some(3), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "backend ipam: FAILED: backend ipam is unavailable: cannot connect to phpIPAM at {}: \
             certificate verification failed: ",
            front.url
        )) && stdout.contains(&format!("presented certificate {}", cert.fingerprint)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "backends.ipam.tls_fingerprint = \"{}\"",
            cert.fingerprint
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD), "{stdout}");
}

/// The binary serving: a request that reaches the untrusted backend logs the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_the_reason_and_the_fingerprint() {
    let fake = FakePhpipam::start().await;
    let cert = appliance_cert();
    let front = TlsFront::start(&cert, &fake.url).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, phpipam_config(&front.url, "")).expect("config");
    let gw = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || GatewayProcess::with_config(&dir, &path, &[], Stderr::Keep)
    })
    .await
    .expect("spawn serve");
    let url = gw.base_url.clone();
    assert!(url.starts_with("http://"), "no URL in {:?}", gw.banner);
    let resp = reqwest::Client::new()
        .get(format!("{url}/api/v1/networks"))
        .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 503);
    let (_, logs) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .expect("stops");
    assert!(
        logs.contains("certificate verification failed: ")
            && logs.contains(&format!("presented certificate {}", cert.fingerprint)),
        "{logs}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
}

/// The commented `tls_fingerprint` lines of the example configs validate once uncommented.
#[test]
fn the_examples_tls_fingerprint_lines_validate_uncommented() {
    for (file, password) in [
        ("phpipam", "IPAMGW_PHPIPAM_PASSWORD"),
        ("infoblox", "IPAMGW_INFOBLOX_PASSWORD"),
    ] {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("config/{file}.example.toml")),
        )
        .expect("example config");
        assert!(text.contains("\n# tls_fingerprint = \"SHA256:"), "{file}");
        let text = text
            .replace("\n# tls_fingerprint = ", "\ntls_fingerprint = ")
            .replace(
                "\"env:IPAMGW_VRA_PASSWORD_HASH\"",
                "\"$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo\"",
            )
            .replace(&format!("\"env:{password}\""), "\"example\"");
        let s = ipam_gateway::config::Settings::from_toml(&text)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let pin = match &s.backends[0] {
            ipam_gateway::config::BackendSettings::Phpipam { settings, .. } => {
                settings.tls_fingerprint
            }
            ipam_gateway::config::BackendSettings::Infoblox { settings, .. } => {
                settings.tls_fingerprint
            }
            other => panic!("{file}: {other:?}"),
        };
        assert!(pin.is_some(), "{file}");
    }
}
