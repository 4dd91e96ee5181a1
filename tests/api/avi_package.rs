//! `ipam-gateway package avi`: the script file the controller takes.

use crate::support::gateway_process::Run;

#[test]
fn cli_package_avi_writes_the_script_under_a_pep8_name() {
    let dir = tempfile::tempdir().expect("tmp");
    // Default name, in the current directory.
    let run = Run::new(["package", "avi"]).in_dir(dir.path()).run();
    assert!(run.success(), "{}", run.stderr);
    let text = std::fs::read_to_string(dir.path().join("ipam_gateway_avi.py")).expect("written");
    assert_eq!(
        text,
        ipam_gateway::package::avi::script().expect("script"),
        "the CLI writes what the library builds"
    );
    assert!(run.stdout.contains("Custom IPAM/DNS"));

    let out = dir.path().join("lab_ipam.py");
    let run = Run::new(["package", "avi", "--out"]).arg(&out).run();
    assert!(run.success(), "{}", run.stderr);
    assert!(out.exists());

    for bad in ["Lab-IPAM.py", "lab_ipam.txt"] {
        let run = Run::new(["package", "avi", "--out"])
            .arg(dir.path().join(bad))
            .run();
        assert!(!run.success(), "{bad} accepted");
        assert!(run.stderr.contains("invalid out"), "{bad}: {}", run.stderr);
        assert!(!dir.path().join(bad).exists(), "{bad} written");
    }
}
