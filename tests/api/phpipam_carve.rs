//! Carving a *specific* subnet (`POST /api/v1/networks` with `subnet`) end to end on phpIPAM: the
//! real gateway on the fake phpIPAM of the standard lab (block `lab-on-demand`, 10.100.0.0/16),
//! which answers `POST subnets/` as phpIPAM 1.8.2 does (fixtures 15–22; nesting inferred, see
//! `support::phpipam_fake::create_subnet`). Every step is checked in what the fake holds, not
//! only in the gateway's answers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::support::matrix::{BackendKind, LAB_BLOCK, LabApp, spawn_lab};
use crate::support::phpipam_fake::{FakeAddress, FakePhpipam, FakeSubnet};

fn fake(app: &LabApp) -> &FakePhpipam {
    app.phpipam().expect("a phpIPAM lab")
}

/// The phpIPAM id of the lab block.
fn block_subnet(fake: &FakePhpipam) -> u64 {
    fake.with(|s| {
        s.subnets
            .values()
            .find(|sn| sn.description == LAB_BLOCK.name)
            .expect("the lab block")
            .id
    })
}

/// Every subnet (id, CIDR, master) and address (id, subnet, ip) the fake holds.
type Snapshot = (Vec<(u64, IpNet, u64)>, Vec<(u64, u64, IpAddr)>);

/// What the fake holds (to prove a call changed nothing).
fn snapshot(fake: &FakePhpipam) -> Snapshot {
    fake.with(|s| {
        (
            s.subnets
                .values()
                .map(|sn| (sn.id, sn.cidr, sn.master))
                .collect(),
            s.addresses
                .values()
                .map(|a| (a.id, a.subnet, a.ip))
                .collect(),
        )
    })
}

/// The subnet the fake holds with this CIDR, with its address records.
fn held(fake: &FakePhpipam, cidr: &str) -> Option<(FakeSubnet, Vec<FakeAddress>)> {
    let cidr: IpNet = cidr.parse().expect("cidr");
    let sn = fake.with(|s| s.subnets.values().find(|sn| sn.cidr == cidr).cloned())?;
    let addresses = fake.addresses_in(sn.id);
    Some((sn, addresses))
}

