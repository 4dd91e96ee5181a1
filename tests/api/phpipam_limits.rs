//! phpIPAM's column limits (fixtures 146–151, `src/backends/phpipam/limits.rs`): the fake refuses
//! what the real phpIPAM refuses, and the gateway only ever writes what fits — descriptions
//! shortened at a character boundary with `…`, hostnames and owners that cannot fit refused
//! with a 400 naming the field — and answers with what it wrote.

use std::net::IpAddr;

use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::domain::{
    AllocateIn, CarveRequest, IpamError, Owner, RecordChanges, RecordDetails,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::avi_common::{create, fresh_id, held};
use crate::phpipam_fake::{assert_conforms, replay};
use crate::support::matrix::{BackendKind, spawn_lab};
use crate::support::phpipam::{backend, config};
use crate::support::phpipam_fake::{FakeAddress, FakePhpipam};
use crate::support::{AppOptions, spawn_with};
use crate::vra_common::{error_of, filled, placeholders, vra, vra_ok};

/// phpIPAM 1.8.2's `ipaddresses.description` is a varchar(64) (fixtures 146, 147).
const DESCRIPTION_CHARS: usize = 64;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn owner(s: &str) -> Owner {
    Owner::parse(s).expect("owner")
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// What the gateway writes for a description that does not fit: its first 63 characters
/// (trailing blanks dropped) and `…`.
fn shortened(text: &str) -> String {
    let kept: String = text.chars().take(DESCRIPTION_CHARS - 1).collect();
    format!("{}…", kept.trim_end())
}

fn record_at(fake: &FakePhpipam, address: &str) -> FakeAddress {
    let address = ip(address);
    fake.with(|s| s.addresses.values().find(|a| a.ip == address).cloned())
        .unwrap_or_else(|| panic!("no record for {address}"))
}

fn allocate_in(net: &str, who: &str, details: RecordDetails) -> AllocateIn {
    AllocateIn {
        network: net.into(),
        owner: owner(who),
        address: None,
        details,
    }
}

fn description(d: &str) -> RecordDetails {
    RecordDetails {
        aliases: Vec::new(),
        hostname: None,
        description: Some(d.into()),
        mac: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The fake against the recordings

/// Fixtures 146–151 replayed in order on the lab, its next address id set to the recorded 34:
/// 64 characters pass, 65 (description), 129 (owner) and 256 (hostname) are refused with the
/// recorded 500 and message and nothing is inserted; a PATCH over the limit is refused and the
/// record keeps its old description; the record then deletes as recorded.
#[tokio::test]
async fn the_fake_enforces_column_limits_like_the_recorded_phpipam() {
    let fake = FakePhpipam::start().await;
    fake.with(|s| s.next_address = 34);
    let token = fake.login("Admin");

    let (ex, status, body) = replay(&fake, &token, "146").await;
    assert_conforms(&ex, status, &body);
    assert_eq!(body["id"], ex.body()["id"], "the recorded id");
    let x64 = "x".repeat(64);
    assert_eq!(
        fake.with(|s| s.addresses[&34].description.clone()),
        Some(x64.clone())
    );

    let before = fake.with(|s| (s.addresses.len(), s.next_address));
    for which in ["147", "148", "149"] {
        let (ex, status, body) = replay(&fake, &token, which).await;
        assert_eq!(status, 500, "{which}");
        assert_conforms(&ex, status, &body);
        assert_eq!(
            fake.with(|s| (s.addresses.len(), s.next_address)),
            before,
            "{which}: nothing inserted"
        );
    }

    let (ex, status, body) = replay(&fake, &token, "150").await;
    assert_conforms(&ex, status, &body);
    assert_eq!(
        fake.with(|s| s.addresses[&34].description.clone()),
        Some(x64),
        "the refused PATCH left the old description"
    );

    let (ex, status, body) = replay(&fake, &token, "151").await;
    assert_conforms(&ex, status, &body);
    assert!(fake.with(|s| !s.addresses.contains_key(&34)));
}

/// A varchar(N) counts characters, not bytes (utf8mb4): 64 "é" (128 bytes) fit the description,
/// 65 do not — the same as fixtures 146/147 with two-byte characters.
#[tokio::test]
async fn the_fake_counts_characters_like_mariadb() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let req = client
            .post(format!("{}/api/gateway/addresses/first_free/7/", fake.url))
            .header("phpipam-token", &token)
            .json(&body);
        async move {
            let resp = req.send().await.expect("fake answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = post(json!({"description": "é".repeat(64)})).await;
    assert_eq!(status, 201, "{body}");
    let before = fake.addresses_in(7).len();
    let (status, body) = post(json!({"description": "é".repeat(65)})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["message"],
        "Error: SQLSTATE[22001]: String data, right truncated: 1406 Data too long for column 'description' at row 1"
    );
    assert_eq!(fake.addresses_in(7).len(), before, "nothing inserted");
    let (status, _) = post(json!({"hostname": "ü".repeat(255), "owner": "ö".repeat(128)})).await;
    assert_eq!(status, 201, "255 / 128 characters of two bytes each fit");
}

/// `subnets.description` is `text` (65,535 bytes; INFERRED from phpIPAM v1.8.2's `db/SCHEMA.sql`,
/// not recorded): longer is the same 500 and no subnet is created, on both create calls.
#[tokio::test]
async fn the_fake_refuses_a_subnet_description_longer_than_its_text_column() {
    let fake = FakePhpipam::start().await;
    let token = fake.login("Admin");
    let client = reqwest::Client::new();
    let huge = "é".repeat(32_768); // 65,536 bytes
    for (path, body) in [
        (
            "subnets/10/first_subnet/26/",
            json!({"description": huge.clone()}),
        ),
        (
            "subnets/",
            json!({"subnet": "10.30.5.0", "mask": "24", "sectionId": "3",
                "masterSubnetId": "10", "description": huge.clone()}),
        ),
    ] {
        let before = fake.with(|s| s.subnets.len());
        let resp = client
            .post(format!("{}/api/gateway/{path}", fake.url))
            .header("phpipam-token", &token)
            .json(&body)
            .send()
            .await
            .expect("fake answers");
        assert_eq!(resp.status().as_u16(), 500, "{path}");
        let got: Value = resp.json().await.expect("json");
        assert_eq!(
            got["message"],
            "Error: SQLSTATE[22001]: String data, right truncated: 1406 Data too long for column 'description' at row 1",
            "{path}"
        );
        assert_eq!(
            fake.with(|s| s.subnets.len()),
            before,
            "{path}: nothing created"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The backend against the fake

/// First free (`POST addresses/first_free/`) and a specific address (`POST addresses/`): a long
/// description is shortened to 64 characters at a character boundary, and the answer carries
/// what phpIPAM holds.
#[tokio::test]
async fn long_descriptions_are_shortened_on_allocation_and_reported_as_written() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    for (who, text, specific) in [
        ("vm-ascii", "a".repeat(100), None),
        ("vm-accents", "é".repeat(70), Some("10.10.0.60")),
        (
            "vm-cjk",
            format!("数据中心 {}", "网络服务器".repeat(20)),
            None,
        ),
        (
            "vm-blank",
            format!("{} {}", "b".repeat(62), "c".repeat(10)),
            Some("10.10.0.61"),
        ),
    ] {
        let mut req = allocate_in("7", who, description(&text));
        req.address = specific.map(ip);
        let a = b.allocate(&cx, &req).await.expect(who);
        let stored = record_at(&fake, &a.address.to_string());
        let written = stored.description.expect("description");
        assert_eq!(written, shortened(&text), "{who}");
        assert!(chars(&written) <= DESCRIPTION_CHARS, "{who}");
        assert_eq!(
            a.details.description.as_deref(),
            Some(written.as_str()),
            "{who}: answer"
        );
    }
    // A description that fits is written as given.
    let fits = "é".repeat(64);
    let a = b
        .allocate(&cx, &allocate_in("7", "vm-fits", description(&fits)))
        .await
        .expect("fits");
    assert_eq!(
        record_at(&fake, &a.address.to_string()).description,
        Some(fits)
    );
}

/// Without a description the gateway writes `ipam-gateway: <owner>`: with a long owner that
/// is shortened too (an owner of up to 128 characters fits phpIPAM's owner column).
#[tokio::test]
async fn the_default_description_of_a_long_owner_is_shortened() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let who = format!("team-{}", "o".repeat(100));
    let a = b
        .allocate(
            &CallContext::default(),
            &allocate_in("7", &who, RecordDetails::default()),
        )
        .await
        .expect("allocate");
    let stored = record_at(&fake, &a.address.to_string());
    assert_eq!(
        stored.owner.as_deref(),
        Some(who.as_str()),
        "the owner is whole"
    );
    assert_eq!(
        stored.description,
        Some(shortened(&format!("ipam-gateway: {who}")))
    );
}

/// The owner is never cut: it is the key the gateway finds the address by. phpIPAM's owner
/// column counts characters, so 100 "é" (200 bytes) fit; 129 characters are a 400 naming
/// `owner` and nothing is written.
#[tokio::test]
async fn owners_are_measured_in_characters_and_never_cut() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    let accents = "é".repeat(100);
    let a = b
        .allocate(&cx, &allocate_in("7", &accents, RecordDetails::default()))
        .await
        .expect("100 characters fit");
    assert_eq!(
        record_at(&fake, &a.address.to_string()).owner.as_deref(),
        Some(accents.as_str())
    );
    let before = fake.addresses_in(7).len();
    let long = "o".repeat(129);
    match b
        .allocate(&cx, &allocate_in("7", &long, RecordDetails::default()))
        .await
    {
        Err(IpamError::InvalidInput { field, why }) => {
            assert_eq!(field, "owner");
            assert!(why.contains("at most 128 characters"), "{why}");
            assert!(why.contains("owner_field"), "says what to do: {why}");
        }
        other => panic!("expected a 400 naming owner: {other:?}"),
    }
    assert_eq!(fake.addresses_in(7).len(), before, "nothing written");
}

/// A hostname is never cut into another name: longer than phpIPAM's 255-character column is
/// a 400 naming `hostname`, on allocation and on update, and nothing is written.
#[tokio::test]
async fn hostnames_that_cannot_fit_are_refused_with_the_field() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    let long = format!("{}.example.com", "h".repeat(244)); // 256 characters
    assert_eq!(chars(&long), 256);
    let before = fake.addresses_in(7).len();
    let details = RecordDetails {
        aliases: Vec::new(),
        hostname: Some(long.clone()),
        description: None,
        mac: None,
    };
    let err = b
        .allocate(&cx, &allocate_in("7", "vm-long-host", details))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, IpamError::InvalidInput { field, .. } if field == "hostname"),
        "{err:?}"
    );
    assert_eq!(fake.addresses_in(7).len(), before, "nothing written");

    // 255 characters (multi-byte) fit.
    let fits = "ü".repeat(255);
    let details = RecordDetails {
        aliases: Vec::new(),
        hostname: Some(fits.clone()),
        description: None,
        mac: None,
    };
    let a = b
        .allocate(&cx, &allocate_in("7", "vm-host", details))
        .await
        .expect("255 characters fit");
    assert_eq!(
        record_at(&fake, &a.address.to_string()).hostname,
        Some(fits.clone())
    );

    let changes = RecordChanges {
        aliases: None,
        hostname: Some(long),
        description: Some("also refused".into()),
        mac: None,
    };
    let err = b
        .update(&cx, "7", a.address, &changes)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, IpamError::InvalidInput { field, .. } if field == "hostname"),
        "{err:?}"
    );
    let stored = record_at(&fake, &a.address.to_string());
    assert_eq!(stored.hostname, Some(fits), "unchanged");
    assert_ne!(
        stored.description.as_deref(),
        Some("also refused"),
        "unchanged"
    );
}

