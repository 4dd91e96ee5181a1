//! What the embedded store's tables hold: its own on-disk record types, with the file's format
//! version, and the conversions to and from the domain.
//!
//! The store used to persist the domain types (`NetworkInfo`, `RecordDetails`) as they were, so
//! any change to them changed the file format. These types are the file format instead: a
//! domain change only changes [`StoredNetworkV1::new`] / [`StoredNetworkV1::into_domain`], and a
//! format change is a new `StoredNetworkV2` with a migration, never an edit of a `V1` type.
//!
//! **Where the version lives: once per file**, in the `meta` table ([`super::store::META`],
//! key [`FORMAT_KEY`]), not in each record. One stamp is read before any table is opened, so a
//! file from a newer gateway is refused at open with its path and version, before anything is
//! read or written (a per-record tag would only be noticed when that record is read, mid-request,
//! possibly after other records were changed). It also costs no bytes in the million-record
//! address table, and a migration is one write transaction: every record converted and the stamp
//! written, or nothing.
//!
//! | format | written by | records | on open |
//! |---|---|---|---|
//! | 0 | gateways before the stamp (no `meta` table) | the domain types as serde wrote them | migrated to 1 ([`migrate_from_v0`]) |
//! | 1 | this gateway | [`StoredNetworkV1`], [`StoredAllocationV1`] (JSON) | read |
//! | 2.. | a newer gateway | unknown | refused, naming the file and its format |
//!
//! Format 1 keeps format 0's JSON field names (so a format-0 record decodes as a format-1 one
//! and the address table needs no rewrite) and drops what was never the store's to keep: the
//! network's `free` count, computed at every listing. The keys are unchanged: networks by
//! backend id (`space/cidr`), addresses by (network backend id, address as u128), the owner index
//! by owner text.

use std::net::IpAddr;

use ipnet::IpNet;
use redb::{ReadableTable, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::NETWORKS;
use crate::domain::{Mac, NetworkInfo, Owner, RecordDetails, Tag};

/// The format this gateway writes, and the newest it reads.
pub const FORMAT_VERSION: u64 = 1;

/// The key of the format stamp in the `meta` table. Table, key and value type (`u64`) never
/// change: they are how any later gateway tells which format a file has.
pub const FORMAT_KEY: &str = "format";

/// A row of the `networks` table, format 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNetworkV1 {
    pub info: StoredNetworkInfoV1,
    /// Seeded from config (replaced at every start) rather than carved from a block.
    pub seeded: bool,
}

/// The network itself, format 1: the fields of format 0's `info` less `free`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNetworkInfoV1 {
    pub backend_id: String,
    pub name: String,
    pub description: Option<String>,
    pub cidr: IpNet,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub gateway: Option<IpAddr>,
    pub dns_servers: Vec<IpAddr>,
    pub dns_domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub address_space: String,
    pub vlan: Option<u16>,
    pub tags: Vec<StoredTagV1>,
    /// For carved networks: the block's backend id.
    pub block: Option<String>,
    /// For carved networks: who asked for it (owner text).
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTagV1 {
    pub key: String,
    pub value: String,
}

/// A row of the `addresses` table, format 1 (the same JSON as format 0's, which flattened the
/// record details next to the owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAllocationV1 {
    pub owner: Option<String>,
    pub hostname: Option<String>,
    pub description: Option<String>,
    pub mac: Option<String>,
    /// The address's further DNS names ([`RecordDetails::aliases`]). Added within format 1:
    /// absent when empty, so a record without them has the bytes format 1 always had, and a
    /// record written before the field existed reads as having none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl StoredNetworkV1 {
    pub fn new(n: &NetworkInfo, seeded: bool) -> Self {
        StoredNetworkV1 {
            info: StoredNetworkInfoV1 {
                backend_id: n.backend_id.clone(),
                name: n.name.clone(),
                description: n.description.clone(),
                cidr: n.cidr,
                range_start: n.range_start,
                range_end: n.range_end,
                gateway: n.gateway,
                dns_servers: n.dns_servers.clone(),
                dns_domain: n.dns_domain.clone(),
                dns_search_domains: n.dns_search_domains.clone(),
                address_space: n.address_space.clone(),
                vlan: n.vlan,
                tags: n
                    .tags
                    .iter()
                    .map(|t| StoredTagV1 {
                        key: t.key.clone(),
                        value: t.value.clone(),
                    })
                    .collect(),
                block: n.block.clone(),
                owner: n.owner.as_ref().map(|o| o.as_str().to_owned()),
            },
            seeded,
        }
    }

    /// The domain network (`free` unknown). Fails, naming the field, on an owner the domain no
    /// longer accepts.
    pub fn into_domain(self) -> Result<NetworkInfo, String> {
        let i = self.info;
        let owner = match i.owner {
            Some(o) => Some(
                Owner::parse(&o)
                    .map_err(|e| format!("network {}: owner {o:?} {e}", i.backend_id))?,
            ),
            None => None,
        };
        Ok(NetworkInfo {
            backend_id: i.backend_id,
            name: i.name,
            description: i.description,
            cidr: i.cidr,
            range_start: i.range_start,
            range_end: i.range_end,
            gateway: i.gateway,
            dns_servers: i.dns_servers,
            dns_domain: i.dns_domain,
            dns_search_domains: i.dns_search_domains,
            address_space: i.address_space,
            vlan: i.vlan,
            tags: i
                .tags
                .into_iter()
                .map(|t| Tag {
                    key: t.key,
                    value: t.value,
                })
                .collect(),
            free: None,
            block: i.block,
            owner,
        })
    }
}

