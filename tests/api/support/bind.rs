//! A real BIND 9 `named` for the DNS tests: a child process on a free loopback port (UDP and
//! TCP), with a generated config in a temporary directory, stopped on drop.
//!
//! Zones: `lab.example.com` (forward), `20.10.in-addr.arpa` (IPv4 reverse of 10.20.0.0/16),
//! `0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa` (IPv6 reverse of 2001:db8:20::/48), all updatable by the
//! TSIG key `ipamgw-key` (hmac-sha256) through `update-policy { grant … zonesub ANY; }`; and
//! `readonly.example.com`, which has no update policy: BIND refuses every update to it
//! (`REFUSED`). The `named.conf` this writes is the one the README shows.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle as _;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message, Query};
use hickory_proto::rr::{Name, RecordType};

pub const KEY_NAME: &str = "ipamgw-key";
/// A test-only key (32 bytes, base64), as `tsig-keygen -a hmac-sha256 ipamgw-key` prints one.
pub const KEY_SECRET: &str = "3q2+7yYbB1hO0dGm8cX6vN9kqZpWnT4sJr2LfA5uEoI=";
/// Another valid key that BIND does not know under `ipamgw-key`.
pub const WRONG_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const FORWARD_ZONE: &str = "lab.example.com";
pub const REVERSE_V4: &str = "20.10.in-addr.arpa";
pub const REVERSE_V6: &str = "0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
pub const READONLY_ZONE: &str = "readonly.example.com";

/// Where `named` is: `$IPAMGW_NAMED`, `/usr/sbin/named`, then `$PATH` (as build.rs looks).
pub fn named_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IPAMGW_NAMED") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let sbin = Path::new("/usr/sbin/named");
    if sbin.is_file() {
        return Some(sbin.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("named"))
        .find(|p| p.is_file())
}

pub struct Bind {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The `named.conf` of the tests (the README's snippet is its key and zone part).
pub fn named_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let mut conf = format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
controls {{ }};

key "{KEY_NAME}" {{
    algorithm hmac-sha256;
    secret "{KEY_SECRET}";
}};
"#
    );
    for zone in [FORWARD_ZONE, REVERSE_V4, REVERSE_V6] {
        conf.push_str(&format!(
            r#"
zone "{zone}" {{
    type primary;
    file "{d}/{zone}.zone";
    update-policy {{ grant {KEY_NAME} zonesub ANY; }};
}};
"#
        ));
    }
    conf.push_str(&format!(
        r#"
zone "{READONLY_ZONE}" {{
    type primary;
    file "{d}/{READONLY_ZONE}.zone";
}};
"#
    ));
    conf
}

fn zone_file(zone: &str) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns.{FORWARD_ZONE}. hostmaster.{FORWARD_ZONE}. 1 3600 600 86400 300\n\
         @ IN NS ns.{FORWARD_ZONE}.\n{}",
        if zone == FORWARD_ZONE {
            "ns IN A 127.0.0.1\n"
        } else {
            ""
        }
    )
}

fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

impl Bind {
    /// Starts `named` and waits until it answers the forward zone's SOA (10 s at most).
    pub async fn start() -> Bind {
        let named = named_path().expect("BIND's named is not installed (.ci/run installs it)");
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            for zone in [FORWARD_ZONE, REVERSE_V4, REVERSE_V6, READONLY_ZONE] {
                std::fs::write(dir.path().join(format!("{zone}.zone")), zone_file(zone))
                    .expect("write zone file");
            }
            let port = free_port();
            let conf = dir.path().join("named.conf");
            std::fs::write(&conf, named_conf(dir.path(), port)).expect("write named.conf");
            let log = std::fs::File::create(dir.path().join("named.log")).expect("log file");
            let child = Command::new(&named)
                // -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker (2 shared cores).
                .args(["-g", "-4", "-n", "1", "-c"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start named");
            let mut bind = Bind {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child: Some(child),
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(c) = bind.child.as_mut()
                    && let Ok(Some(_)) = c.try_wait()
                {
                    break;
                }
                if bind
                    .soa_answers(FORWARD_ZONE, Duration::from_millis(200))
                    .await
                {
                    return bind;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            last_log = bind.log();
            bind.stop();
        }
        panic!("named did not start:\n{last_log}");
    }

    /// What named wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Stops named (SIGKILL) and waits for it; the port stays unanswered.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn soa_answers(&self, zone: &str, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.lookup(zone, RecordType::SOA))
            .await
            .is_ok_and(|r| !r.is_empty())
    }

    /// The PTR records of an address (`10.20.0.5`, `2001:db8::5`) as BIND serves them.
    pub async fn ptr(&self, addr: &str) -> Vec<String> {
        let ip: std::net::IpAddr = addr.parse().expect("an address");
        self.lookup(&ipam_gateway::dns::names::reverse_name(ip), RecordType::PTR)
            .await
    }

    /// The records of `name` and type `rtype` as BIND serves them, in text (`10.20.0.5`,
    /// `vm-1.lab.example.com.`), sorted. An unsigned query, like any resolver's.
    pub async fn lookup(&self, name: &str, rtype: RecordType) -> Vec<String> {
        let name =
            Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).expect("a DNS name");
        let mut msg = Message::query();
        msg.metadata.recursion_desired = false;
        msg.add_query(Query::query(name, rtype));
        let exchange = UdpClientStream::builder(self.addr, TokioRuntimeProvider::default())
            .with_timeout(Some(Duration::from_secs(2)))
            .exchange();
        let Some(Ok(resp)) = exchange
            .send(DnsRequest::new(msg, DnsRequestOptions::default()))
            .next()
            .await
        else {
            return Vec::new();
        };
        let mut out: Vec<String> = resp
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| r.data.to_string())
            .collect();
        out.sort();
        out
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.stop();
    }
}