/// `PATCH addresses/{id}/` with a long description: shortened, and the answer is what phpIPAM
/// holds (fixture 150 is what happened before: a 500 and nothing changed).
#[tokio::test]
async fn a_long_description_on_update_is_shortened_and_reported_as_written() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    let a = b
        .allocate(&cx, &allocate_in("7", "vm-upd", RecordDetails::default()))
        .await
        .expect("allocate");
    let text = format!("moved to rack 12 — {}", "ü".repeat(80));
    let changes = RecordChanges {
        aliases: None,
        hostname: None,
        description: Some(text.clone()),
        mac: None,
    };
    let updated = b
        .update(&cx, "7", a.address, &changes)
        .await
        .expect("update");
    let stored = record_at(&fake, &a.address.to_string());
    assert_eq!(stored.description, Some(shortened(&text)));
    assert_eq!(
        updated.details.description, stored.description,
        "answer = stored"
    );
}

/// Carving (`POST subnets/{block}/first_subnet/{mask}/` and `POST subnets/`): a name too long
/// for `subnets.description` (text, 65,535 bytes) is shortened; the owner marker after it is
/// kept whole, so the network is still found as its owner's.
#[tokio::test]
async fn a_carved_network_name_too_long_for_its_column_is_shortened_keeping_the_owner() {
    let fake = FakePhpipam::start().await;
    let b = backend(&fake.url, "");
    let cx = CallContext::default();
    for (subnet, name) in [
        (None, "網".repeat(30_000)),
        (Some("10.30.9.0/28"), "n".repeat(70_000)),
    ] {
        let req = CarveRequest {
            block: "10".into(),
            prefix_len: 28,
            owner: owner("vra:net-long"),
            name: Some(name.clone()),
            subnet: subnet.map(|s| s.parse().expect("cidr")),
        };
        let n = b.allocate_network(&cx, &req).await.expect("carve");
        let id: u64 = n.backend_id.parse().expect("id");
        let stored = fake.with(|s| s.subnets[&id].description.clone());
        assert!(stored.len() <= 65_535, "{} bytes", stored.len());
        assert!(
            stored.ends_with("… [ipamgw-owner:vra:net-long]"),
            "the owner marker is kept whole"
        );
        assert_eq!(
            n.description.as_deref(),
            Some(stored.as_str()),
            "answer = stored"
        );
        assert!(n.name.ends_with('…') && name.starts_with(n.name.trim_end_matches('…')));
        let listed = b.networks(&cx).await.expect("networks");
        let carved = listed
            .iter()
            .find(|x| x.backend_id == n.backend_id)
            .expect("listed");
        assert_eq!(carved.owner, Some(owner("vra:net-long")));
        assert_eq!(carved.name, n.name, "listed as answered");
    }
}

