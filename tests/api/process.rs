//! The gateway as an operator runs it: the real binary, its exit codes, its output, kill -9.

use std::path::Path;
use std::time::Duration;

use ipam_gateway::backends::embedded::EmbeddedBackend;
use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::config::{BackendSettings, Settings};
use ipam_gateway::domain::{Lookup, Owner};
use serde_json::{Value, json};

use crate::support::DEMO_PASSWORD;
use crate::support::gateway_process::{GatewayProcess, Run, Stderr};

/// A gateway process on the embedded default config, in its own working directory, on free ports,
/// with a client that trusts the certificate it generated.
struct Gateway {
    process: GatewayProcess,
    client: reqwest::Client,
}

fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Gateway {
    let process = GatewayProcess::embedded(dir, extra_env, Stderr::Keep);
    let line = &process.banner;
    assert!(
        process.base_url.starts_with("https://"),
        "no https URL in {line:?}"
    );
    assert!(line.contains("certificate SHA-256 "), "{line}");
    let pem = std::fs::read(dir.join("data/tls/cert.pem")).expect("generated certificate");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    Gateway { process, client }
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    /// SIGTERM, then the exit status and everything written to stderr.
    fn terminate(self) -> (std::process::ExitStatus, String) {
        drop(self.client);
        self.process.terminate()
    }
}

fn run(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let ran = Run::new(args).in_dir(dir).envs(env.iter().copied()).run();
    (ran.code.unwrap_or(-1), ran.stdout, ran.stderr)
}

// Multi-threaded: `terminate` blocks its thread, and the client's connections must still be
// driven so they can answer the server's graceful-shutdown GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_start_serves_https_lists_allocates_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = start(dir.path(), &[]);
    let r = gw
        .client
        .get(gw.url("/api/v1/networks"))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    let nets: Value = r.json().await.expect("json");
    let id = nets["networks"][0]["id"].as_str().expect("id").to_owned();
    let r = gw
        .client
        .post(gw.url("/api/v1/allocations"))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .json(&json!({"owner": "first", "networks": [id]}))
        .send()
        .await
        .expect("allocate");
    assert_eq!(r.status(), 201);
    let r = gw
        .client
        .get(gw.url("/api/v1/networks"))
        .send()
        .await
        .expect("no creds");
    assert_eq!(r.status(), 401);
    let (status, _) = gw.terminate();
    assert!(status.success(), "SIGTERM → graceful exit 0, got {status}");
}

#[tokio::test]
async fn acknowledged_allocations_survive_kill_9() {
    let dir = tempfile::tempdir().expect("dir");
    let mut gw = start(dir.path(), &[]);
    let nets: Value = gw
        .client
        .get(gw.url("/api/v1/networks?family=ipv4&tag=tier%3Dservers"))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = nets["networks"][0]["id"].as_str().expect("id").to_owned();
    // Some allocations acknowledged for sure, then a concurrent burst killed part way through.
    let mut acknowledged = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let client = gw.client.clone();
        let url = gw.url("/api/v1/allocations");
        let id = id.clone();
        let task = tokio::spawn(async move {
            let r = client
                .post(url)
                .basic_auth("demo", Some(DEMO_PASSWORD))
                .json(&json!({"owner": format!("k9-{i}"), "networks": [id]}))
                .send()
                .await
                .ok()?;
            if r.status() != 201 {
                return None;
            }
            let body: Value = r.json().await.ok()?;
            Some((format!("k9-{i}"), body["address"].as_str()?.to_owned()))
        });
        if i < 20 {
            let pair = task.await.expect("task");
            acknowledged.push(pair.unwrap_or_else(|| panic!("allocation {i} before the kill")));
            continue;
        }
        tasks.push(tokio::spawn(async move { task.await.ok().flatten() }));
        if i == 40 {
            gw.process.child.kill().expect("SIGKILL");
        }
    }
    for t in tasks {
        if let Some(pair) = t.await.expect("task") {
            acknowledged.push(pair);
        }
    }
    let _ = gw.process.child.wait();
    assert!(
        acknowledged.len() >= 20,
        "some allocations were acknowledged before the kill"
    );

    let settings = Settings::from_toml(ipam_gateway::config::DEFAULT_CONFIG).expect("config");
    let BackendSettings::Embedded {
        networks, blocks, ..
    } = &settings.backends[0]
    else {
        panic!("the default config has an embedded backend");
    };
    let store = EmbeddedBackend::open(
        "local",
        &dir.path().join("data/local.redb"),
        networks,
        blocks,
    )
    .expect("the data file opens after kill -9");
    for (owner, address) in &acknowledged {
        let found = store
            .find(
                &CallContext::default(),
                &Lookup::Owner(Owner::parse(owner).expect("owner")),
            )
            .await
            .expect("find");
        assert_eq!(found.len(), 1, "{owner} lost");
        assert_eq!(&found[0].address.to_string(), address);
    }
}

