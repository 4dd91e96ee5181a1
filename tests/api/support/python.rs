//! Running the generated Python (the vRA actions, the Avi script) under python3, as vRA and Avi
//! would: which interpreter, and one `unittest` suite run with its verdict checked.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Python to run with (`$PYTHON`, else `python3`). python3 is part of what the test suite needs
/// (the README: Debian with the Rust toolchain and python3), so without it the caller fails, naming
/// `what` would not be tested; there is no switch that turns these suites into passes.
pub fn python(what: &str) -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let version = std::process::Command::new(&python)
        .arg("--version")
        .output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "{python} is needed for {what} (install python3, or point PYTHON at one): {version:?}"
    );
    python
}

/// `python -m unittest discover -s <suite>` from the repository root with `env` (plus no
/// bytecode and no proxy for the loopback gateway): it must exit 0 within 5 minutes, skip
/// nothing and run at least `at_least` tests. `label` names the run in failures.
pub async fn unittest_suite(
    python: &str,
    suite: &str,
    env: &[(&str, OsString)],
    label: &str,
    at_least: u32,
) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(python);
    cmd.args(["-m", "unittest", "discover", "-s", suite, "-v"])
        .current_dir(&root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The shims honour proxy settings as urllib does; the local gateway must not go through one.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("python tests finish within 5 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python tests failed on {label} ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("skipped"),
        "python tests were skipped on {label}:\n{stderr}"
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
    eprintln!("[{label}]\n{stderr}");
    assert!(
        ran >= at_least,
        "expected the whole suite to run on {label}, ran {ran}:\n{stderr}"
    );
}
