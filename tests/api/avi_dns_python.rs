//! The generated Avi custom DNS script (`ipam-gateway package avi-dns`) run under python3, as the
//! controller runs it, against a TLS gateway whose `[dns.lab]` section points at a real BIND
//! (tests/api/support/bind.rs); every step is checked by asking that BIND.
//!
//! Like tests/api/dns.rs, the test needs `named`: reported as ignored, by name, when it is not
//! installed (`named_is_installed_under_ci` fails CI in that case).

use std::ffi::OsString;

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::support::bind::{Bind, FORWARD_ZONE, KEY_SECRET, REVERSE_V4, REVERSE_V6};
use crate::support::gateway_process::Run;
use crate::support::python::python;
use crate::support::{AppOptions, BASE_CONFIG, DEMO_PASSWORD, TestApp, spawn_with};

struct Script {
    python: String,
    env: Vec<(&'static str, OsString)>,
    _dir: tempfile::TempDir,
}

impl Script {
    fn new(app: &TestApp) -> Script {
        let python = python("the Avi DNS script tests");
        let dir = tempfile::tempdir().expect("tmp");
        let script = dir
            .path()
            .join(ipam_gateway::package::avi_dns::DEFAULT_FILE_NAME);
        std::fs::write(
            &script,
            ipam_gateway::package::avi_dns::script().expect("script"),
        )
        .expect("write");
        let cert = dir.path().join("gateway.pem");
        std::fs::write(&cert, app.cert_pem.as_ref().expect("TLS on")).expect("write");
        let server = app.base_url.trim_start_matches("https://").to_owned();
        let env = vec![
            ("IPAMGW_AVI_DNS_SCRIPT", script.into_os_string()),
            ("IPAMGW_AVI_SERVER", server.into()),
            ("IPAMGW_AVI_USER", "demo".into()),
            ("IPAMGW_AVI_PASSWORD", DEMO_PASSWORD.into()),
            ("IPAMGW_AVI_CA", cert.into_os_string()),
        ];
        Script {
            python,
            env,
            _dir: dir,
        }
    }

