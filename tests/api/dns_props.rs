//! Property test at contract level (issue 12, "Tests with a real DNS server"): any owner, host
//! name and description the contracts accept produce either valid DNS names or a clear 400.
//!
//! vRA allocate-ip and the native allocation, with arbitrary host names (unicode, dots, empty
//! labels, 63/64-character labels, 253/254-character names, underscores, trailing dots),
//! descriptions and owners, against the embedded backend with `[dns.lab]` attached
//! (`required = false`) and pointed at [`RefusingDns`], which records every name it is sent.
//! Asserted per case: never a 5xx; a 400 names the field and leaves no address allocated; a
//! success sent only valid DNS names (labels ≤ 63, name ≤ 253, LDH), and exactly the expected
//! one when the host name, qualified with lab-servers' domain, is valid and in the zone; a host
//! name that is not a valid DNS name is always a 400 (issue 12 §2), never a silent success.
//!
//! Avi's CreateIpamRecord the same way: 1 to 3 fqdns from the same host names, an arbitrary
//! record id, V4_ONLY or V4_V6 on lab-servers. A 400 names `record_info.fqdns[k]` (the first bad
//! one) or `record_info.id` and leaves nothing allocated; a success added an A (and AAAA) record
//! for each qualified fqdn and PTRs to the first, and the record is deleted through the contract.
//!
//! No BIND needed: the names are validated before any update is sent, and what was sent is what
//! the stub saw. 64 cases per property (`PROPTEST_CASES` to change).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::{AppOptions, BASE_CONFIG, TestApp, spawn_with};
use crate::vra_common::{allocation_at, filled, placeholders, vra};

const ZONE: &str = "lab.example.com";

