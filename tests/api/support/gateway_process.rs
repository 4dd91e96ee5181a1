//! The one harness for tests that run the built binary as an operator does.
//!
//! - [`GatewayProcess`]: `ipam-gateway serve` in its own working directory on a free loopback
//!   port, read back from the address line it prints on start, stopped with SIGTERM (or SIGKILL),
//!   its stderr kept when a test reads its logs. Dropping it kills and reaps the process, so a
//!   failing test leaves no gateway behind.
//! - [`Run`]: one run to its end (`check`, `hash-password`, `package …`, `print-config`): args,
//!   environment, stdin, a working directory (a fresh temporary one unless given), a timeout that
//!   kills the child; hands back its exit code, stdout and stderr ([`Ran`]).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// How long a [`Run`] may take before it is killed and the test fails: far above any run's
/// (a `check` waits at most its backends' timeouts, a few seconds in the test configs).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One run of the binary to its end: `ipam-gateway <args>`.
///
/// Like [`GatewayProcess`], the run does not see the test process's `IPAMGW_CONFIG` or
/// `RUST_LOG`; the environment a test sets comes last. Stdin is empty unless given.
#[derive(Debug, Clone)]
pub struct Run {
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    terminal: Option<Duration>,
}

/// What a [`Run`] left: its exit code (`None` when a signal ended it) and its output.
#[derive(Debug, Clone)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout, then stderr: everything an operator sees.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Run {
    /// `ipam-gateway <args>`; more with [`Run::arg`].
    pub fn new<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run {
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            dir: None,
            env: Vec::new(),
            stdin: None,
            terminal: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// The working directory (else a fresh temporary one, removed after the run).
    pub fn in_dir(mut self, dir: &Path) -> Run {
        self.dir = Some(dir.to_owned());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn envs<K, V>(self, vars: impl IntoIterator<Item = (K, V)>) -> Run
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        vars.into_iter().fold(self, |run, (k, v)| run.env(k, v))
    }

    /// Unset (e.g. `NO_COLOR`, which a developer's shell may carry).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Run {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// What the binary reads on stdin (then end of file).
    pub fn stdin(mut self, input: &[u8]) -> Run {
        self.stdin = Some(input.to_vec());
        self
    }

    /// On a terminal (util-linux `script` gives the binary one), stopped with SIGTERM after
    /// `for_` (coreutils `timeout`): for what the binary does only when stderr is a tty. Stdout
    /// and stderr then both arrive as the terminal's output, in [`Ran::stdout`].
    pub fn on_a_terminal(mut self, for_: Duration) -> Run {
        self.terminal = Some(for_);
        self
    }

    /// Runs to the end in a blocking thread, for async tests whose runtime must keep serving
    /// the mocks and fakes the binary talks to.
    pub async fn run_async(self) -> Ran {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .expect("the run's thread")
    }

    /// Runs to the end (or to the timeout: then the child is killed and the test fails).
    pub fn run(self) -> Ran {
        let temp = match &self.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("a working directory")),
        };
        let dir = self
            .dir
            .clone()
            .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
            .expect("a working directory");
        let mut cmd = match self.terminal {
            None => {
                let mut cmd = Command::new(binary());
                cmd.args(&self.args);
                cmd
            }
            Some(for_) => {
                let mut line = format!("timeout -s TERM {} {}", for_.as_secs(), quoted(&binary()));
                for a in &self.args {
                    line.push(' ');
                    line.push_str(&quoted(Path::new(a)));
                }
                let mut cmd = Command::new("script");
                cmd.args(["-q", "-e", "-c"]).arg(line).arg("/dev/null");
                cmd
            }
        };
        cmd.current_dir(&dir)
            .env_remove("IPAMGW_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(match self.stdin {
                Some(_) => Stdio::piped(),
                None => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let what = format!("ipam-gateway {:?}", self.args);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            match child.try_wait().expect("wait for the binary") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "{what} still running after {:?}: killed\n{stdout}\n{stderr}",
                RUN_TIMEOUT
            );
        };
        Ran {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

/// A pipe read to its end in its own thread (so neither pipe can fill up and stall the child).
fn read_all(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// One word for `sh -c`.
fn quoted(word: &Path) -> String {
    format!("'{}'", word.to_string_lossy().replace('\'', "'\\''"))
}

/// `ipam-gateway check --config <config_text>` (written to a temporary file): the exit code and
/// everything printed.
pub async fn run_check(config_text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, config_text).expect("write config");
    let ran = Run::new(["check", "--config"]).arg(&path).run_async().await;
    (ran.code, ran.output())
}
