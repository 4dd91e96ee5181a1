//! The redb file: its tables and key encoding, opening it (one process at a time, named in a pid
//! file next to it), and its format stamp (checked, migrated and written at open).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use redb::{Database, MultimapTableDefinition, ReadableDatabase, TableDefinition, TableHandle};

use super::records::{self, FORMAT_KEY, FORMAT_VERSION};
use crate::domain::{Family, IpamError, IpamResult};

/// redb's page cache: bounded (its default is 1 GiB, which a long-running gateway would fill
/// with pages of a file it reads a few at a time).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// backend id (`space/cidr`) → JSON [`records::StoredNetworkV1`].
pub const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
/// (network backend id, address as u128) → JSON [`records::StoredAllocationV1`].
pub const ADDRESSES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("addresses");
/// owner → (network backend id, address): the index behind idempotent retries.
pub const OWNERS: MultimapTableDefinition<&str, (&str, u128)> =
    MultimapTableDefinition::new("owners");
/// [`FORMAT_KEY`] → the file's format version ([`records`]). Absent in format-0 files.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        // Callers only pass values that came from an IPv4 address of the same network.
        Family::V4 => IpAddr::from(u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes()),
        Family::V6 => IpAddr::from(v.to_be_bytes()),
    }
}

pub fn net_bounds(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// The file next to the data file that names the process holding it (`local.redb.pid` for
/// `local.redb`). Written after every successful open and never removed: a stale one is
/// overwritten by the next process that gets the file lock, and is only read when the lock is
/// held by someone, so it names the holder unless that one died without a successor.
pub fn pid_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pid");
    PathBuf::from(name)
}

/// Records this process as the holder of the data file ([`pid_file`]). Only a hint for the
/// message a second gateway gives (redb's file lock is what keeps it out), so a failure to
/// write it is logged, not fatal.
fn write_pid_file(name: &str, path: &Path) {
    let file = pid_file(path);
    if let Err(e) = std::fs::write(&file, format!("{}\n", std::process::id())) {
        tracing::warn!(backend = %name, file = %file.display(), error = %e,
            "cannot record this process's pid next to the data file");
    }
}

/// What opening a data file whose lock another open holds says, instead of redb's
/// `Database already open. Cannot acquire lock.`: who holds it, with its pid when known.
fn held_elsewhere(name: &str, path: &Path) -> String {
    let holder = std::fs::read_to_string(pid_file(path))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let who = match holder {
        Some(pid) if pid == std::process::id() => {
            format!("this ipam-gateway (pid {pid}) already has it open for another backend")
        }
        Some(pid) => format!("another ipam-gateway (pid {pid}) holds it"),
        None => "another ipam-gateway holds it (pid unknown)".to_owned(),
    };
    format!(
        "backend {name}: the data file {} is in use: {who}; stop that one, or give this one \
         its own data file (backends.{name}.path)",
        path.display()
    )
}

/// Opens (or creates) the data file, refuses one of a newer format before reading or writing
/// anything in it, then brings an older one to [`FORMAT_VERSION`] and stamps it, in one write
/// transaction. A data file is one process's: a second open fails naming the holder
/// ([`held_elsewhere`]).
pub fn open(name: &str, path: &Path) -> IpamResult<Database> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            IpamError::Internal(format!(
                "backend {name}: cannot create {}: {e}",
                dir.display()
            ))
        })?;
    }
    let db = match redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
    {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(IpamError::Internal(held_elsewhere(name, path)));
        }
        Err(e) => {
            return Err(IpamError::Internal(format!(
                "backend {name}: cannot open {}: {e}",
                path.display()
            )));
        }
    };
    let err = |e: &dyn std::fmt::Display| {
        IpamError::Internal(format!("backend {name}: data file {}: {e}", path.display()))
    };
    let found = stamped_format(&db).map_err(|e| err(&e))?;
    if let Some(v) = found
        && v > FORMAT_VERSION
    {
        return Err(IpamError::Internal(format!(
            "backend {name}: the data file {} has format {v}, written by a newer ipam-gateway; \
             this one reads formats up to {FORMAT_VERSION}. Run that newer version, or give \
             this one its own data file (backends.{name}.path)",
            path.display()
        )));
    }
    write_pid_file(name, path);
    if found != Some(FORMAT_VERSION) {
        let txn = db.begin_write().map_err(|e| err(&e))?;
        let existing = txn
            .list_tables()
            .map_err(|e| err(&e))?
            .any(|t| t.name() == NETWORKS.name());
        if existing {
            let rewritten = records::migrate_from_v0(&txn).map_err(|e| err(&e))?;
            tracing::info!(backend = %name, file = %path.display(), networks = rewritten,
                "data file migrated from format 0 to {FORMAT_VERSION}");
        }
        txn.open_table(META)
            .map_err(|e| err(&e))?
            .insert(FORMAT_KEY, FORMAT_VERSION)
            .map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
    }
    Ok(db)
}

