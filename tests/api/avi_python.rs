//! Runs the Python tests of the generated Avi script (`tests/python/avi/`) under python3 against
//! a TLS gateway on the lab topology, once per backend kind. Without python3 they fail.

use crate::support::DEMO_PASSWORD;
use crate::support::matrix::{BackendKind, spawn_lab};
use crate::support::python::{python, unittest_suite};

async fn run_python_suite(kind: BackendKind) {
    let python = python("the Avi script tests");
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
    let env = [
        ("IPAMGW_AVI_SCRIPT", script.into_os_string()),
        ("IPAMGW_AVI_SERVER", server.into()),
        ("IPAMGW_AVI_USER", "demo".into()),
        ("IPAMGW_AVI_PASSWORD", DEMO_PASSWORD.into()),
        ("IPAMGW_AVI_CA", cert.into_os_string()),
    ];
    unittest_suite(&python, "tests/python/avi", &env, &kind.to_string(), 18).await;
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
