//! Runs the Python tests of the generated Avi script (`tests/python/avi/`) under python3 against
//! a TLS gateway on the lab topology, once per backend kind. Set `IPAMGW_SKIP_PYTHON=1` to skip on
//! a machine without python3 (the test says so).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::DEMO_PASSWORD;
use crate::support::matrix::{BackendKind, spawn_lab};

/// Python to run the tests with, or `None` (after saying so) when skipped.
pub fn python() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if std::env::var_os("IPAMGW_SKIP_PYTHON").is_some() {
        eprintln!("SKIPPED: IPAMGW_SKIP_PYTHON is set; the Avi script tests did not run");
        return None;
    }
    let version = std::process::Command::new(&python)
        .arg("--version")
        .output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "{python} is needed to test the Avi script (set IPAMGW_SKIP_PYTHON=1 to skip): {version:?}"
    );
    Some(python)
}

async fn run_python_suite(kind: BackendKind) {
    let Some(python) = python() else { return };
    let app = spawn_lab(kind, true).await;
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir
        .path()
        .join(ipam_gateway::package::avi::DEFAULT_FILE_NAME);
    std::fs::write(
        &script,
        ipam_gateway::package::avi::script().expect("script"),
    )
    .expect("write");
    let cert = dir.path().join("gateway.pem");
    std::fs::write(&cert, app.cert_pem.as_ref().expect("TLS on")).expect("write");
    let server = app.base_url.trim_start_matches("https://").to_owned();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(&python)
        .args(["-m", "unittest", "discover", "-s", "tests/python/avi", "-v"])
        .current_dir(&root)
        .env("IPAMGW_AVI_SCRIPT", &script)
        .env("IPAMGW_AVI_SERVER", &server)
        .env("IPAMGW_AVI_USER", "demo")
        .env("IPAMGW_AVI_PASSWORD", DEMO_PASSWORD)
        .env("IPAMGW_AVI_CA", &cert)
        .env("PYTHONDONTWRITEBYTECODE", "1")
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
        "python tests failed on {kind} ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
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
        ran >= 18,
        "expected the whole suite to run, ran {ran}:\n{stderr}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_avi_script_passes_its_python_tests_on_embedded() {
    run_python_suite(BackendKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_avi_script_passes_its_python_tests_on_phpipam() {
    run_python_suite(BackendKind::Phpipam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_avi_script_passes_its_python_tests_on_infoblox() {
    run_python_suite(BackendKind::Infoblox).await;
}