/// A DNS server that refuses every update, after recording the owner names (and PTR targets)
/// of its update section. Modelled on BIND's answer to an update of a zone it does not let the
/// key update: an unsigned `REFUSED` (RFC 2136 §3.3; `a_zone_without_update_policy_is_refused`
/// in tests/api/dns.rs records BIND doing exactly that), which the gateway's client reports as
/// the server's answer without waiting for a timeout.
struct RefusingDns {
    addr: SocketAddr,
    /// (record type, name) of every record sent, names in text without the trailing dot.
    seen: Arc<Mutex<Vec<Sent>>>,
    /// The same for the records sent to be added (class IN; a delete is class NONE or ANY,
    /// RFC 2136 §2.5), in the same order.
    added: Arc<Mutex<Vec<Sent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingDns {
    async fn start() -> RefusingDns {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind UDP");
        let addr = socket.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let added = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let adds = added.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(msg) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                {
                    let mut log = log.lock().expect("lock");
                    let mut adds = adds.lock().expect("lock");
                    for r in &msg.authorities {
                        let mut entries = vec![(r.record_type(), text(&r.name.to_ascii()))];
                        if let RData::PTR(p) = &r.data {
                            entries.push((RecordType::PTR, text(&p.0.to_ascii())));
                        }
                        if r.dns_class == DNSClass::IN {
                            adds.extend(entries.iter().cloned());
                        }
                        log.extend(entries);
                    }
                }
                let mut answer = msg.clone().into_response();
                answer.metadata.response_code = ResponseCode::Refused;
                answer.answers.clear();
                answer.authorities.clear();
                answer.additionals.clear();
                answer.signature = None;
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        RefusingDns {
            addr,
            seen,
            added,
            task,
        }
    }

    fn take(&self) -> Vec<Sent> {
        self.take_with_added().0
    }

    /// Everything sent since the last take, and the part of it sent to be added.
    fn take_with_added(&self) -> (Vec<Sent>, Vec<Sent>) {
        let added = std::mem::take(&mut *self.added.lock().expect("lock"));
        (std::mem::take(&mut *self.seen.lock().expect("lock")), added)
    }
}

impl Drop for RefusingDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One record an update carried: its type and name (a PTR's target is logged as a second one).
type Sent = (RecordType, String);

fn text(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_owned()
}

/// The DNS name rules, written out independently of src/dns/names.rs: LDH labels of 1 to 63
/// characters, no '-' at either end, at most 253 characters without the trailing dot.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// What the host name should become in DNS (the rules of issue 12 §2): trimmed; absolute with a
/// trailing dot or when it has a dot; a single label gets lab-servers' domain; lowercased.
/// `None` for an empty host name (nothing to register).
fn expected_name(host: &str) -> Option<String> {
    let h = host.trim();
    if h.is_empty() {
        return None;
    }
    let bare = h.strip_suffix('.').unwrap_or(h);
    let fq = if h.ends_with('.') || bare.contains('.') {
        bare.to_owned()
    } else {
        format!("{bare}.{ZONE}")
    };
    Some(fq.to_ascii_lowercase())
}

fn in_zone(name: &str) -> bool {
    name == ZONE || name.ends_with(&format!(".{ZONE}"))
}

/// The embedded default config with `[dns.lab]` at `addr` on the `local` backend.
fn config(addr: SocketAddr) -> String {
    BASE_CONFIG.replacen(
        "kind = \"embedded\"",
        "kind = \"embedded\"\ndns = \"lab\"",
        1,
    ) + &format!(
        r#"
[dns.lab]
servers = ["{addr}"]
key_name = "ipamgw-key"
secret = "{secret}"
forward_zones = ["{ZONE}"]
reverse_zones = ["20.10.in-addr.arpa", "0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"]
required = false
timeout_ms = 2000
"#,
        secret = crate::support::bind::KEY_SECRET
    )
}

/// A name of exactly `len` characters in the zone, labels of at most `label` characters.
fn name_of_len(len: usize, label: usize) -> String {
    let suffix = format!(".{ZONE}");
    let mut prefix = String::new();
    let want = len.saturating_sub(suffix.len()).max(1);
    while prefix.len() < want {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        let room = want - prefix.len();
        // never leave a single trailing character that would have to be a lone '.'-label
        let take = if room > label && room - label < 2 {
            label - 2
        } else {
            room.min(label)
        };
        prefix.push_str(&"a".repeat(take.max(1)));
    }
    prefix + &suffix
}

const SPECIAL: &[&str] = &[
    "",
    " ",
    ".",
    "..",
    "vm..lab.example.com",
    ".lab.example.com",
    "_vm",
    "vm_1",
    "_ldap._tcp.lab.example.com",
    "vm-1.",
    "vm-1.lab.example.com.",
    "vm-1.lab.example.com..",
    "-vm",
    "vm-",
    "héllo",
    "bücher.lab.example.com",
    "xn--bcher-kva.lab.example.com",
    "vm 1",
    "vm\t1",
    " vm-2 ",
    "VM-Upper",
    "1234",
    "lab.example.com",
    "vm.LAB.Example.COM",
    "vm.elsewhere.org",
    "vm.lab.example.com.evil",
    "*.lab.example.com",
    "vm/1",
    "vm\u{0}1",
    "😀",
];

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,14}[a-zA-Z0-9])?"
}

fn host() -> BoxedStrategy<String> {
    prop_oneof![
        3 => label(),
        2 => prop::collection::vec(label(), 1..4).prop_map(|l| format!("{}.{ZONE}", l.join("."))),
        1 => (prop::collection::vec(label(), 1..4), any::<bool>())
            .prop_map(|(l, dot)| format!("{}{}", l.join("."), if dot { "." } else { "" })),
        2 => prop::sample::select(SPECIAL).prop_map(str::to_owned),
        1 => (label(), prop::sample::select(vec!["_", "é", ".", "..", "-", " ", "\u{200b}"]), label())
            .prop_map(|(a, mid, b)| format!("{a}{mid}{b}")),
        1 => "\\PC{0,24}",
        1 => (61usize..=66).prop_map(|n| "a".repeat(n)),
        1 => (61usize..=66).prop_map(|n| format!("{}.{ZONE}", "b".repeat(n))),
        1 => (250usize..=256, 40usize..=63).prop_map(|(n, l)| name_of_len(n, l)),
    ]
    .boxed()
}

fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .@_-]{0,40}",
        "\\PC{0,60}",
        (0usize..600).prop_map(|n| "d".repeat(n)),
    ]
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..Config::default()
    })
}

