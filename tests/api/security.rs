//! Security: authentication on every route, per-address throttling of failed authentications,
//! TLS 1.2+ only, body limits on the contract routes, no secret in trace logs of gateways on the
//! phpIPAM and Infoblox backends.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::gateway_process::{GatewayProcess, Stderr};
use crate::support::{AppOptions, BASE_CONFIG, DEMO_PASSWORD, TestApp, spawn_with};

/// Every path the router serves behind authentication, read from the route tables themselves
/// (`.route("…"` in the native API and both contract modules), so a route added later is covered.
fn protected_routes() -> Vec<String> {
    let sources = [
        include_str!("../../src/contracts/native/mod.rs"),
        include_str!("../../src/contracts/vra/mod.rs"),
        include_str!("../../src/contracts/avi/mod.rs"),
    ];
    let mut paths = BTreeSet::new();
    for src in sources {
        for (at, _) in src.match_indices(".route(") {
            let rest = &src[at + ".route(".len()..];
            let open = rest.find('"').expect("a path literal follows .route(");
            let rest = &rest[open + 1..];
            let close = rest.find('"').expect("closing quote");
            paths.insert(rest[..close].to_owned());
        }
    }
    paths.into_iter().collect()
}

/// A concrete URL path for a route pattern (`{id}` → a syntactically plausible id).
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "x-probe".to_owned()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The default config with `server_keys` (TOML lines) set in `[server]`.
fn config_with(server_keys: &str) -> String {
    let mut config: toml::Table = BASE_CONFIG.parse().expect("default config is TOML");
    let keys: toml::Table = server_keys.parse().expect("keys are TOML");
    let server = config
        .entry("server")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[server] is a table");
    server.extend(keys);
    toml::to_string(&config).expect("serialise")
}

#[tokio::test]
async fn every_api_and_contract_route_requires_authentication_for_every_method() {
    // Throttling off: this test sends many failed authentications from one address on purpose.
    let app = spawn_with(AppOptions {
        config: config_with("auth_failure_limit = 0"),
        ..AppOptions::default()
    })
    .await;
    let routes = protected_routes();
    for prefix in ["/api/v1/", "/vra/v1/", "/avi/v1/"] {
        let n = routes.iter().filter(|r| r.starts_with(prefix)).count();
        assert!(n >= 6, "only {n} routes found under {prefix}: {routes:?}");
    }
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut served = 0;
    for route in &routes {
        let url = app.url(&concrete(route));
        for method in &methods {
            // Which methods the route serves: with valid credentials anything but 405.
            let authed = app
                .client
                .request(method.clone(), &url)
                .basic_auth("demo", Some(DEMO_PASSWORD))
                .json(&json!({}))
                .send()
                .await
                .expect("authenticated probe");
            if authed.status() == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            served += 1;
            assert_ne!(
                authed.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {route}"
            );
            let attempts = [
                ("no credentials", None),
                ("wrong password", Some(("demo", "not-the-password"))),
                ("unknown user", Some(("nobody", DEMO_PASSWORD))),
            ];
            for (what, creds) in attempts {
                let mut req = app.client.request(method.clone(), &url).json(&json!({}));
                if let Some((u, p)) = creds {
                    req = req.basic_auth(u, Some(p));
                }
                let r = req.send().await.expect("probe");
                assert_eq!(
                    r.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {route} with {what}"
                );
                assert!(
                    r.headers().contains_key("www-authenticate"),
                    "{method} {route}: 401 carries the Basic challenge"
                );
            }
            let r = app
                .client
                .request(method.clone(), &url)
                .header("authorization", "Bearer abc")
                .send()
                .await
                .expect("probe");
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {route} bearer"
            );
        }
    }
    // Native: 12 method/path pairs; vRA 8 + Avi 6 operations, plus the unknown-name catch-alls.
    assert!(served >= 28, "only {served} method/route pairs are served");
    // Only the health checks are open.
    for open in ["/healthz", "/readyz"] {
        let r = app.client.get(app.url(open)).send().await.expect("open");
        assert_eq!(r.status(), StatusCode::OK, "{open}");
    }
    app.stop().await;
}