#[test]
fn invalid_configs_exit_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let base = ipam_gateway::config::DEFAULT_CONFIG;
    let cases = [
        (
            base.replace("cidr = \"10.30.0.0/26\"", "cidr = \"10.30.0.0/33\""),
            "backends.local.networks[1].cidr",
        ),
        (
            base.replace("kind = \"embedded\"", "kind = \"netbox\""),
            "backends.local",
        ),
        (
            {
                let start = base.find("password_hash = \"").expect("hash");
                let end = base[start..].find('\n').expect("eol") + start;
                format!(
                    "{}password_hash = \"env:IPAMGW_TEST_UNSET_SECRET\"{}",
                    &base[..start],
                    &base[end..]
                )
            },
            "clients.demo.password_hash",
        ),
        (
            base.replace("listen = \"127.0.0.1:8443\"", "listen = \"localhost\""),
            "server.listen",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).expect("write");
        for cmd in ["serve", "check", "print-config"] {
            let (code, _, stderr) = run(
                &[cmd, "--config", path.to_str().expect("utf8")],
                dir.path(),
                &[],
            );
            assert_eq!(code, 2, "{cmd} {key}: {stderr}");
            assert!(
                stderr.contains(&format!("config key `{key}")),
                "{cmd}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let (code, _, stderr) = run(&["serve", "--config", "/nonexistent.toml"], dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
}

#[test]
fn environment_overrides_apply_and_are_validated() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, _) = run(
        &["print-config"],
        dir.path(),
        &[("IPAMGW_CACHE__NETWORKS_TTL_SECS", "7")],
    );
    assert_eq!(code, 0);
    assert!(out.contains("networks_ttl_secs = 7"), "{out}");
    let (code, _, err) = run(
        &["print-config"],
        dir.path(),
        &[("IPAMGW_CACHE__NETWORKS_TTL_SECS", "soon")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("cache.networks_ttl_secs"), "{err}");
}

#[test]
fn check_reports_the_backend_and_exits_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, err) = run(&["check"], dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config: ok"), "{out}");
    assert!(
        out.contains(
            "backend local (embedded): reachable, authenticated, 4 network(s) exposed, 1 block(s)"
        ),
        "{out}"
    );
}

#[test]
fn check_exits_3_when_a_backend_cannot_start() {
    let dir = tempfile::tempdir().expect("dir");
    // A data file path under a regular file cannot be created.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "x").expect("write");
    let path = blocker.join("local.redb");
    let (code, out, _) = run(
        &["check"],
        dir.path(),
        &[("IPAMGW_BACKENDS__LOCAL__PATH", path.to_str().expect("utf8"))],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("backend local: FAILED"), "{out}");
}

