//! Runs the Python tests of the generated vRA actions (`tests/python/vra/`) under python3 against a
//! TLS gateway started here, with the package built by the library. So plain `cargo test` runs
//! them. Set `IPAMGW_SKIP_PYTHON=1` to skip on a machine without python3 (the test says so).

use std::path::PathBuf;
use std::time::Duration;

use ipam_gateway::package::vra::{PackageOptions, build};

use crate::support::{AppOptions, DEMO_PASSWORD, spawn_with};
use crate::vra_common::config_with_tiny;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_vra_actions_pass_their_python_tests_against_a_live_gateway() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if std::env::var_os("IPAMGW_SKIP_PYTHON").is_some() {
        eprintln!("SKIPPED: IPAMGW_SKIP_PYTHON is set; the vRA shim tests did not run");
        return;
    }
    let version = std::process::Command::new(&python)
        .arg("--version")
        .output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "{python} is needed to test the vRA actions (set IPAMGW_SKIP_PYTHON=1 to skip): {version:?}"
    );

    let app = spawn_with(AppOptions {
        tls: true,
        config: config_with_tiny(),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let package = dir.path().join("IpamGateway.zip");
    std::fs::write(
        &package,
        build(&PackageOptions::default()).expect("package"),
    )
    .expect("write");
    let cert = dir.path().join("gateway.pem");
    std::fs::write(&cert, app.cert_pem.as_ref().expect("TLS on")).expect("write");
    let host = app.base_url.trim_start_matches("https://").to_owned();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    let run = tokio::process::Command::new(&python)
        .args(["-m", "unittest", "discover", "-s", "tests/python/vra", "-v"])
        .current_dir(&root)
        .env("IPAMGW_VRA_HOST", &host)
        .env("IPAMGW_VRA_USER", "demo")
        .env("IPAMGW_VRA_PASSWORD", DEMO_PASSWORD)
        .env("IPAMGW_VRA_PACKAGE", &package)
        .env("IPAMGW_VRA_CERT", &cert)
        .env("IPAMGW_VRA_FIXTURES", root.join("fixtures/vra"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The shims honour proxy settings as urllib does; the local gateway must not go through one.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("python tests finish within 5 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python tests failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("skipped"),
        "python tests were skipped:\n{stderr}"
    );
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    eprintln!("{stderr}");
    assert!(
        ran >= 15,
        "expected the whole suite to run, ran {ran}:\n{stderr}"
    );
    app.stop().await;
}