async fn block_id(app: &LabApp) -> String {
    let blocks = app.get_json("/api/v1/blocks").await;
    blocks["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .find(|b| b["name"] == LAB_BLOCK.name)
        .unwrap_or_else(|| panic!("no block {} in {blocks}", LAB_BLOCK.name))["id"]
        .as_str()
        .expect("block id")
        .to_owned()
}

async fn carve(app: &LabApp, body: &Value) -> (u16, Value) {
    let resp = app
        .post("/api/v1/networks", body)
        .send()
        .await
        .expect("carve");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

async fn listed(app: &LabApp) -> BTreeMap<String, Value> {
    let body = app.get_json("/api/v1/networks").await;
    body["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .map(|n| (n["id"].as_str().expect("id").to_owned(), n.clone()))
        .collect()
}

#[tokio::test]
async fn a_specific_subnet_is_carved_listed_idempotent_and_deleted_on_phpipam() {
    let app = spawn_lab(BackendKind::Phpipam, false).await;
    let fake = fake(&app);
    let block = block_id(&app).await;
    let block_sn = block_subnet(fake);
    let request = json!({"block": block, "prefix_len": 28, "owner": "project-s",
        "name": "specific net", "subnet": "10.100.5.16/28"});

    let (status, carved) = carve(&app, &request).await;
    assert_eq!(status, 201, "{carved}");
    assert_eq!(carved["cidr"], "10.100.5.16/28", "{carved}");
    assert_eq!(carved["gateway"], "10.100.5.17", "{carved}");
    assert_eq!(
        carved["range_start"], "10.100.5.18",
        "the range starts after the gateway: {carved}"
    );
    assert_eq!(carved["range_end"], "10.100.5.30", "{carved}");
    assert_eq!(carved["owner"], "project-s", "{carved}");
    // `block` is the block's API id, as `/api/v1/blocks` lists it; `backend_id` is phpIPAM's.
    assert_eq!(carved["block"], block.as_str(), "{carved}");
    assert_eq!(carved["name"], "specific net", "{carved}");
    let id = carved["id"].as_str().expect("id").to_owned();

    // phpIPAM holds it: nested in the block, in the block's section, the owner in the
    // description, and exactly one address, the gateway.
    let (sn, addresses) = held(fake, "10.100.5.16/28").expect("phpIPAM holds the subnet");
    let block_section = fake.with(|s| s.subnets[&block_sn].section);
    assert_eq!(sn.master, block_sn, "nested under the block");
    assert_eq!(sn.section, block_section);
    assert!(
        sn.description.contains("[ipamgw-owner:project-s]"),
        "{}",
        sn.description
    );
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    assert_eq!(addresses[0].ip.to_string(), "10.100.5.17");
    assert!(addresses[0].is_gateway, "{addresses:?}");

    // Listed as carved, with its gateway and the range after it.
    let nets = listed(&app).await;
    let net = nets.get(&id).unwrap_or_else(|| panic!("{id} not listed"));
    for key in [
        "cidr",
        "gateway",
        "range_start",
        "range_end",
        "owner",
        "block",
        "name",
    ] {
        assert_eq!(net[key], carved[key], "{key}: {net} vs {carved}");
    }

    // The same owner again: the same network, nothing new in phpIPAM.
    let before = snapshot(fake);
    let (status, again) = carve(&app, &request).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], id.as_str(), "{again}");
    assert_eq!(again["cidr"], "10.100.5.16/28");
    assert_eq!(snapshot(fake), before, "nothing created in phpIPAM");

    // Delete: 204, and phpIPAM holds neither the subnet nor its gateway address; again: 204.
    let resp = app
        .delete(&format!("/api/v1/networks/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    assert!(held(fake, "10.100.5.16/28").is_none(), "subnet deleted");
    assert!(
        fake.addresses_in(sn.id).is_empty(),
        "its gateway address went with it"
    );
    assert!(!listed(&app).await.contains_key(&id), "no longer listed");
    let resp = app
        .delete(&format!("/api/v1/networks/{id}"))
        .send()
        .await
        .expect("delete again");
    assert_eq!(resp.status(), 204);
    app.stop().await;
}

#[tokio::test]
async fn a_specific_subnet_overlapping_a_child_of_the_block_is_a_conflict_naming_it() {
    let app = spawn_lab(BackendKind::Phpipam, false).await;
    let fake = fake(&app);
    let block = block_id(&app).await;

    // One child carved by phpIPAM's first_subnet, one given.
    let (status, auto) = carve(
        &app,
        &json!({"block": block, "prefix_len": 28, "owner": "project-auto"}),
    )
    .await;
    assert_eq!(status, 201, "{auto}");
    let auto_cidr = auto["cidr"].as_str().expect("cidr").to_owned();
    let (status, given) = carve(
        &app,
        &json!({"block": block, "prefix_len": 28, "owner": "project-a",
            "subnet": "10.100.7.0/28"}),
    )
    .await;
    assert_eq!(status, 201, "{given}");
    let before = snapshot(fake);

    for (owner, prefix_len, subnet, overlapped) in [
        ("project-b", 28, "10.100.7.0/28", "10.100.7.0/28"),
        ("project-c", 24, "10.100.7.0/24", "10.100.7.0/28"),
        ("project-d", 29, "10.100.7.8/29", "10.100.7.0/28"),
        ("project-e", 28, auto_cidr.as_str(), auto_cidr.as_str()),
    ] {
        let (status, body) = carve(
            &app,
            &json!({"block": block, "prefix_len": prefix_len, "owner": owner, "subnet": subnet}),
        )
        .await;
        assert_eq!(status, 409, "{subnet}: {body}");
        assert_eq!(body["error"]["code"], "conflict", "{subnet}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("overlaps") && message.contains(overlapped),
            "{subnet}: the message names the overlap ({overlapped}): {message}"
        );
        assert_eq!(
            snapshot(fake),
            before,
            "{subnet}: nothing created in phpIPAM"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_specific_subnet_outside_the_block_or_of_another_prefix_is_invalid_naming_subnet() {
    let app = spawn_lab(BackendKind::Phpipam, false).await;
    let fake = fake(&app);
    let block = block_id(&app).await;
    let before = snapshot(fake);

    for (prefix_len, subnet) in [
        (28, "10.200.0.0/28"), // outside the block
        (28, "10.100.6.0/27"), // another prefix than prefix_len
        (28, "2001:db0::/28"), // another family
    ] {
        let (status, body) = carve(
            &app,
            &json!({"block": block, "prefix_len": prefix_len, "owner": "project-x",
                "subnet": subnet}),
        )
        .await;
        assert_eq!(status, 400, "{subnet}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{subnet}: {body}");
        assert_eq!(body["error"]["field"], "subnet", "{subnet}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(LAB_BLOCK.cidr)),
            "{subnet}: the message names the block: {body}"
        );
    }
    let (status, body) = carve(
        &app,
        &json!({"block": block, "prefix_len": 28, "owner": "project-x", "subnet": "not-a-cidr"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "subnet", "{body}");

    assert_eq!(snapshot(fake), before, "nothing created in phpIPAM");
    app.stop().await;
}