// ---------------------------------------------------------------------------------------------
// End to end, through the gateway

/// vRA composes `vRA <resource> NIC <n>, requested by <user>: <description>`: with a UUID
/// resource id (no name), a 60-character requester and a 100-character NIC description it is
/// far beyond 64 characters. The allocation succeeds and phpIPAM holds the shortened text.
#[tokio::test]
async fn vra_allocate_with_a_long_composed_description_succeeds() {
    let app = spawn_lab(BackendKind::Phpipam, false).await;
    let fake = app.phpipam().expect("phpIPAM lab");
    let values = placeholders(&app).await;
    let rid = uuid::Uuid::new_v4().to_string();
    assert_eq!(rid.len(), 36);
    let requester = format!("{}@corp.example.com", "r".repeat(43));
    assert_eq!(chars(&requester), 60);
    let nic_description = "d".repeat(100);
    let mut inputs = filled("allocate-ip", &values, &[("resource", &rid)]);
    let info = inputs["resourceInfo"]
        .as_object_mut()
        .expect("resourceInfo");
    info.remove("name");
    info.insert("owner".into(), json!(requester));
    inputs["ipAllocations"][0]["description"] = json!(nic_description);

    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    let address = out["ipAllocations"][0]["ipAddresses"][0]
        .as_str()
        .expect("address")
        .to_owned();
    let stored = record_at(fake, &address);
    let composed = format!("vRA {rid} NIC 0, requested by {requester}: {nic_description}");
    let written = stored.description.expect("description");
    assert!(chars(&written) <= DESCRIPTION_CHARS, "{written}");
    assert_eq!(written, shortened(&composed));
    assert_eq!(stored.owner, Some(format!("vra:{rid}/nic0")));
    // A retry finds the same address (the owner is intact).
    let again = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(
        again["ipAllocations"][0]["ipAddresses"][0],
        address.as_str()
    );
    app.stop().await;
}