    /// Calls `function(*args, auth_params)` in python3: `{"result": …}` or
    /// `{"exception": "<class>", "message": …}`.
    /// `args` is JSON text: built by hand so `dns_info` keeps its order (a `Value` sorts keys).
    async fn call(&self, function: &str, args: &str, password: Option<&str>) -> Value {
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg("tests/python/avi_dns/call.py")
            .arg(function)
            .arg(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .kill_on_drop(true);
        if let Some(p) = password {
            cmd.env("IPAMGW_AVI_PASSWORD", p);
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
            .await
            .expect("the script answers within 60 s")
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{function} crashed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).expect("one JSON line")
    }
}

fn config(bind: &Bind) -> String {
    format!(
        r#"{base}

[dns.lab]
servers = ["{addr}"]
key_name = "ipamgw-key"
secret = "{KEY_SECRET}"
forward_zones = ["{FORWARD_ZONE}"]
reverse_zones = ["{REVERSE_V4}", "{REVERSE_V6}"]
timeout_ms = 1500
"#,
        base = *BASE_CONFIG,
        addr = bind.addr
    )
}

/// `records_info` as JSON text, the fqdns of `dns_info` in the order given (the first one gets
/// the PTRs, as Avi's dict order says).
fn records(v4: &[&str], v6: &[&str], fqdns: &[&str]) -> String {
    let dns_info: Vec<String> = fqdns
        .iter()
        .map(|f| format!(r#"{}: {{"ttl": 300, "type": "DNS_RECORD_A"}}"#, json!(f)))
        .collect();
    format!(
        r#"{{"ips": {{"v4_ips": {}, "v6_ips": {}}}, "dns_info": {{{}}}}}"#,
        json!(v4),
        json!(v6),
        dns_info.join(", ")
    )
}

async fn lookup(bind: &Bind, name: &str, t: RecordType) -> Vec<String> {
    bind.lookup(name, t).await
}

const VS: &str = "vs1.lab.example.com";
const ALIAS: &str = "vs1-alias.lab.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn generated_avi_dns_script_registers_changes_and_deletes_names_in_bind() {
    let bind = Bind::start().await;
    let app = spawn_with(AppOptions {
        config: config(&bind),
        tls: true,
        metrics: false,
    })
    .await;
    let s = Script::new(&app);
    use RecordType::{A, AAAA};

    assert_eq!(
        s.call("TestLogin", "[]", None).await,
        json!({"result": true})
    );
    assert_eq!(
        s.call("GetAvailableDomains", "[]", None).await,
        json!({"result": [FORWARD_ZONE]})
    );

    // Create: two fqdns, V4 + V6. Every fqdn gets A and AAAA; the first one the PTRs.
    let v1 = records(&["10.20.0.61"], &["2001:db8:20::61"], &[VS, ALIAS]);
    let r = s
        .call("CreateOrUpdateDnsRecords", &format!("[{v1}, {{}}]"), None)
        .await;
    assert_eq!(r, json!({"result": true}));
    for name in [VS, ALIAS] {
        assert_eq!(lookup(&bind, name, A).await, ["10.20.0.61"], "{name}");
        assert_eq!(
            lookup(&bind, name, AAAA).await,
            ["2001:db8:20::61"],
            "{name}"
        );
    }
    assert_eq!(bind.ptr("10.20.0.61").await, [format!("{VS}.")]);
    assert_eq!(bind.ptr("2001:db8:20::61").await, [format!("{VS}.")]);

    // The same call again (a controller retry) converges: nothing doubles.
    let r = s
        .call("CreateOrUpdateDnsRecords", &format!("[{v1}, {{}}]"), None)
        .await;
    assert_eq!(r, json!({"result": true}));
    assert_eq!(lookup(&bind, ALIAS, A).await, ["10.20.0.61"]);
    assert_eq!(bind.ptr("10.20.0.61").await, [format!("{VS}.")]);

    // Change the IPv4 address: both names move to it, the PTR follows, IPv6 is untouched.
    let v2 = records(&["10.20.0.62"], &["2001:db8:20::61"], &[VS, ALIAS]);
    let r = s
        .call("CreateOrUpdateDnsRecords", &format!("[{v2}, {v1}]"), None)
        .await;
    assert_eq!(r, json!({"result": true}));
    for name in [VS, ALIAS] {
        assert_eq!(lookup(&bind, name, A).await, ["10.20.0.62"], "{name}");
        assert_eq!(
            lookup(&bind, name, AAAA).await,
            ["2001:db8:20::61"],
            "{name}"
        );
    }
    assert!(bind.ptr("10.20.0.61").await.is_empty());
    assert_eq!(bind.ptr("10.20.0.62").await, [format!("{VS}.")]);

    // Drop an fqdn: its records go, the other name keeps its own.
    let v3 = records(&["10.20.0.62"], &["2001:db8:20::61"], &[VS]);
    let r = s
        .call("CreateOrUpdateDnsRecords", &format!("[{v3}, {v2}]"), None)
        .await;
    assert_eq!(r, json!({"result": true}));
    assert!(lookup(&bind, ALIAS, A).await.is_empty());
    assert!(lookup(&bind, ALIAS, AAAA).await.is_empty());
    assert_eq!(lookup(&bind, VS, A).await, ["10.20.0.62"]);
    assert_eq!(bind.ptr("10.20.0.62").await, [format!("{VS}.")]);

    // Delete: everything goes; deleting again (records already gone) is success.
    for _ in 0..2 {
        let r = s.call("DeleteDnsRecords", &format!("[{v3}]"), None).await;
        assert_eq!(r, json!({"result": true}));
    }
    assert!(lookup(&bind, VS, A).await.is_empty());
    assert!(lookup(&bind, VS, AAAA).await.is_empty());
    assert!(bind.ptr("10.20.0.62").await.is_empty());
    assert!(bind.ptr("2001:db8:20::61").await.is_empty());

    // A name outside the zones: General, naming the field, and nothing is sent for the good
    // name of the same record either (everything is validated first).
    let bad = records(
        &["10.20.0.63"],
        &[],
        &["vs2.lab.example.com", "vs2.other.example.org"],
    );
    let r = s
        .call("CreateOrUpdateDnsRecords", &format!("[{bad}, {{}}]"), None)
        .await;
    assert_eq!(r["exception"], "CustomDnsGeneralException", "{r}");
    let msg = r["message"].as_str().expect("message");
    assert!(
        msg.contains("new_records_info.dns_info[1]") && msg.contains("vs2.other.example.org"),
        "{msg}"
    );
    assert!(lookup(&bind, "vs2.lab.example.com", A).await.is_empty());

    // A bad address: General naming it.
    let bad = records(&["2001:db8:20::9"], &[], &[VS]);
    let r = s
        .call("CreateOrUpdateDnsRecords", &format!("[{bad}, {{}}]"), None)
        .await;
    assert_eq!(r["exception"], "CustomDnsGeneralException", "{r}");
    assert!(
        r["message"]
            .as_str()
            .expect("message")
            .contains("new_records_info.ips.v4_ips[0]"),
        "{r}"
    );

    // Wrong password: Authentication, for every function.
    for (f, args) in [
        ("TestLogin", "[]"),
        ("CreateOrUpdateDnsRecords", &format!("[{v1}, {{}}]")),
    ] {
        let r = s.call(f, args, Some("not-the-password")).await;
        assert_eq!(
            r["exception"], "CustomDnsAuthenticationErrorException",
            "{f}: {r}"
        );
    }
    assert!(lookup(&bind, VS, A).await.is_empty());
    app.stop().await;
}

/// Without a `[dns.*]` section the DNS functions say so (NotImplemented), naming the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avi_dns_functions_without_a_dns_section_are_not_implemented() {
    let app = spawn_with(AppOptions {
        config: BASE_CONFIG.clone(),
        tls: true,
        metrics: false,
    })
    .await;
    let s = Script::new(&app);
    let r = s.call("GetAvailableDomains", "[]", None).await;
    assert_eq!(r["exception"], "CustomDnsNotImplementedException", "{r}");
    assert!(
        r["message"]
            .as_str()
            .expect("message")
            .contains("no [dns.*] section"),
        "{r}"
    );
    app.stop().await;
}

/// Every refusal of the endpoints themselves, over HTTP: the status, the class the script raises
/// and the field. The DNS section points at a real BIND but with a key BIND does not know, so an
/// update that gets through validation is refused by the server (General, naming the zone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_named), ignore = "needs BIND's named: .ci/run installs it")]
async fn avi_dns_endpoints_refuse_bad_input_and_report_dns_refusals() {
    let bind = Bind::start().await;
    let config = config(&bind).replace(KEY_SECRET, crate::support::bind::WRONG_SECRET);
    let app = spawn_with(AppOptions {
        config,
        tls: false,
        metrics: false,
    })
    .await;
    let post_raw = |path: &str, body: &'static str| {
        app.client
            .post(app.url(path))
            .basic_auth("demo", Some(DEMO_PASSWORD))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let error = |v: Value| v["error"].clone();

    let r = post_raw("/avi/dns/v1/test-login", "").await.expect("send");
    assert_eq!(r.status(), 400);
    let e = error(r.json().await.expect("json"));
    assert_eq!(e["exception"], "CustomDnsGeneralException");
    assert_eq!(e["field"], "body");

    let r = post_raw("/avi/dns/v1/delete-dns-records", "{not json")
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(error(r.json().await.expect("json"))["field"], "body");

    let r = app
        .post(
            "/avi/dns/v1/get-available-domains",
            &json!({"auth_params": {"backend": "elsewhere"}}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let e = error(r.json().await.expect("json"));
    assert_eq!(e["field"], "auth_params.backend", "{e}");

    // fqdns without any address to point at
    let r = app
        .post(
            "/avi/dns/v1/create-or-update-dns-records",
            &json!({"new_records_info": {"ips": {"v4_ips": []}, "dns_info": {VS: {}}},
                    "old_records_info": {}}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(
        error(r.json().await.expect("json"))["field"],
        "new_records_info.ips"
    );

    // a name that is not a DNS name
    let r = app
        .post(
            "/avi/dns/v1/delete-dns-records",
            &json!({"records_info": {"ips": {"v4_ips": ["10.20.0.70"]},
                    "dns_info": {"bad_name!.lab.example.com": {}}}}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let e = error(r.json().await.expect("json"));
    assert_eq!(e["exception"], "CustomDnsGeneralException");
    assert_eq!(e["field"], "records_info.dns_info[0]", "{e}");

    // an unknown function
    let r = app
        .post("/avi/dns/v1/get-dns-record", &json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 501);
    let e = error(r.json().await.expect("json"));
    assert_eq!(e["exception"], "CustomDnsNotImplementedException");

    // The server refuses the key: General, naming the zone and the TSIG error; nothing registered.
    let r = app
        .post(
            "/avi/dns/v1/create-or-update-dns-records",
            &json!({"new_records_info": {"ips": {"v4_ips": ["10.20.0.70"]},
                    "dns_info": {VS: {}}}, "old_records_info": null}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    let e = error(r.json().await.expect("json"));
    assert_eq!(e["exception"], "CustomDnsGeneralException");
    let msg = e["message"].as_str().expect("message");
    assert!(
        msg.contains(FORWARD_ZONE) && msg.contains("NOTAUTH"),
        "{msg}"
    );
    assert!(lookup(&bind, VS, RecordType::A).await.is_empty());
    app.stop().await;
}

/// `ipam-gateway package avi-dns` writes what the library builds, under a PEP 8 name only.
#[test]
fn cli_package_avi_dns_writes_the_script_under_a_pep8_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = Run::new(["package", "avi-dns"]).in_dir(dir.path()).run();
    assert!(run.success(), "{}", run.stderr);
    let text =
        std::fs::read_to_string(dir.path().join("ipam_gateway_avi_dns.py")).expect("written");
    assert_eq!(
        text,
        ipam_gateway::package::avi_dns::script().expect("script"),
        "the CLI writes what the library builds"
    );
    assert!(run.stdout.contains("custom DNS profile"));
    for bad in ["Lab-DNS.py", "lab_dns.txt"] {
        let run = Run::new(["package", "avi-dns", "--out"])
            .arg(dir.path().join(bad))
            .run();
        assert!(!run.success(), "{bad} accepted");
        assert!(run.stderr.contains("invalid out"), "{bad}: {}", run.stderr);
        assert!(!dir.path().join(bad).exists(), "{bad} written");
    }
}
