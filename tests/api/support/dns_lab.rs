//! Gateway configurations with a `[dns.lab]` section (BIND's zones and key, as
//! tests/api/support/bind.rs configures them), for every DNS test.

use std::net::SocketAddr;

/// `config` with `[dns.lab]` (the server at `server`, TSIG key `ipamgw-key` with `secret`)
/// attached to its backend of `kind`.
pub fn with_dns(
    config: &str,
    kind: &str,
    server: SocketAddr,
    secret: &str,
    required: bool,
    timeout_ms: u64,
) -> String {
    let k = format!("kind = \"{kind}\"");
    config.replacen(&k, &format!("{k}\ndns = \"lab\""), 1)
        + &format!(
            r#"
[dns.lab]
servers = ["{server}"]
key_name = "ipamgw-key"
secret = "{secret}"
forward_zones = ["lab.example.com"]
reverse_zones = ["20.10.in-addr.arpa", "0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"]
required = {required}
timeout_ms = {timeout_ms}
"#
        )
}