/// Avi puts every fqdn into the description (`Avi VS VIP <id> (<fqdn>, …)`) and the first one
/// into the hostname: five long fqdns make a description of hundreds of characters.
#[tokio::test]
async fn an_avi_record_with_five_long_fqdns_is_created() {
    let app = spawn_lab(BackendKind::Phpipam, false).await;
    let fake = app.phpipam().expect("phpIPAM lab");
    let id = fresh_id();
    let fqdns: Vec<String> = (1..=5)
        .map(|i| format!("service-{i}-with-a-rather-long-name.applications.prod.example.com"))
        .collect();
    let record = json!({"id": id, "allocation_type": "V4_ONLY", "fqdns": fqdns,
        "nw_and_subnet_list": []});
    let (status, created) = create(&app, record.clone()).await;
    assert_eq!(status, 200, "{created}");
    let address = created["v4_ip"].as_str().expect("v4_ip").to_owned();
    let stored = record_at(fake, &address);
    let written = stored.description.expect("description");
    assert_eq!(
        written,
        shortened(&format!("Avi VS VIP {id} ({})", fqdns.join(", ")))
    );
    assert_eq!(stored.hostname.as_deref(), Some(fqdns[0].as_str()));
    // Retried: the same record, still one address.
    assert_eq!(create(&app, record).await, (StatusCode::OK, created));
    assert_eq!(held(&app, &format!("avi:{id}")).await, vec![address]);
    app.stop().await;
}

