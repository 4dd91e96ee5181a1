//! The embedded store's fixture generator (`fixtures/embedded/README.md`), and the test that
//! runs it.

use std::path::Path;

use redb::Database;

use super::store::pid_file;
use super::tests::{SMALL, V6, config, req};
use super::{EmbeddedBackend, records};
use crate::backends::{Backend, CallContext};
use crate::domain::{CarveRequest, Lookup, Mac, Owner, RecordDetails};

/// Writes `<dir>/v<format>-store.redb` (the scenario is in `fixtures/embedded/README.md`) and
/// returns its path. Run at commit 45fac00, the last whose store had no format version, it
/// wrote the committed `v0-store.redb`; run now it writes a file of
/// [`records::FORMAT_VERSION`], the fixture the next format's migration test needs.
async fn write_store_fixture(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let file = dir.join(format!("v{}-store.redb", records::FORMAT_VERSION));
    let _ = std::fs::remove_file(&file);
    let (networks, blocks) = config();
    let b = EmbeddedBackend::open("local", &file, &networks, &blocks).expect("open");
    let cx = CallContext::default();
    let mut vm1 = req(SMALL, "vm-1", None);
    vm1.details = RecordDetails {
        aliases: Vec::new(),
        hostname: Some("vm-1.lab.example.com".into()),
        description: Some("web server".into()),
        mac: Some(Mac::parse("00:50:56:aa:bb:01").expect("mac")),
    };
    assert_eq!(
        b.allocate(&cx, &vm1)
            .await
            .expect("vm-1")
            .address
            .to_string(),
        "10.0.0.2"
    );
    let gap = b
        .allocate(&cx, &req(SMALL, "vm-gap", None))
        .await
        .expect("gap");
    assert_eq!(gap.address.to_string(), "10.0.0.3");
    b.allocate(&cx, &req(SMALL, "vm-2", Some("10.0.0.5")))
        .await
        .expect("vm-2");
    b.release(&cx, SMALL, gap.address).await.expect("release");
    let v6 = b.allocate(&cx, &req(V6, "vm-1", None)).await.expect("v6");
    assert_eq!(v6.address.to_string(), "2001:db8::2");
    let carved = b
        .allocate_network(
            &cx,
            &CarveRequest {
                block: "block:pool".into(),
                prefix_len: 24,
                owner: Owner::parse("project-a").expect("owner"),
                name: None,
                subnet: None,
            },
        )
        .await
        .expect("carve");
    assert_eq!(carved.cidr.to_string(), "10.64.0.0/24");
    let vm3 = b
        .allocate(&cx, &req(&carved.backend_id, "vm-3", None))
        .await
        .expect("vm-3");
    assert_eq!(vm3.address.to_string(), "10.64.0.2");
    drop(b);
    // Compacted so the committed file is small; the pid file is this run's, not the fixture's.
    let mut db = Database::open(&file).expect("reopen");
    db.compact().expect("compact");
    drop(db);
    let _ = std::fs::remove_file(pid_file(&file));
    file
}

/// The generator above writes a file that reopens in the current format with its scenario's
/// allocations. Into a temporary directory; to write the next format's fixture into the
/// source tree: `IPAMGW_FIXTURE_DIR=fixtures/embedded cargo test --lib fixture_generator`.
#[tokio::test]
async fn the_fixture_generator_writes_a_file_of_the_current_format() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = std::env::var_os("IPAMGW_FIXTURE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_owned());
    let file = write_store_fixture(&dir).await;
    let (networks, blocks) = config();
    let b = EmbeddedBackend::open("local", &file, &networks, &blocks).expect("reopen");
    let cx = CallContext::default();
    let vm1 = b
        .find(&cx, &Lookup::Owner(Owner::parse("vm-1").expect("owner")))
        .await
        .expect("find");
    let mut held: Vec<String> = vm1.iter().map(|a| a.address.to_string()).collect();
    held.sort();
    assert_eq!(held, ["10.0.0.2", "2001:db8::2"]);
}
