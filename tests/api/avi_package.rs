//! `ipam-gateway package avi`: the script file the controller takes.

#[test]
fn cli_package_avi_writes_the_script_under_a_pep8_name() {
    let dir = tempfile::tempdir().expect("tmp");
    // Default name, in the current directory.
    let run = std::process::Command::new(crate::support::binary())
        .args(["package", "avi"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("ipam_gateway_avi.py")).expect("written");
    assert_eq!(
        text,
        ipam_gateway::package::avi::script().expect("script"),
        "the CLI writes what the library builds"
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("Custom IPAM/DNS"));

    let out = dir.path().join("lab_ipam.py");
    let run = std::process::Command::new(crate::support::binary())
        .args(["package", "avi", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.exists());

    for bad in ["Lab-IPAM.py", "lab_ipam.txt"] {
        let run = std::process::Command::new(crate::support::binary())
            .args(["package", "avi", "--out"])
            .arg(dir.path().join(bad))
            .output()
            .expect("run");
        assert!(!run.status.success(), "{bad} accepted");
        assert!(
            String::from_utf8_lossy(&run.stderr).contains("invalid out"),
            "{bad}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(!dir.path().join(bad).exists(), "{bad} written");
    }
}