/// vRA Update Record writes the hostname (and MAC): one that cannot fit phpIPAM's column is a
/// 400 naming `hostname` and the record is left as it was; the longest DNS name is written.
#[tokio::test]
async fn vra_update_record_with_a_hostname_too_long_names_the_field() {
    let app = spawn_lab(BackendKind::Phpipam, false).await;
    let fake = app.phpipam().expect("phpIPAM lab");
    let values = placeholders(&app).await;
    let out = vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let address = out["ipAllocations"][0]["ipAddresses"][0]
        .as_str()
        .expect("address")
        .to_owned();
    let before = record_at(fake, &address);
    let mut inputs = filled("update-record", &values, &[("address", &address)]);
    inputs["hostName"] = json!(format!("{}.example.com", "h".repeat(244)));
    let (status, body) = vra(&app, "update-record", &inputs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (message, field) = error_of(&body);
    assert_eq!(field.as_deref(), Some("hostname"), "{body}");
    assert!(message.contains("255"), "{message}");
    let after = record_at(fake, &address);
    assert_eq!(
        (after.hostname, after.mac),
        (before.hostname, before.mac),
        "unchanged"
    );

    // 253 characters, the longest DNS name.
    let longest = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(longest.len(), 253);
    inputs["hostName"] = json!(longest);
    vra_ok(&app, "update-record", &inputs).await;
    assert_eq!(record_at(fake, &address).hostname, Some(longest));
    app.stop().await;
}

/// Native API: `POST /api/v1/allocations` and `PATCH /api/v1/allocations/{id}` with long
/// descriptions succeed, and answer with the shortened text phpIPAM holds; a hostname that
/// cannot fit is a 400 naming `hostname`.
#[tokio::test]
async fn native_allocate_and_patch_report_what_was_written() {
    let fake = FakePhpipam::start().await;
    let app = spawn_with(AppOptions {
        config: config(&fake.url, ""),
        tls: false,
        metrics: false,
    })
    .await;
    let net = app.network_id("Gateway test /24").await;
    let long = format!("Datenbank-Server für {}", "Überwachung ".repeat(10));
    let resp = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": "vm-native", "networks": [net], "description": long}),
        )
        .send()
        .await
        .expect("allocate");
    assert_eq!(resp.status(), 201);
    let a: Value = resp.json().await.expect("json");
    let address = a["address"].as_str().expect("address").to_owned();
    let stored = record_at(&fake, &address);
    assert_eq!(stored.description, Some(shortened(&long)));
    assert_eq!(
        a["description"],
        json!(stored.description),
        "answer = stored"
    );

    let id = a["id"].as_str().expect("id").to_owned();
    let cjk = "扩展描述".repeat(30);
    let resp = app
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"description": cjk, "hostname": "db-01.lab.example.com"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.expect("json");
    let stored = record_at(&fake, &address);
    assert_eq!(stored.description, Some(shortened(&cjk)));
    assert_eq!(
        patched["description"],
        json!(stored.description),
        "answer = stored"
    );
    assert_eq!(patched["hostname"], "db-01.lab.example.com");

    let resp = app
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"hostname": "h".repeat(256)}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_of(&body).1.as_deref(), Some("hostname"), "{body}");
    assert_eq!(
        record_at(&fake, &address).hostname.as_deref(),
        Some("db-01.lab.example.com"),
        "unchanged"
    );
    app.stop().await;
}