impl StoredAllocationV1 {
    pub fn new(owner: Option<&Owner>, details: &RecordDetails) -> Self {
        StoredAllocationV1 {
            owner: owner.map(|o| o.as_str().to_owned()),
            hostname: details.hostname.clone(),
            description: details.description.clone(),
            mac: details.mac.as_ref().map(|m| m.as_str().to_owned()),
            aliases: details.aliases.clone(),
        }
    }

    /// The domain owner and details. Fails, naming the field, on a value the domain no longer
    /// accepts.
    pub fn into_domain(self) -> Result<(Option<Owner>, RecordDetails), String> {
        let owner = match self.owner {
            Some(o) => Some(Owner::parse(&o).map_err(|e| format!("owner {o:?} {e}"))?),
            None => None,
        };
        let mac = match self.mac {
            Some(m) => Some(Mac::parse(&m).map_err(|e| format!("mac: {e}"))?),
            None => None,
        };
        Ok((
            owner,
            RecordDetails {
                aliases: self.aliases,
                hostname: self.hostname,
                description: self.description,
                mac,
            },
        ))
    }
}

pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(record).map_err(|e| format!("cannot encode a record: {e}"))
}

pub fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("unreadable record in table {table}: {e}"))
}

/// Format 0 → 1, inside the caller's write transaction (which also writes the stamp): every
/// network record re-encoded without `free`. Address records are already format 1 (same JSON)
/// and the owner index holds no serialized values, so neither is touched. Returns how many
/// networks were rewritten.
pub fn migrate_from_v0(txn: &WriteTransaction) -> Result<usize, String> {
    let mut table = txn.open_table(NETWORKS).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = entry.map_err(|e| e.to_string())?;
        // serde skips format 0's `free`: its record decodes as format 1.
        let record: StoredNetworkV1 = decode("networks", v.value())?;
        rows.push((k.value().to_owned(), encode(&record)?));
    }
    for (k, bytes) in &rows {
        table
            .insert(k.as_str(), bytes.as_slice())
            .map_err(|e| e.to_string())?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use redb::{Database, ReadableDatabase, TableHandle};

    use super::super::store::{META, pid_file, stamped_format};
    use super::super::tests::{SMALL, V6, config, open, req};
    use super::super::{CallContext, Claim};
    use super::*;
    use crate::backends::Backend;
    use crate::domain::{CarveRequest, IpamError, Lookup, NetworkInfo};

    fn network() -> NetworkInfo {
        let mut n = NetworkInfo::bare(
            "default/10.64.0.0/24",
            "pool-10.64.0.0/24",
            "10.64.0.0/24".parse().expect("cidr"),
            (
                "10.64.0.2".parse().expect("ip"),
                "10.64.0.254".parse().expect("ip"),
            ),
        );
        n.description = Some("carved".into());
        n.gateway = Some("10.64.0.1".parse().expect("ip"));
        n.dns_servers = vec!["10.0.0.53".parse().expect("ip")];
        n.dns_domain = Some("lab.example.com".into());
        n.dns_search_domains = vec!["example.com".into()];
        n.vlan = Some(42);
        n.tags = vec![Tag {
            key: "tier".into(),
            value: "web".into(),
        }];
        n.free = Some(7);
        n.block = Some("block:pool".into());
        n.owner = Some(Owner::parse("project-a").expect("owner"));
        n
    }

    /// The bytes of format 1, pinned: a change to the domain types that leaks into the file
    /// format fails here, not in a data file in the field.
    #[test]
    fn format_1_records_are_these_bytes() {
        let bytes = encode(&StoredNetworkV1::new(&network(), false)).expect("encode");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            r#"{"info":{"backend_id":"default/10.64.0.0/24","name":"pool-10.64.0.0/24","description":"carved","cidr":"10.64.0.0/24","range_start":"10.64.0.2","range_end":"10.64.0.254","gateway":"10.64.0.1","dns_servers":["10.0.0.53"],"dns_domain":"lab.example.com","dns_search_domains":["example.com"],"address_space":"default","vlan":42,"tags":[{"key":"tier","value":"web"}],"block":"block:pool","owner":"project-a"},"seeded":false}"#
        );
        let details = RecordDetails {
            aliases: Vec::new(),
            hostname: Some("vm-1".into()),
            description: None,
            mac: Some(Mac::parse("00:50:56:AA:BB:01").expect("mac")),
        };
        let owner = Owner::parse("vm-1").expect("owner");
        let bytes = encode(&StoredAllocationV1::new(Some(&owner), &details)).expect("encode");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            r#"{"owner":"vm-1","hostname":"vm-1","description":null,"mac":"00:50:56:aa:bb:01"}"#
        );
    }

    #[test]
    fn records_convert_to_the_domain_and_back() {
        let n = network();
        let back = StoredNetworkV1::new(&n, true)
            .into_domain()
            .expect("domain");
        assert_eq!(back.free, None, "the count is not stored");
        assert_eq!(back, NetworkInfo { free: None, ..n });

        let details = RecordDetails {
            aliases: Vec::new(),
            hostname: Some("h".into()),
            description: Some("d".into()),
            mac: Some(Mac::parse("00:50:56:00:00:01").expect("mac")),
        };
        let owner = Owner::parse("o").expect("owner");
        let (o, d) = StoredAllocationV1::new(Some(&owner), &details)
            .into_domain()
            .expect("domain");
        assert_eq!((o, d), (Some(owner), details));
    }

    /// An address's further names are kept whole and come back; a record without them has the
    /// bytes format 1 always had, and those bytes read as having none.
    #[test]
    fn aliases_are_kept_and_absent_when_empty() {
        let owner = Owner::parse("avi:vs-1").expect("owner");
        let names = vec![
            "b.lab.example.com".to_owned(),
            "c.lab.example.com".to_owned(),
        ];
        let details = RecordDetails {
            aliases: names.clone(),
            hostname: Some("a.lab.example.com".into()),
            ..RecordDetails::default()
        };
        let bytes = encode(&StoredAllocationV1::new(Some(&owner), &details)).expect("encode");
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            r#"{"owner":"avi:vs-1","hostname":"a.lab.example.com","description":null,"mac":null,"aliases":["b.lab.example.com","c.lab.example.com"]}"#
        );
        let rec: StoredAllocationV1 = decode("addresses", &bytes).expect("decode");
        assert_eq!(rec.into_domain().expect("domain").1.aliases, names);

        let without = r#"{"owner":"vm-1","hostname":"vm-1","description":null,"mac":null}"#;
        let rec: StoredAllocationV1 = decode("addresses", without.as_bytes()).expect("decode");
        assert!(
            rec.clone()
                .into_domain()
                .expect("domain")
                .1
                .aliases
                .is_empty()
        );
        assert_eq!(encode(&rec).expect("encode"), without.as_bytes());
    }

    /// Format 0 wrote the domain types as they were; this is one of its network rows (as in
    /// fixtures/embedded/v0-store.redb), `free` and all.
    #[test]
    fn a_format_0_network_row_decodes_as_format_1() {
        let v0 = r#"{"info":{"backend_id":"default/10.0.0.0/29","name":"small","description":null,"cidr":"10.0.0.0/29","range_start":"10.0.0.2","range_end":"10.0.0.6","gateway":"10.0.0.1","dns_servers":[],"dns_domain":null,"dns_search_domains":[],"address_space":"default","vlan":null,"tags":[],"free":null,"block":null,"owner":null},"seeded":true}"#;
        let rec: StoredNetworkV1 = decode("networks", v0.as_bytes()).expect("decode");
        assert!(rec.seeded);
        let n = rec.into_domain().expect("domain");
        assert_eq!(n.cidr.to_string(), "10.0.0.0/29");
        assert_eq!(
            n.gateway.map(|g| g.to_string()).as_deref(),
            Some("10.0.0.1")
        );
    }

    #[test]
    fn a_record_the_domain_refuses_is_an_error_naming_the_field() {
        let rec: StoredAllocationV1 = decode(
            "addresses",
            br#"{"owner":"vm-1","hostname":null,"description":null,"mac":"not-a-mac"}"#,
        )
        .expect("decode");
        let err = rec.into_domain().expect_err("bad mac");
        assert!(
            err.starts_with("mac: 'not-a-mac' is not a MAC address"),
            "{err}"
        );

        let mut n = StoredNetworkV1::new(&network(), false);
        n.info.owner = Some(" ".into());
        let err = n.into_domain().expect_err("empty owner");
        assert!(
            err.contains("network default/10.64.0.0/24: owner")
                && err.contains("must not be empty"),
            "{err}"
        );

        let err = decode::<StoredAllocationV1>("addresses", b"{not json").expect_err("garbage");
        assert!(
            err.starts_with("unreadable record in table addresses: "),
            "{err}"
        );
    }

    /// fixtures/embedded/v0-store.redb, copied byte for byte to `dir/t.redb` (the file the
    /// tests' `open` uses): opening it writes there, never into the source tree.
    fn copy_v0_fixture(dir: &Path) -> PathBuf {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/embedded/v0-store.redb");
        let path = dir.join("t.redb");
        std::fs::copy(&fixture, &path).expect("copy the fixture");
        path
    }

    fn raw_network_row(path: &Path, id: &str) -> String {
        let db = Database::open(path).expect("open raw");
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(NETWORKS).expect("networks");
        let row = table.get(id).expect("get").expect("row");
        String::from_utf8(row.value().to_vec()).expect("utf-8")
    }

    const CARVED: &str = "default/10.64.0.0/24";

    /// The file the previous format wrote (fixtures/embedded/README.md says what is in it) is
    /// migrated on open, and everything in it is there to list, find, allocate in and release,
    /// before and after reopening.
    #[tokio::test]
    async fn a_format_0_data_file_opens_migrated_and_keeps_its_networks_and_allocations() {
        let dir = tempfile::tempdir().expect("dir");
        let path = copy_v0_fixture(dir.path());
        {
            // The fixture really is format 0: no stamp, and the domain's `free` in its rows.
            let db = Database::open(&path).expect("open raw");
            assert_eq!(stamped_format(&db), Ok(None));
            drop(db);
            assert!(raw_network_row(&path, CARVED).contains(r#""free":null"#));
        }
        let cx = CallContext::default();
        let owner = |o: &str| Lookup::Owner(Owner::parse(o).expect("owner"));
        let b = open(dir.path());
        assert_eq!(stamped_format(&b.db), Ok(Some(FORMAT_VERSION)));

        let nets = b.networks(&cx).await.expect("networks");
        let mut ids: Vec<&str> = nets.iter().map(|n| n.backend_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, [SMALL, CARVED, V6]);
        let free = |id: &str| {
            nets.iter()
                .find(|n| n.backend_id == id)
                .and_then(|n| n.free)
        };
        assert_eq!(free(SMALL), Some(3), ".2-.6 less .2 and .5");
        assert_eq!(free(CARVED), Some(252), ".2-.254 less .2");
        let carved = nets
            .iter()
            .find(|n| n.backend_id == CARVED)
            .expect("carved");
        assert_eq!(carved.owner.as_ref().map(Owner::as_str), Some("project-a"));
        assert_eq!(carved.block.as_deref(), Some("block:pool"));
        assert_eq!(
            carved.description.as_deref(),
            Some("carved from block pool for project-a")
        );
        assert_eq!(
            carved.gateway.map(|g| g.to_string()).as_deref(),
            Some("10.64.0.1")
        );

        let mut vm1 = b.find(&cx, &owner("vm-1")).await.expect("find");
        vm1.sort_by_key(|a| a.address);
        let addrs: Vec<String> = vm1.iter().map(|a| a.address.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.2", "2001:db8::2"]);
        assert_eq!(
            vm1[0].details,
            RecordDetails {
                aliases: Vec::new(),
                hostname: Some("vm-1.lab.example.com".into()),
                description: Some("web server".into()),
                mac: Some(Mac::parse("00:50:56:aa:bb:01").expect("mac")),
            }
        );
        let vm3 = b
            .find(
                &cx,
                &Lookup::Address {
                    address: "10.64.0.2".parse().expect("ip"),
                    network: None,
                },
            )
            .await
            .expect("find");
        assert_eq!(vm3.len(), 1);
        assert_eq!(vm3[0].owner.as_ref().map(Owner::as_str), Some("vm-3"));

        // Allocating reuses the gap the v0 release left; the v0 owner index answers claims.
        let new = b
            .allocate(&cx, &req(SMALL, "vm-new", None))
            .await
            .expect("alloc");
        assert_eq!(new.address.to_string(), "10.0.0.3");
        let held = b
            .claim(&cx, &req(SMALL, "vm-2", None))
            .await
            .expect("claim");
        assert!(
            matches!(&held, Claim::Held(a) if a.address.to_string() == "10.0.0.5"),
            "{held:?}"
        );
        let taken = b
            .allocate(&cx, &req(SMALL, "vm-x", Some("10.0.0.5")))
            .await
            .expect_err("held in the v0 file");
        assert!(matches!(taken, IpamError::Conflict(_)), "{taken:?}");
        // Releasing a v0 allocation frees it and its owner index entry.
        b.release(&cx, SMALL, "10.0.0.2".parse().expect("ip"))
            .await
            .expect("release");
        let vm1 = b.find(&cx, &owner("vm-1")).await.expect("find");
        assert_eq!(vm1.len(), 1, "{vm1:?}");
        assert_eq!(vm1[0].address.to_string(), "2001:db8::2");
        // The carved v0 network: still carved (not seeded), still holding vm-3, still taken.
        assert!(matches!(
            b.release_network(&cx, CARVED).await,
            Err(IpamError::Conflict(ref m)) if m.contains("still holds 1")
        ));
        let next = b
            .allocate_network(
                &cx,
                &CarveRequest {
                    block: "block:pool".into(),
                    prefix_len: 24,
                    owner: Owner::parse("project-b").expect("owner"),
                    name: None,
                    subnet: None,
                },
            )
            .await
            .expect("carve");
        assert_eq!(next.cidr.to_string(), "10.64.1.0/24");
        drop(b);

        // The migration rewrote the network rows in format 1.
        let row = raw_network_row(&path, CARVED);
        assert!(!row.contains("free"), "{row}");
        let _: StoredNetworkV1 = decode("networks", row.as_bytes()).expect("format 1");

        // The migrated file reopens as it was left.
        let b = open(dir.path());
        assert_eq!(stamped_format(&b.db), Ok(Some(FORMAT_VERSION)));
        let found = b.find(&cx, &owner("vm-new")).await.expect("find");
        assert_eq!(found, vec![new]);
        assert_eq!(b.find(&cx, &owner("vm-1")).await.expect("find").len(), 1);
        let nets = b.networks(&cx).await.expect("networks");
        assert_eq!(
            nets.len(),
            4,
            "three from the v0 file and the one carved since"
        );
        let small = nets.iter().find(|n| n.backend_id == SMALL).expect("small");
        assert_eq!(small.free, Some(3), ".3 taken, .2 released");
    }

    /// A format-0 file whose rows cannot be migrated is refused naming the file, and stays
    /// format 0 (the migration and the stamp are one transaction).
    #[test]
    fn a_format_0_file_that_cannot_be_migrated_is_refused_and_left_unstamped() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.redb");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(NETWORKS)
                .expect("networks")
                .insert(CARVED, b"{\"info\": 42}".as_slice())
                .expect("row");
            txn.commit().expect("commit");
        }
        let (networks, blocks) = config();
        let err = super::super::EmbeddedBackend::open("local", &path, &networks, &blocks)
            .expect_err("unreadable row");
        let IpamError::Internal(msg) = &err else {
            panic!("{err:?}");
        };
        assert!(
            msg.starts_with(&format!(
                "backend local: data file {}: unreadable record in table networks: ",
                path.display()
            )),
            "{msg}"
        );
        let db = Database::open(&path).expect("released");
        assert_eq!(stamped_format(&db), Ok(None));
        let txn = db.begin_read().expect("read");
        let tables: Vec<String> = txn
            .list_tables()
            .expect("tables")
            .map(|t| t.name().to_owned())
            .collect();
        assert!(!tables.iter().any(|t| t == META.name()), "{tables:?}");
        assert!(
            pid_file(&path).exists(),
            "the file was this process's while it tried"
        );
    }
}
