//! Runs the Python tests of the generated vRA actions (`tests/python/vra/`) under python3 against a
//! TLS gateway started here, with the package built by the library — once per backend kind of the
//! matrix (`support::matrix`), each against its own gateway on the standard lab topology. So plain
//! `cargo test` runs them; without python3 they fail.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipam_gateway::package::vra::{PackageOptions, build};
use serde_json::{Value, json};

use crate::support::DEMO_PASSWORD;
use crate::support::matrix::{
    BackendKind, LAB_BLOCK, LAB_NETWORKS, LAB_TINY_FREE, lab_json, spawn_lab,
};
use crate::support::python::{python, unittest_suite};

/// The whole Python suite against one backend kind: exit 0, at least 15 tests, none skipped.
async fn python_suite_passes_on(kind: BackendKind) {
    let python = python(&format!("the vRA shim tests on {kind}"));

    let app = spawn_lab(kind, true).await;
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
    let env = [
        ("IPAMGW_VRA_HOST", host.into()),
        ("IPAMGW_VRA_USER", "demo".into()),
        ("IPAMGW_VRA_PASSWORD", DEMO_PASSWORD.into()),
        ("IPAMGW_VRA_PACKAGE", package.into_os_string()),
        ("IPAMGW_VRA_CERT", cert.into_os_string()),
        (
            "IPAMGW_VRA_FIXTURES",
            root.join("fixtures/vra").into_os_string(),
        ),
        // What every backend must present (the same by construction); the suite asserts it
        // through the contract and never branches on the backend's kind.
        ("IPAMGW_VRA_LAB", lab_json().to_string().into()),
    ];
    unittest_suite(&python, "tests/python/vra", &env, &kind.to_string(), 15).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_vra_actions_pass_their_python_tests_on_the_embedded_backend() {
    python_suite_passes_on(BackendKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_vra_actions_pass_their_python_tests_on_the_phpipam_fake() {
    python_suite_passes_on(BackendKind::Phpipam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_vra_actions_pass_their_python_tests_on_the_infoblox_fake() {
    python_suite_passes_on(BackendKind::Infoblox).await;
}

/// What the suites may rely on, per network: the topology fields, as the native API lists them.
fn topology_of(n: &Value) -> Value {
    json!({
        "name": n["name"],
        "cidr": n["cidr"],
        "address_space": n["address_space"],
        "gateway": n["gateway"],
        "dns_servers": n["dns_servers"],
        "dns_domain": n["dns_domain"],
        "dns_search_domains": n["dns_search_domains"],
        "vlan": n["vlan"],
    })
}

/// The matrix itself: every kind lists exactly the lab networks and the lab block, with the same
/// topology fields; ranges lie inside their CIDR; `lab-tiny` has exactly five addresses to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_serves_the_standard_lab_topology() {
    let want = lab_json();
    let want_nets: BTreeMap<String, Value> = want["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .map(|n| (n["name"].as_str().expect("name").to_owned(), n.clone()))
        .collect();
    assert_eq!(want_nets.len(), LAB_NETWORKS.len());
    for &kind in BackendKind::ALL {
        let app = spawn_lab(kind, false).await;
        let body: Value = app
            .get("/api/v1/networks")
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let got: BTreeMap<String, Value> = body["networks"]
            .as_array()
            .expect("networks")
            .iter()
            .map(|n| (n["name"].as_str().expect("name").to_owned(), n.clone()))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want_nets.keys().collect::<Vec<_>>(),
            "{kind}: the lab networks, no more (phpIPAM's unexposed subnet stays hidden)"
        );
        for (name, n) in &got {
            assert_eq!(topology_of(n), want_nets[name], "{kind}: network {name}");
            let cidr: ipnet::IpNet = n["cidr"].as_str().expect("cidr").parse().expect("cidr");
            for end in ["range_start", "range_end"] {
                let a: std::net::IpAddr = n[end].as_str().expect(end).parse().expect(end);
                assert!(cidr.contains(&a), "{kind}: {name} {end} {a} outside {cidr}");
            }
        }

        let blocks: Value = app
            .get("/api/v1/blocks")
            .send()
            .await
            .expect("blocks")
            .json()
            .await
            .expect("json");
        let blocks = blocks["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 1, "{kind}: {blocks:?}");
        let b = &blocks[0];
        assert_eq!(
            json!({"name": b["name"], "cidr": b["cidr"], "address_space": b["address_space"],
                "dns_servers": b["dns_servers"], "dns_domain": b["dns_domain"]}),
            want["block"],
            "{kind}: block"
        );
        assert_eq!(b["name"], LAB_BLOCK.name);

        // lab-tiny gives exactly its five addresses, then a clean exhaustion.
        let tiny = app.network_id("lab-tiny").await;
        let mut taken = Vec::new();
        for i in 0..=LAB_TINY_FREE {
            let resp = app
                .post(
                    "/api/v1/allocations",
                    &json!({"owner": format!("tiny-{i}"), "networks": [tiny]}),
                )
                .send()
                .await
                .expect("allocate");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            if i < LAB_TINY_FREE {
                assert_eq!(status, 201, "{kind}: tiny #{i}: {body}");
                taken.push(body["address"].as_str().expect("address").to_owned());
            } else {
                assert_eq!(status, 409, "{kind}: tiny is full: {body}");
                assert_eq!(body["error"]["code"], "exhausted", "{kind}: {body}");
            }
        }
        assert!(
            !taken.iter().any(|a| a == "10.40.0.1"),
            "{kind}: never the gateway: {taken:?}"
        );
        app.stop().await;
    }
}