#[test]
fn hash_password_prints_a_verifiable_argon2_hash() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Run::new(["hash-password"])
        .in_dir(dir.path())
        .stdin(b"s3cret-from-stdin\n")
        .run();
    assert!(out.success());
    let hash = out.stdout;
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret-from-stdin"));
    let (code, _, err) = run(&["hash-password", "--password", ""], dir.path(), &[]);
    assert_ne!(code, 0);
    assert!(err.contains("must not be empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_trace_logs_print_config_or_error_bodies() {
    let dir = tempfile::tempdir().expect("dir");
    let hash = ipam_gateway::auth::hash_password(&"ops-Pa55word!".into()).expect("hash");
    let secret_file = dir.path().join("hash.txt");
    std::fs::write(&secret_file, &hash).expect("write");
    let config = format!(
        "{}\n[clients.ops]\npassword_hash = \"file:{}\"\nbackend = \"local\"\n",
        ipam_gateway::config::DEFAULT_CONFIG,
        secret_file.display()
    );
    let config_path = dir.path().join("gw.toml");
    std::fs::write(&config_path, &config).expect("write");
    let config_arg = config_path.to_str().expect("utf8");

    let cmd_env: Vec<(&str, &str)> = vec![("RUST_LOG", "trace"), ("IPAMGW_CONFIG", config_arg)];
    let gw = start(dir.path(), &cmd_env);
    let demo_hash_line = ipam_gateway::config::DEFAULT_CONFIG
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .expect("demo hash");
    let demo_hash = demo_hash_line.split('"').nth(1).expect("quoted");

    for (user, pw) in [
        ("ops", "ops-Pa55word!"),
        ("demo", DEMO_PASSWORD),
        ("demo", "wrong-Pa55word!"),
    ] {
        let r = gw
            .client
            .get(gw.url("/api/v1/networks"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .expect("get");
        let body = r.text().await.expect("body");
        for secret in [
            "ops-Pa55word!",
            DEMO_PASSWORD,
            "wrong-Pa55word!",
            demo_hash,
            hash.as_str(),
        ] {
            assert!(
                !body.contains(secret),
                "error/response body leaks a secret: {body}"
            );
        }
        let r = gw
            .client
            .post(gw.url("/api/v1/allocations"))
            .basic_auth(user, Some(pw))
            .body("{not json")
            .send()
            .await
            .expect("post");
        let body = r.text().await.expect("body");
        assert!(!body.contains(pw), "{body}");
    }
    let (_, logs) = gw.terminate();
    assert!(logs.contains("TRACE"), "trace logging was on");
    assert!(
        logs.len() > 1000,
        "logs were captured: {} bytes",
        logs.len()
    );
    use base64::Engine as _;
    for secret in [
        "ops-Pa55word!".to_owned(),
        DEMO_PASSWORD.to_owned(),
        "wrong-Pa55word!".to_owned(),
        demo_hash.to_owned(),
        hash.clone(),
        base64::engine::general_purpose::STANDARD.encode("ops:ops-Pa55word!"),
        base64::engine::general_purpose::STANDARD.encode(format!("demo:{DEMO_PASSWORD}")),
    ] {
        assert!(!logs.contains(&secret), "trace logs leak {secret}");
    }

    let (code, out, _) = run(&["print-config", "--config", config_arg], dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(!out.contains(demo_hash), "{out}");
    assert!(out.contains("[REDACTED]"), "{out}");
    assert!(
        out.contains(&format!("file:{}", secret_file.display())),
        "references are shown, not their contents: {out}"
    );
}

/// Issue 13 point 10: logs written to a pipe carry no ANSI colour codes, while on a terminal
/// they are coloured unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_pipe_or_under_no_color_carry_no_ansi_escapes() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = start(dir.path(), &[("RUST_LOG", "debug")]);
    let r = gw
        .client
        .get(gw.url("/api/v1/networks"))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    let (_, logs) = gw.terminate();
    assert!(logs.contains("DEBUG"), "debug logs were written: {logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "stderr is a pipe: no escape codes in {logs:?}"
    );

    // On a terminal (util-linux `script` gives the gateway one): colour by default, none
    // under a non-empty NO_COLOR. Both runs log the same `serving` line and are stopped by
    // `timeout` once up.
    let on_a_terminal = |no_color: Option<&str>| {
        let mut run = Run::new(["serve"])
            .on_a_terminal(Duration::from_secs(3))
            .env("IPAMGW_SERVER__LISTEN", "127.0.0.1:0")
            .env("IPAMGW_METRICS__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "debug")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            run = run.env("NO_COLOR", v);
        }
        run.run().stdout
    };
    let coloured = on_a_terminal(None);
    assert!(coloured.contains("serving"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "a terminal gets colour: {coloured:?}"
    );
    let plain = on_a_terminal(Some("1"));
    assert!(plain.contains("serving"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR=1: {plain:?}");
}

/// Issue 13 point 11: a second gateway on the same state directory refuses to start and says
/// which process holds the data file, not redb's `Database already open. Cannot acquire lock.`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_data_file_names_the_one_holding_it() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = start(dir.path(), &[]);
    let first = gw.process.child.id();
    let (code, _, stderr) = run(
        &["serve"],
        dir.path(),
        &[
            ("IPAMGW_SERVER__LISTEN", "127.0.0.1:0"),
            ("IPAMGW_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("another ipam-gateway (pid {first}) holds it")),
        "{stderr}"
    );
    assert!(stderr.contains("data/local.redb"), "{stderr}");
    assert!(!stderr.contains("Cannot acquire lock"), "{stderr}");
    let (code, out, _) = run(&["check"], dir.path(), &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!("another ipam-gateway (pid {first}) holds it")),
        "{out}"
    );
    let (status, _) = gw.terminate();
    assert!(
        status.success(),
        "the first one was not disturbed: {status}"
    );
}

/// Issue 13 point 3: a data file stamped by a newer gateway (the stamp every format keeps: table
/// `meta`, key `format`, a u64) stops `serve` and fails `check`, naming the file and its format,
/// and is left as it was.
#[test]
fn a_data_file_of_a_newer_format_stops_the_gateway_naming_the_file_and_format() {
    use redb::{ReadableDatabase, TableDefinition};
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("data/local.redb");
    std::fs::create_dir_all(dir.path().join("data")).expect("dir");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("format", 99)
            .expect("stamp");
        txn.commit().expect("commit");
    }
    let (code, _, stderr) = run(
        &["serve"],
        dir.path(),
        &[
            ("IPAMGW_SERVER__LISTEN", "127.0.0.1:0"),
            ("IPAMGW_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("data/local.redb has format 99, written by a newer ipam-gateway"),
        "{stderr}"
    );
    let (code, out, _) = run(&["check"], dir.path(), &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("has format 99"), "{out}");
    let db = redb::Database::open(&path).expect("released");
    let txn = db.begin_read().expect("read");
    let stamp = txn.open_table(META).expect("meta");
    assert_eq!(
        stamp.get("format").expect("get").map(|v| v.value()),
        Some(99)
    );
}
