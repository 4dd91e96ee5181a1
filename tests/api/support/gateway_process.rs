//! The one harness for tests that run the built binary as an operator does: `ipam-gateway serve`
//! in its own working directory on a free loopback port, read back from the address line it
//! prints on start, stopped with SIGTERM (or SIGKILL), its stderr kept when a test reads its logs.
//! Dropping it kills and reaps the process, so a failing test leaves no gateway behind.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::binary;

/// What happens to what the gateway writes to stderr (its logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// Thrown away.
    Discard,
    /// Kept, and handed back by [`GatewayProcess::terminate`].
    Keep,
}

/// A running `ipam-gateway serve`.
pub struct GatewayProcess {
    pub child: Child,
    /// `http://127.0.0.1:<port>` or, with TLS, `https://…`, as printed on start.
    pub base_url: String,
    /// The line printed on start (the address, and the certificate fingerprint with TLS).
    pub banner: String,
    stderr: Option<mpsc::Receiver<String>>,
}

impl GatewayProcess {
    /// `ipam-gateway serve` on the embedded default config in `dir` (HTTPS with the certificate
    /// it generates in `dir/data/tls/`), metrics on a free port too; `env` is set last.
    pub fn embedded(dir: &Path, env: &[(&str, &str)], stderr: Stderr) -> GatewayProcess {
        let mut cmd = Command::new(binary());
        cmd.arg("serve");
        Self::spawn(cmd, dir, env, stderr)
    }

    /// `ipam-gateway --config <config> serve` in `dir`; `env` is set last.
    pub fn with_config(
        dir: &Path,
        config: &Path,
        env: &[(&str, &str)],
        stderr: Stderr,
    ) -> GatewayProcess {
        let mut cmd = Command::new(binary());
        cmd.arg("--config").arg(config).arg("serve");
        Self::spawn(cmd, dir, env, stderr)
    }

    fn spawn(mut cmd: Command, dir: &Path, env: &[(&str, &str)], stderr: Stderr) -> Self {
        cmd.current_dir(dir)
            .env("IPAMGW_SERVER__LISTEN", "127.0.0.1:0")
            .env("IPAMGW_METRICS__LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .env_remove("IPAMGW_CONFIG")
            .stdout(Stdio::piped())
            .stderr(match stderr {
                Stderr::Discard => Stdio::null(),
                Stderr::Keep => Stdio::piped(),
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().map(|mut pipe| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut all = String::new();
                let _ = pipe.read_to_string(&mut all);
                let _ = tx.send(all);
            });
            rx
        });
        let banner = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway prints its address on start");
        let base_url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no URL in {banner:?}"))
            .to_owned();
        GatewayProcess {
            child,
            base_url,
            banner,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// SIGTERM, then the exit status and everything written to stderr (empty when discarded).
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait");
        let logs = self
            .stderr
            .as_ref()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(10)).ok())
            .unwrap_or_default();
        (status, logs)
    }
}

impl Drop for GatewayProcess {
    /// SIGKILL and reap (nothing is signalled once the process has been waited for).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