/// The common assertions for one answer. `hostname_field` is what the contract calls the host
/// name; `fields` the fields a 400 may name for this request.
#[allow(clippy::too_many_arguments)]
async fn check_answer(
    tally: &Tally,
    app: &TestApp,
    dns: &RefusingDns,
    host: &str,
    status: u16,
    body: &Value,
    address: Option<&str>,
    hostname_field: &str,
    fields: &[&str],
) -> Result<(), TestCaseError> {
    let sent = dns.take();
    prop_assert!(status < 500, "{host:?} → {status}: {body}");
    let expected = expected_name(host);
    let host_ok = expected.as_deref().is_none_or(valid_dns_name);
    if status == 400 {
        let field = body["error"]["field"].as_str().unwrap_or_default();
        prop_assert!(
            fields.iter().any(|f| field.starts_with(f)),
            "{host:?}: 400 names {field:?}: {body}"
        );
        prop_assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{body}"
        );
        if field == hostname_field {
            // Refused for its host name: it is not a valid name, or not in a zone dns.lab updates.
            prop_assert!(
                !host_ok || expected.as_deref().is_some_and(|n| !in_zone(n)),
                "{host:?} (DNS name {expected:?}) refused: {body}"
            );
        }
        prop_assert!(
            allocation_at(app, "10.20.0.2").await.is_none(),
            "{host:?}: an address left allocated after a 400: {body}"
        );
        prop_assert!(
            sent.iter().all(|(_, n)| valid_dns_name(n)),
            "{host:?}: sent {sent:?}"
        );
        if field == hostname_field {
            tally.refused_names.set(tally.refused_names.get() + 1);
        }
        return Ok(());
    }
    prop_assert!((200..300).contains(&status), "{host:?} → {status}: {body}");
    // Give the address back first, so that every case (and every shrunk one) starts from an
    // empty lab-servers.
    let address = address.unwrap_or_default();
    let held = allocation_at(app, address).await;
    if let Some(id) = held.as_ref().and_then(|a| a["id"].as_str()) {
        let r = app
            .delete(&format!("/api/v1/allocations/{id}"))
            .send()
            .await
            .expect("release");
        prop_assert!(r.status().is_success(), "release: {}", r.status());
    }
    dns.take();
    prop_assert!(held.is_some(), "{host:?}: {address} not held after {body}");
    prop_assert!(
        host_ok,
        "{host:?} is no DNS name ({expected:?}) and was accepted: {status} {body}; sent {sent:?}"
    );
    for (_, n) in &sent {
        prop_assert!(valid_dns_name(n), "{host:?}: sent {n:?}");
    }
    let forward: Vec<&String> = sent
        .iter()
        .filter(|(t, _)| *t == RecordType::A)
        .map(|(_, n)| n)
        .collect();
    match expected.as_deref() {
        Some(n) if in_zone(n) => {
            prop_assert_eq!(forward, vec![n], "{:?}: sent {:?}", host, sent);
            prop_assert!(
                sent.contains(&(RecordType::PTR, n.to_owned())),
                "{host:?}: no PTR to {n}: {sent:?}"
            );
            tally.registered.set(tally.registered.get() + 1);
        }
        // Nothing to register, or a name outside the zones (not required: counted, not sent).
        _ => prop_assert!(sent.is_empty(), "{host:?}: sent {sent:?}"),
    }
    Ok(())
}

/// How the cases ended, so that a run where nothing reached DNS, or no name was refused, fails.
#[derive(Default)]
struct Tally {
    registered: std::cell::Cell<u32>,
    refused_names: std::cell::Cell<u32>,
}