async fn status_of(client: &reqwest::Client, app: &TestApp, password: &str) -> reqwest::Response {
    client
        .get(app.url("/api/v1/blocks"))
        .basic_auth("demo", Some(password))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn failed_authentications_are_throttled_per_client_address_only() {
    let app = spawn_with(AppOptions {
        config: config_with(
            "auth_failure_limit = 10\nauth_failure_window_secs = 60\nauth_block_secs = 3",
        ),
        ..AppOptions::default()
    })
    .await;
    let other_ip: IpAddr = "127.0.0.2".parse().expect("ip");
    let other = reqwest::Client::builder()
        .local_address(other_ip)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client on 127.0.0.2");
    // Nine failures, then plenty of successes: successes are never counted or penalised.
    for i in 0..9 {
        let r = status_of(&app.client, &app, "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    for i in 0..20 {
        let r = status_of(&app.client, &app, DEMO_PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "success {i} after 9 failures");
    }
    // A missing header (the Basic challenge) does not count either.
    for _ in 0..5 {
        let r = app
            .client
            .get(app.url("/api/v1/blocks"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // The tenth failure is still answered 401, and blocks the address.
    let r = status_of(&app.client, &app, "wrong").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the 10th failure");
    for password in ["wrong", DEMO_PASSWORD] {
        let r = status_of(&app.client, &app, password).await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "blocked ({password})"
        );
        let retry: u64 = r
            .headers()
            .get("retry-after")
            .expect("Retry-After")
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=3).contains(&retry), "Retry-After {retry}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "too_many_failed_authentications");
    }
    // Another client address is unaffected: it authenticates, and its failures are its own.
    let r = status_of(&other, &app, DEMO_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK, "127.0.0.2 still gets in");
    let r = status_of(&other, &app, "wrong").await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "127.0.0.2: 401, not 429"
    );
    let r = status_of(&other, &app, DEMO_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The block lifts after auth_block_secs.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let r = status_of(&app.client, &app, DEMO_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK, "block expired");
    app.stop().await;
}

#[test]
fn throttle_settings_are_validated_naming_the_key() {
    for (keys, bad) in [
        (
            "auth_failure_window_secs = 0",
            "server.auth_failure_window_secs",
        ),
        ("auth_block_secs = 0", "server.auth_block_secs"),
        ("auth_block_secs = 100000", "server.auth_block_secs"),
    ] {
        let err = ipam_gateway::config::Settings::from_toml(&config_with(keys))
            .err()
            .unwrap_or_else(|| panic!("{keys} must be refused"));
        assert_eq!(err.key, bad, "{keys}");
    }
    // Off needs no window or block.
    let ok = ipam_gateway::config::Settings::from_toml(&config_with(
        "auth_failure_limit = 0\nauth_block_secs = 0",
    ))
    .expect("throttle off");
    assert_eq!(ok.server.auth_failure_limit, 0);
    let defaults = ipam_gateway::config::Settings::from_toml(&BASE_CONFIG).expect("defaults");
    assert_eq!(defaults.server.auth_failure_limit, 10);
    assert_eq!(
        defaults.server.auth_failure_window,
        std::time::Duration::from_secs(60)
    );
}

/// Tries one TLS handshake per protocol version with Python's `ssl` (OpenSSL), and a control
/// handshake at TLS 1.1 against a Python server that allows it, to show the client can offer it.
const TLS_PROBE: &str = r#"
import json, socket, ssl, sys, threading, warnings
warnings.simplefilter("ignore")
host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def client(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = v
    ctx.maximum_version = v
    return ctx

def attempt(version, p):
    try:
        with socket.create_connection((host, p), timeout=10) as s:
            with client(version).wrap_socket(s, server_hostname="localhost") as t:
                return {"ok": True, "version": t.version()}
    except ssl.SSLError as e:
        return {"ok": False, "error": str(e.reason or e)}
    except OSError as e:
        return {"ok": False, "error": "os: " + str(e)}

# Control: a TLS 1.1-only Python server on the same certificate.
srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
srv_ctx.load_cert_chain(cert, key)
srv_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
try:
    srv_ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    srv_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
except ValueError:
    pass
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
def serve():
    c, _ = srv.accept()
    try:
        srv_ctx.wrap_socket(c, server_side=True).close()
    except Exception:
        c.close()
threading.Thread(target=serve, daemon=True).start()
out = {"control_tls11": attempt("TLSv1_1", srv.getsockname()[1])}
for v in ["TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"]:
    out[v] = attempt(v, port)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_below_1_2_is_refused_and_1_2_and_1_3_are_served() {
    let app = spawn_with(AppOptions {
        tls: true,
        ..AppOptions::default()
    })
    .await;
    let port = app.base_url.rsplit(':').next().expect("port").to_owned();
    let tls_dir = app.state_dir.path().join("tls");
    let out = tokio::task::spawn_blocking({
        let (cert, key) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
        move || {
            Command::new("python3")
                .arg("-c")
                .arg(TLS_PROBE)
                .arg("127.0.0.1")
                .arg(&port)
                .arg(cert)
                .arg(key)
                .output()
                .expect("python3 runs")
        }
    })
    .await
    .expect("probe task");
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    assert_eq!(got["TLSv1_2"]["version"], "TLSv1.2", "{got}");
    assert_eq!(got["TLSv1_3"]["version"], "TLSv1.3", "{got}");
    if got["control_tls11"]["ok"] == true {
        // The local OpenSSL can offer TLS 1.1 (the control handshake worked), and the same client
        // code completes 1.2 and 1.3 with the gateway: a failure below 1.2 is the gateway's
        // refusal (rustls answers a fatal alert).
        for old in ["TLSv1_1", "TLSv1"] {
            assert_eq!(got[old]["ok"], false, "{old} must be refused: {got}");
            let why = got[old]["error"]
                .as_str()
                .unwrap_or_default()
                .to_uppercase();
            assert!(
                why.contains("ALERT_PROTOCOL_VERSION") || why.contains("ALERT_HANDSHAKE_FAILURE"),
                "{old} refused by the server's alert: {got}"
            );
        }
    } else {
        // This OpenSSL cannot offer TLS 1.1 at all; the refusal cannot be told apart from the
        // client's own inability, so only the explicit version list stands as evidence.
        eprintln!("local OpenSSL cannot offer TLS 1.1: {got}");
    }
    assert_eq!(
        ipam_gateway::tls::PROTOCOL_VERSIONS
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        vec![
            rustls::ProtocolVersion::TLSv1_3,
            rustls::ProtocolVersion::TLSv1_2
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn contract_routes_enforce_the_body_limit() {
    let app = spawn_with(AppOptions {
        config: config_with("body_limit_bytes = 65536"),
        ..AppOptions::default()
    })
    .await;
    let big = json!({"padding": "x".repeat(100_000)});
    let small = json!({"padding": "x".repeat(1_000)});
    for path in [
        "/vra/v1/allocate-ip",
        "/vra/v1/get-ip-ranges",
        "/avi/v1/create-ipam-record",
        "/avi/v1/get-available-networks-and-subnets",
        "/api/v1/allocations",
    ] {
        let r = app.post(path, &big).send().await.expect("big");
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let r = app.post(path, &small).send().await.expect("small");
        assert_ne!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path} small");
    }
    app.stop().await;
}

/// A gateway process (plain HTTP, trace logging, stderr kept) on `config`, in `dir`.
fn start_traced(dir: &Path, config: &str) -> GatewayProcess {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).expect("write config");
    let gw = GatewayProcess::with_config(dir, &path, &[("RUST_LOG", "trace")], Stderr::Keep);
    assert!(
        gw.base_url.starts_with("http://"),
        "no http URL in {:?}",
        gw.banner
    );
    gw
}

/// Drives the native API, the vRA and the Avi contract (reads and an allocation) and a failed
/// login through a gateway; returns how many calls succeeded.
async fn exercise(base: &str, wrong_password: &str) -> usize {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .basic_auth("demo", Some(DEMO_PASSWORD))
            .json(&body)
    };
    let mut ok = 0;
    let r = client
        .get(format!("{base}/api/v1/networks"))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .send()
        .await
        .expect("networks");
    assert_eq!(r.status(), 200, "native listing");
    ok += 1;
    let endpoint = json!({"id": "e1", "endpointProperties": {"hostName": base}});
    let r = post(
        "/vra/v1/get-ip-ranges",
        json!({"endpoint": endpoint, "pagingAndSorting": {"maxResults": 100}}),
    )
    .send()
    .await
    .expect("get-ip-ranges");
    assert_eq!(r.status(), 200, "vRA get-ip-ranges");
    let ranges: Value = r.json().await.expect("json");
    ok += 1;
    let range = ranges["ipRanges"][0]["id"]
        .as_str()
        .expect("a range")
        .to_owned();
    let r = post(
        "/vra/v1/allocate-ip",
        json!({
            "resourceInfo": {"id": "sec-vm-1", "name": "sec-vm-1"},
            "ipAllocations": [{"id": "a1", "ipRangeIds": [range], "nicIndex": "0",
                               "isPrimary": "true", "size": "1"}],
            "endpoint": endpoint,
        }),
    )
    .send()
    .await
    .expect("allocate-ip");
    assert_eq!(
        r.status(),
        200,
        "vRA allocate-ip: {}",
        r.text().await.unwrap_or_default()
    );
    ok += 1;
    for (path, body) in [
        ("/avi/v1/test-login", json!({})),
        ("/avi/v1/get-available-networks-and-subnets", json!({})),
        (
            "/avi/v1/get-ipam-record",
            json!({"record_info": {"id": "sec-vs-none"}}),
        ),
    ] {
        let r = post(path, body).send().await.expect("avi");
        if r.status().is_success() {
            ok += 1;
        }
    }
    let r = client
        .get(format!("{base}/api/v1/networks"))
        .basic_auth("demo", Some(wrong_password))
        .send()
        .await
        .expect("wrong password");
    assert_eq!(r.status(), 401);
    ok
}

fn assert_no_secret(logs: &str, secrets: &[(&str, String)]) {
    assert!(
        logs.contains("TRACE") || logs.contains("trace"),
        "trace logging was on: {} bytes",
        logs.len()
    );
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "{what} is known");
        assert!(
            !logs.contains(secret.as_str()),
            "trace logs leak the {what}: {secret}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_trace_logs_on_phpipam_and_infoblox_gateways() {
    use crate::support::infoblox_fake::{FakeWapi, FakeWapiState};
    use crate::support::matrix::{infoblox_config, phpipam_config, seed_infoblox, seed_phpipam};
    use crate::support::phpipam_fake::{FakePhpipam, FakeState};
    use base64::Engine as _;

    const PHPIPAM_PW: &str = "Php-S3cret-9f2e";
    const INFOBLOX_PW: &str = "Ib-S3cret-7d1c";
    const WRONG: &str = "Wr0ng-S3cret-c4a1";
    let client_basic =
        base64::engine::general_purpose::STANDARD.encode(format!("demo:{DEMO_PASSWORD}"));

    // phpIPAM: user-mode login, a token reused for the calls.
    let mut state = FakeState::empty();
    let lab = seed_phpipam(&mut state);
    state
        .users
        .insert(crate::support::phpipam::USER.into(), PHPIPAM_PW.into());
    let fake = FakePhpipam::start_with(state).await;
    let config = phpipam_config(&fake.url, &lab).replace(
        &format!("password = \"{}\"", crate::support::phpipam::PASSWORD),
        &format!("password = \"{PHPIPAM_PW}\""),
    );
    let dir = tempfile::tempdir().expect("dir");
    let gw = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || start_traced(&dir, &config)
    })
    .await
    .expect("start");
    let ok = exercise(&gw.base_url, WRONG).await;
    assert!(ok >= 5, "only {ok} calls succeeded on phpIPAM");
    let tokens: Vec<String> = fake.with(|s| s.tokens.keys().cloned().collect());
    let logs = tokio::task::spawn_blocking(move || gw.terminate().1)
        .await
        .expect("stop");
    assert!(!tokens.is_empty(), "the gateway logged in to phpIPAM");
    let mut secrets = vec![
        ("phpIPAM password", PHPIPAM_PW.to_owned()),
        ("client password", DEMO_PASSWORD.to_owned()),
        ("client Basic header", client_basic.clone()),
        ("wrong client password", WRONG.to_owned()),
    ];
    secrets.extend(tokens.into_iter().map(|t| ("phpIPAM token", t)));
    assert_no_secret(&logs, &secrets);

    // Infoblox: Basic on the first call, then the ibapauth cookie.
    let mut state = FakeWapiState::empty();
    seed_infoblox(&mut state);
    state
        .users
        .insert(crate::support::infoblox::USER.into(), INFOBLOX_PW.into());
    let fake = FakeWapi::start_with(state).await;
    let config = infoblox_config(&fake.url).replace(
        &format!("password = \"{}\"", crate::support::infoblox::PASSWORD),
        &format!("password = \"{INFOBLOX_PW}\""),
    );
    let dir = tempfile::tempdir().expect("dir");
    let gw = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || start_traced(&dir, &config)
    })
    .await
    .expect("start");
    let ok = exercise(&gw.base_url, WRONG).await;
    assert!(ok >= 5, "only {ok} calls succeeded on Infoblox");
    let cookies: Vec<String> = fake.with(|s| s.sessions.iter().cloned().collect());
    let logs = tokio::task::spawn_blocking(move || gw.terminate().1)
        .await
        .expect("stop");
    assert!(
        !cookies.is_empty(),
        "the gateway opened an Infoblox session"
    );
    let backend_basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{INFOBLOX_PW}", crate::support::infoblox::USER));
    let mut secrets = vec![
        ("Infoblox password", INFOBLOX_PW.to_owned()),
        ("Infoblox Basic header", backend_basic),
        ("client password", DEMO_PASSWORD.to_owned()),
        ("client Basic header", client_basic),
        ("wrong client password", WRONG.to_owned()),
    ];
    for c in cookies {
        // The whole value, and its signature part (the rest, ip=…, user=…, is not secret).
        let signature = c
            .trim_matches('"')
            .rsplit(',')
            .next()
            .unwrap_or_default()
            .to_owned();
        secrets.push(("Infoblox cookie", c));
        secrets.push(("Infoblox cookie signature", signature));
    }
    assert_no_secret(&logs, &secrets);
}