/// The file's format stamp, read without writing: `None` for a new file or one of format 0.
pub fn stamped_format(db: &Database) -> Result<Option<u64>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(format!("format stamp: {e}")),
    };
    meta.get(FORMAT_KEY)
        .map(|v| v.map(|g| g.value()))
        .map_err(|e| format!("format stamp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::EmbeddedBackend;
    use super::super::tests::{config, open as open_backend};
    use super::*;

    #[test]
    fn a_new_file_is_stamped_with_the_current_format() {
        let dir = tempfile::tempdir().expect("dir");
        let path = open_backend(dir.path()).path().to_owned();
        let db = Database::open(&path).expect("reopen");
        assert_eq!(stamped_format(&db), Ok(Some(FORMAT_VERSION)));
    }

    /// A file stamped by a newer gateway (format 1 + 1 here) is refused with its path and
    /// format, and left as it was: no table created, no record rewritten, stamp unchanged.
    #[test]
    fn a_file_of_a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("newer.redb");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META)
                .expect("meta")
                .insert(FORMAT_KEY, FORMAT_VERSION + 1)
                .expect("stamp");
            txn.commit().expect("commit");
        }
        let (networks, blocks) = config();
        let err = EmbeddedBackend::open("local", &path, &networks, &blocks)
            .expect_err("a newer format must be refused");
        let IpamError::Internal(msg) = &err else {
            panic!("{err:?}");
        };
        assert!(
            msg.contains(&path.display().to_string()),
            "names the file: {msg}"
        );
        assert!(
            msg.contains(&format!("has format {}", FORMAT_VERSION + 1))
                && msg.contains(&format!("reads formats up to {FORMAT_VERSION}"))
                && msg.contains("newer ipam-gateway"),
            "{msg}"
        );
        let db = Database::open(&path).expect("the refusal released the file");
        assert_eq!(stamped_format(&db), Ok(Some(FORMAT_VERSION + 1)));
        let txn = db.begin_read().expect("read");
        let tables: Vec<String> = txn
            .list_tables()
            .expect("tables")
            .map(|t| t.name().to_owned())
            .collect();
        assert_eq!(tables, ["meta"], "nothing was seeded into it");
        assert!(!pid_file(&path).exists(), "a refused file is not claimed");
    }

    #[test]
    fn a_format_stamp_of_another_type_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("odd.redb");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            let odd: TableDefinition<&str, &str> = TableDefinition::new("meta");
            txn.open_table(odd)
                .expect("meta")
                .insert(FORMAT_KEY, "two")
                .expect("stamp");
            txn.commit().expect("commit");
        }
        let (networks, blocks) = config();
        let err = EmbeddedBackend::open("local", &path, &networks, &blocks).expect_err("refused");
        let IpamError::Internal(msg) = &err else {
            panic!("{err:?}");
        };
        assert!(
            msg.starts_with(&format!(
                "backend local: data file {}: format stamp: ",
                path.display()
            )),
            "{msg}"
        );
    }
}
