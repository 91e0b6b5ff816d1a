//! Copies of the database for the operator: an online backup that a serving daemon does
//! not notice, verified before it takes the destination's name, and the message
//! history read out in id order for export.

use super::messages::{MESSAGE_COLUMNS, MessageRecord, message_from_row};
use super::{BUSY_TIMEOUT, Result, StoreError, open_conn};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What `gsmgw backup` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The verified copy.
    pub path: PathBuf,
    /// Its size in bytes (compacted: `VACUUM INTO` leaves no free pages).
    pub bytes: u64,
    /// `PRAGMA integrity_check` on the copy: always `ok` in a report (anything else is
    /// an error and the copy is removed).
    pub integrity: String,
    /// The schema version of the copy (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Messages in the copy.
    pub messages: i64,
    /// Inbox rows in the copy.
    pub inbox: i64,
}

/// Copies the database at `src` to `dest` while a daemon may be writing to it.
///
/// `VACUUM INTO` runs in one read transaction: in WAL mode the copy is the database as
/// of one commit, and the daemon's writer is never blocked (the online backup API, by
/// contrast, restarts whenever another connection writes, and may never finish under
/// load). The copy is written next to `dest` under a temporary name with mode 0600
/// (it holds message text), checked with `PRAGMA integrity_check`, synced, and only
/// then renamed to `dest`. An existing `dest` is refused unless `replace`.
pub fn backup(src: &Path, dest: &Path, replace: bool) -> Result<BackupReport> {
    let fail = |message: String| StoreError::Open {
        path: dest.to_path_buf(),
        message,
    };
    if !src.exists() {
        return Err(StoreError::Open {
            path: src.to_path_buf(),
            message: "no database here".into(),
        });
    }
    if dest.exists() && !replace {
        return Err(fail("exists; pass --force to replace it".into()));
    }
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| fail("not a file name".into()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    // VACUUM INTO accepts an empty file: create it private first so the copy never
    // exists with the umask's mode.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    let made = copy_and_verify(src, &tmp);
    let report = match made {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(format!("cannot rename the verified copy into place: {e}"))
    })?;
    // The rename is durable once the directory is synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(BackupReport {
        path: dest.to_path_buf(),
        ..report
    })
}

fn copy_and_verify(src: &Path, tmp: &Path) -> Result<BackupReport> {
    let source = open_conn(src, false, BUSY_TIMEOUT)?;
    let target = tmp.to_str().ok_or_else(|| StoreError::Open {
        path: tmp.to_path_buf(),
        message: "the path is not UTF-8".into(),
    })?;
    source.execute("VACUUM INTO ?1", [target])?;
    drop(source);
    let copy = open_conn(tmp, false, BUSY_TIMEOUT)?;
    let integrity: Vec<String> = copy
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if integrity != ["ok"] {
        return Err(StoreError::Open {
            path: tmp.to_path_buf(),
            message: format!("the copy fails integrity_check: {}", integrity.join("; ")),
        });
    }
    let count = |table: &str| -> Result<i64> {
        Ok(copy.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    let report = BackupReport {
        path: tmp.to_path_buf(),
        bytes: 0,
        integrity: "ok".into(),
        schema_version: copy.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        messages: count("messages")?,
        inbox: count("inbox")?,
    };
    drop(copy);
    let file = File::open(tmp).map_err(|e| StoreError::Open {
        path: tmp.to_path_buf(),
        message: e.to_string(),
    })?;
    file.sync_all().map_err(|e| StoreError::Open {
        path: tmp.to_path_buf(),
        message: e.to_string(),
    })?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport { bytes, ..report })
}

/// Opens a database read-only for export (a serving daemon keeps writing).
pub fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            message: "no database here".into(),
        });
    }
    open_conn(path, false, BUSY_TIMEOUT)
}

/// Up to `limit` messages created in `[since, until)` (unix ms) with ids above
/// `after_id`, oldest first: the export reads the history in pages by id, so a long
/// export holds no read transaction open and sees every row exactly once. Parts are not
/// loaded.
pub fn export_page(
    conn: &Connection,
    since: Option<i64>,
    until: Option<i64>,
    after_id: i64,
    limit: u32,
) -> Result<Vec<MessageRecord>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > ?1 \
         AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3) \
         ORDER BY id LIMIT ?4"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(
            params![after_id, since, until, limit.clamp(1, 10_000)],
            message_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::tests::msg;
    use crate::store::{Store, insert_message};

    #[test]
    fn a_backup_is_a_verified_private_copy_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let store = Store::open(&db).unwrap();
        for i in 0..5 {
            let m = msg(&format!("+4917100000{i:02}"), 1);
            store
                .write_blocking(move |c| insert_message(c, &m, 1_000 + i))
                .unwrap();
        }
        let dest = dir.path().join("copy.db");
        let r = backup(&db, &dest, false).unwrap();
        assert_eq!((r.messages, r.integrity.as_str()), (5, "ok"));
        assert_eq!(r.schema_version, crate::store::schema::VERSION as i64);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The copy is a database the daemon can open, with the same rows.
        let copy = Store::open(&dest).unwrap();
        let n: i64 = copy
            .read_blocking(|c| Ok(c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 5);
        // No second copy over the first without --force; no partial file left behind.
        assert!(backup(&db, &dest, false).is_err());
        assert!(backup(&db, &dest, true).is_ok());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn export_pages_through_a_time_range_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("g.db")).unwrap();
        for i in 0..10 {
            let m = msg("+491710000000", 1);
            store
                .write_blocking(move |c| insert_message(c, &m, 1_000 * i))
                .unwrap();
        }
        let conn = open_read_only(store.path()).unwrap();
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = export_page(&conn, Some(2_000), Some(8_000), after, 4).unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            seen.extend(page.iter().map(|m| m.created_at));
        }
        assert_eq!(seen, vec![2_000, 3_000, 4_000, 5_000, 6_000, 7_000]);
    }
}