impl Tally {
    fn assert_both_sides(&self) {
        let (ok, refused) = (self.registered.get(), self.refused_names.get());
        eprintln!("{ok} names sent to DNS, {refused} host names refused with a 400");
        assert!(
            ok >= 5 && refused >= 5,
            "{ok} registered, {refused} refused"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn vra_allocate_names_are_valid_dns_names_or_a_400() {
    let rt = runtime();
    let dns = rt.block_on(RefusingDns::start());
    let app = rt.block_on(spawn_with(AppOptions {
        config: config(dns.addr),
        ..AppOptions::default()
    }));
    let values = rt.block_on(placeholders(&app));
    let strategy = (host(), free_text(), free_text(), 0..3u8);
    let tally = Tally::default();
    runner()
        .run(&strategy, |(host, owner, description, key)| {
            rt.block_on(async {
                let mut req = filled("allocate-ip", &values, &[]);
                req["resourceInfo"]["id"] = json!(format!(
                    "/resources/compute/{}",
                    uuid::Uuid::new_v4().simple()
                ));
                // The host name under each of the keys the gateway reads (hostName first).
                // The host name under one of the keys the gateway reads, alone (an empty one
                // would fall back to the next key).
                let hostname_field = ["name", "hostname", "hostName"][usize::from(key)];
                if let Some(r) = req["resourceInfo"].as_object_mut() {
                    for k in ["name", "hostname", "hostName"] {
                        r.remove(k);
                    }
                }
                req["resourceInfo"][hostname_field] = json!(host);
                req["resourceInfo"]["owner"] = json!(owner);
                req["ipAllocations"][0]["description"] = json!(description);
                let (status, body) = vra(&app, "allocate-ip", &req).await;
                let address = body["ipAllocations"][0]["ipAddresses"][0]
                    .as_str()
                    .map(str::to_owned);
                check_answer(
                    &tally,
                    &app,
                    &dns,
                    &host,
                    status.as_u16(),
                    &body,
                    address.as_deref(),
                    &format!("resourceInfo.{hostname_field}"),
                    &["resourceInfo.", "ipAllocations[0]"],
                )
                .await
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    tally.assert_both_sides();
    rt.block_on(app.stop());
}

#[test]
fn native_allocate_names_are_valid_dns_names_or_a_400() {
    let rt = runtime();
    let dns = rt.block_on(RefusingDns::start());
    let app = rt.block_on(spawn_with(AppOptions {
        config: config(dns.addr),
        ..AppOptions::default()
    }));
    let net = rt.block_on(app.network_id("lab-servers"));
    let strategy = (host(), free_text(), free_text());
    let tally = Tally::default();
    runner()
        .run(&strategy, |(host, owner, description)| {
            rt.block_on(async {
                let req = json!({"owner": owner, "hostname": host,
                    "description": description, "networks": [net]});
                let r = app
                    .post("/api/v1/allocations", &req)
                    .send()
                    .await
                    .expect("post");
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let address = body["address"].as_str().map(str::to_owned);
                check_answer(
                    &tally,
                    &app,
                    &dns,
                    &host,
                    status,
                    &body,
                    address.as_deref(),
                    "hostname",
                    &["owner", "hostname", "description"],
                )
                .await
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    tally.assert_both_sides();
    rt.block_on(app.stop());
}

/// Text the Avi contract takes as "no value" (the validator's menus pass `None` through as
/// text; src/contracts/avi/dto.rs): such an fqdn is skipped, not refused.
fn avi_blank(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "" | "none" | "null"
    )
}

/// What the fqdns of an Avi record should become in DNS, by the same rules as a vRA host name
/// ([`expected_name`]; issue 12 §2): blank ones skipped, the others qualified, once each, in
/// order. `Err(k)`: `fqdns[k]` is the first that is not a valid DNS name in the zone (a 400
/// naming `record_info.fqdns[k]`).
fn expected_avi_names(fqdns: &[String]) -> Result<Vec<String>, usize> {
    let mut out: Vec<String> = Vec::new();
    for (k, f) in fqdns.iter().enumerate() {
        if avi_blank(f) {
            continue;
        }
        match expected_name(f) {
            Some(n) if valid_dns_name(&n) && in_zone(&n) => {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            _ => return Err(k),
        }
    }
    Ok(out)
}

/// An fqdn the Avi contract refuses while reading the request, before DNS: blanks or control
/// characters inside, or longer than a name can be (src/contracts/avi/dto.rs).
fn no_name_at_all(fqdn: &str) -> bool {
    let t = fqdn.trim();
    let t = t.strip_suffix('.').unwrap_or(t);
    !avi_blank(t) && (t.len() > 253 || t.chars().any(|c| c.is_control() || c.is_whitespace()))
}

/// The first address of each lab-servers network: where a leaked allocation would be, since
/// every case starts with both networks empty.
const FIRST_V4: &str = "10.20.0.2";
const FIRST_V6: &str = "2001:db8:20::2";

/// The assertions for one CreateIpamRecord answer (the Avi counterpart of [`check_answer`]).
async fn check_avi_answer(
    tally: &Tally,
    app: &TestApp,
    dns: &RefusingDns,
    (id, fqdns, dual): (&str, &[String], bool),
    status: u16,
    body: &Value,
) -> Result<(), TestCaseError> {
    let (sent, added) = dns.take_with_added();
    let case = format!("id {id:?}, fqdns {fqdns:?}");
    prop_assert!(status < 500, "{case} → {status}: {body}");
    let expected = expected_avi_names(fqdns);
    if status == 400 {
        prop_assert_eq!(
            body["error"]["exception"].as_str(),
            Some("CustomIpamGeneralException"),
            "{}: {}",
            &case,
            body
        );
        prop_assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{body}"
        );
        let field = body["error"]["field"].as_str().unwrap_or_default();
        if field.starts_with("record_info.fqdns") {
            // Refused for a name: the first one that is no DNS name in the zone, except that
            // the request is read before DNS is asked, and reading it already refuses a text
            // that is no name at all (blanks, control characters, over 253 characters): the
            // first of those is named even when an earlier fqdn is only wrong for DNS.
            let first_bad = expected.as_ref().err().copied();
            let unreadable = fqdns.iter().position(|f| no_name_at_all(f));
            let want = unreadable.or(first_bad);
            prop_assert!(first_bad.is_some(), "{case}: refused: {body}");
            prop_assert_eq!(
                Some(field.to_owned()),
                want.map(|k| format!("record_info.fqdns[{k}]")),
                "{}: {}",
                &case,
                body
            );
            tally.refused_names.set(tally.refused_names.get() + 1);
        } else {
            // Another field of the request: only the id can be wrong here (blank).
            prop_assert_eq!(field, "record_info.id", "{}: {}", &case, body);
            prop_assert!(avi_blank(id), "{case}: refused the id: {body}");
        }
        for a in [FIRST_V4, FIRST_V6] {
            prop_assert!(
                allocation_at(app, a).await.is_none(),
                "{case}: {a} left allocated after a 400: {body}"
            );
        }
        prop_assert!(
            sent.iter().all(|(_, n)| valid_dns_name(n)),
            "{case}: sent {sent:?}"
        );
        return Ok(());
    }
    prop_assert_eq!(status, 200, "{}: {}", &case, body);
    // Delete the record through the contract first, so that every case (and every shrunk one)
    // starts from empty networks.
    let v4 = body["v4_ip"].as_str().unwrap_or_default().to_owned();
    let v6 = body["v6_ip"].as_str().unwrap_or_default().to_owned();
    let (gone, out) = crate::avi_common::delete(app, id).await;
    dns.take();
    prop_assert_eq!(gone.as_u16(), 200, "{}: delete: {}", &case, out);
    for a in [FIRST_V4, FIRST_V6] {
        prop_assert!(
            allocation_at(app, a).await.is_none(),
            "{case}: {a} still allocated after the delete"
        );
    }
    prop_assert_eq!(v4.as_str(), FIRST_V4, "{}: {}", &case, body);
    prop_assert_eq!(
        v6.as_str(),
        if dual { FIRST_V6 } else { "" },
        "{}: {}",
        &case,
        body
    );
    let names = match expected {
        Ok(n) => n,
        Err(k) => {
            return Err(TestCaseError::fail(format!(
                "{case}: fqdns[{k}] is no DNS name in the zone and was accepted: {body}; \
                 sent {sent:?}"
            )));
        }
    };
    for (_, n) in &sent {
        prop_assert!(valid_dns_name(n), "{case}: sent {n:?}");
    }
    // What was added (a record set's update may also delete stale records, e.g. PTRs to other
    // names of the address; those are not registrations).
    let of = |t: RecordType| -> Vec<String> {
        let mut v: Vec<String> = added
            .iter()
            .filter(|(rt, _)| *rt == t)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    };
    let mut want = names.clone();
    want.sort();
    // Every name gets an A record (and an AAAA one when dual-stack) ...
    prop_assert_eq!(
        of(RecordType::A),
        want.clone(),
        "{}: sent {:?}",
        &case,
        &sent
    );
    let want6 = if dual { want } else { Vec::new() };
    prop_assert_eq!(of(RecordType::AAAA), want6, "{}: sent {:?}", &case, &sent);
    // ... and the PTR records (one per address) name the first.
    let ptr_targets: Vec<String> = of(RecordType::PTR)
        .into_iter()
        .filter(|n| in_zone(n))
        .collect();
    let want_ptr = match names.first() {
        Some(first) => vec![first.clone(); if dual { 2 } else { 1 }],
        None => Vec::new(),
    };
    prop_assert_eq!(ptr_targets, want_ptr, "{}: sent {:?}", &case, &sent);
    if names.is_empty() {
        prop_assert!(sent.is_empty(), "{case}: no names, sent {sent:?}");
    } else {
        tally.registered.set(tally.registered.get() + 1);
    }
    Ok(())
}

#[test]
fn avi_create_names_are_valid_dns_names_or_a_400() {
    let rt = runtime();
    let dns = rt.block_on(RefusingDns::start());
    let app = rt.block_on(spawn_with(AppOptions {
        config: config(dns.addr),
        ..AppOptions::default()
    }));
    let v4 = rt.block_on(crate::avi_common::net_id(&app, "10.20.0.0/24"));
    let v6 = rt.block_on(crate::avi_common::net_id(&app, "2001:db8:20::/64"));
    // CreateIpamRecord's record_info has no description; the gateway writes one from the id
    // and the fqdns, so both reach the backend's description too.
    let strategy = (
        prop::collection::vec(host(), 1..=3),
        free_text(),
        any::<bool>(),
    );
    let tally = Tally::default();
    runner()
        .run(&strategy, |(fqdns, id, dual)| {
            rt.block_on(async {
                let (kind, subnets) = if dual {
                    (
                        "V4_V6",
                        json!([[format!("{v4}+{v6}"), "10.20.0.0/24", "2001:db8:20::/64"]]),
                    )
                } else {
                    ("V4_ONLY", json!([[v4, "10.20.0.0/24", null]]))
                };
                let (status, body) = crate::avi_common::create(
                    &app,
                    json!({"id": id, "fqdns": fqdns, "allocation_type": kind,
                        "nw_and_subnet_list": subnets}),
                )
                .await;
                check_avi_answer(
                    &tally,
                    &app,
                    &dns,
                    (&id, &fqdns, dual),
                    status.as_u16(),
                    &body,
                )
                .await
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    tally.assert_both_sides();
    rt.block_on(app.stop());
}

/// What the property found (fixed in src/contracts/avi/dto.rs): the Avi contract dropped every
/// trailing dot of an fqdn before DNS saw it, so `vm-1.` (absolute: a top-level name) was
/// registered as `vm-1.lab.example.com`, and `vs.lab.example.com..` (an empty label) as
/// `vs.lab.example.com`. Now both are a 400 naming the fqdn; one trailing dot on a name with a
/// dot still means the same name.
#[test]
fn avi_fqdns_keep_the_meaning_of_their_trailing_dots() {
    let rt = runtime();
    let dns = rt.block_on(RefusingDns::start());
    let app = rt.block_on(spawn_with(AppOptions {
        config: config(dns.addr),
        ..AppOptions::default()
    }));
    rt.block_on(async {
        let v4 = crate::avi_common::net_id(&app, "10.20.0.0/24").await;
        let record = |fqdns: &[&str]| {
            json!({"id": "vsvip-dots", "fqdns": fqdns, "allocation_type": "V4_ONLY",
                "nw_and_subnet_list": [[v4, "10.20.0.0/24", null]]})
        };
        for (fqdns, field) in [
            (vec!["vm-1."], "record_info.fqdns[0]"),
            (
                vec!["ok.lab.example.com", "vs.lab.example.com.."],
                "record_info.fqdns[1]",
            ),
            (vec!["."], "record_info.fqdns[0]"),
        ] {
            let (status, e) = crate::avi_common::create(&app, record(&fqdns)).await;
            assert_eq!(status, 400, "{fqdns:?}: {e}");
            assert_eq!(e["error"]["field"], field, "{e}");
            assert!(allocation_at(&app, FIRST_V4).await.is_none(), "{fqdns:?}");
            assert_eq!(dns.take(), [], "{fqdns:?}: nothing sent");
        }
        let (status, info) =
            crate::avi_common::create(&app, record(&["VS.lab.example.com.", "vm-2"])).await;
        assert_eq!(status, 200, "{info}");
        let (_, added) = dns.take_with_added();
        let a: Vec<&str> = added
            .iter()
            .filter(|(t, _)| *t == RecordType::A)
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(
            a,
            ["vs.lab.example.com", "vm-2.lab.example.com"],
            "{added:?}"
        );
        let (status, out) = crate::avi_common::delete(&app, "vsvip-dots").await;
        assert_eq!(status, 200, "{out}");
        assert!(allocation_at(&app, FIRST_V4).await.is_none());
    });
    rt.block_on(app.stop());
}
