//! The durable store: SQLite (bundled) in WAL mode with `synchronous = FULL`, so a
//! commit is on disk when it returns. It owns the schema and every query the daemon
//! runs.
//!
//! Writes go through one writer thread that gathers whatever writes are waiting into a
//! single transaction (group commit) and answers each caller only after that commit:
//! many concurrent producers share one fsync. Each write runs in its own savepoint, so
//! one failing write does not undo the others in its group, and a write that panics
//! fails alone: the writer catches it, rolls its savepoint back and goes on. If the
//! writer thread ever stops all the same, [`Store::writer_failure`] says why and
//! [`Store::writer_stopped`] wakes the daemon, which exits non-zero so systemd restarts
//! it. Reads use separate connections, which WAL lets run alongside the writer.
//!
//! The database and its `-wal`/`-shm` files are private to the service (mode 0600):
//! they hold message texts and, until they are handed to a modem, one-time codes.

mod api_misc;
mod backup;
mod events;
mod inbox;
mod messages;
mod otp;
mod reports;
mod retention;
mod schema;
mod sims;
mod suppression;
mod templates;

pub use api_misc::*;
pub use backup::*;
pub use events::*;
pub use inbox::*;
pub use messages::*;
pub use otp::*;
pub use reports::*;
pub use retention::*;
pub use sims::*;
pub use suppression::*;
pub use templates::*;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;

/// The store layer's errors.
#[derive(Debug, Error, Clone)]
pub enum StoreError {
    /// A database file could not be created, opened or made private, or the writer
    /// thread could not start.
    #[error("database {path}: {message}")]
    Open {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong, for the operator.
        message: String,
    },
    /// A newer gsmgw migrated the database; this one refuses to touch it.
    #[error("database {path} has schema version {found}; this gsmgw knows up to {known}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: usize,
        /// The newest schema version this build knows.
        known: usize,
    },
    /// The file is damaged: not a database at all, or `PRAGMA quick_check` found
    /// errors at start. Nothing is written to it; the operator restores a backup.
    #[error(
        "database {path} is damaged ({detail}): stop gsmgw, move the file (and its -wal, -shm) aside, \
         and restore the newest `gsmgw backup` copy (docs/install.md, \"Backup and restore\") \
         or start on an empty database"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite found (the first few `quick_check` lines).
        detail: String,
    },
    /// Any other SQLite error (a bug or a damaged database), in SQLite's words.
    #[error("database error: {0}")]
    Sqlite(String),
    /// The row named in the text does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The row is not in a state that allows the change (e.g. cancelling a message
    /// that is no longer queued).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The writer thread has stopped ([`Store::writer_failure`] says why); nothing can
    /// be written until the daemon restarts.
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The database cannot take writes now (disk full, read-only, I/O error, locked by
    /// another process); it may again later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A write panicked; it was rolled back and the writer went on.
    #[error("internal error in a store write: {0}")]
    Panicked(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(
                C::DiskFull
                | C::ReadOnly
                | C::SystemIoFailure
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::CannotOpen
                | C::FileLockingProtocolFailed,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Sqlite(e.to_string()),
        }
    }
}

impl StoreError {
    /// True when retrying later may succeed (the API answers 503 with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::WriterGone)
    }
}

/// Shorthand for store results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A write that has run inside the group's transaction and waits for its commit.
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write: given the connection inside the group's transaction (or the error that kept
/// the transaction from starting), it runs and returns what to do after the commit.
type Job = Box<dyn FnOnce(std::result::Result<&Connection, &StoreError>) -> Reply + Send>;

/// Most writes one group commit takes; bounds the latency of the first in a burst.
const MAX_GROUP: usize = 1024;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Mutex<Vec<Connection>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    health: Arc<Health>,
    busy: Duration,
}

/// What the writer thread tells the rest of the process about itself.
#[derive(Default)]
struct Health {
    /// Why the writer thread stopped, if it stopped other than by [`Store::close`].
    failure: Mutex<Option<String>>,
    stopped: tokio::sync::Notify,
    /// The last group commit's error (or BEGIN's), cleared by the next good commit.
    last_error: Mutex<Option<StoreError>>,
}

impl Health {
    fn set_last_error(&self, e: Option<&StoreError>) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = e.cloned();
        }
    }
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Current time as unix milliseconds, the unit every timestamp column uses: the system clock's now (store stamps outside a component that holds a [`Clock`]).
///
/// [`Clock`]: crate::clock::Clock
pub fn now_ms() -> i64 {
    crate::clock::Clock::system().now_ms()
}

pub use crate::clock::{from_ms, to_ms};

/// Creates the database file private to the service (0600) before SQLite opens it, so
/// SQLite, which gives `-wal` and `-shm` the main file's mode, creates those 0600 too;
/// tightens files an older version created with the umask's mode.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let open_err = |e: std::io::Error| StoreError::Open {
        path: path.to_path_buf(),
        message: format!("cannot create the database file: {e}"),
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(open_err)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut f = path.as_os_str().to_owned();
        f.push(suffix);
        let f = PathBuf::from(f);
        if let Ok(meta) = std::fs::metadata(&f)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                StoreError::Open {
                    path: f.clone(),
                    message: format!("cannot make it private (chmod 600): {e}"),
                }
            })?;
        }
    }
    Ok(())
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds (`2026-11-27T10:00:00.000Z`).
/// Total: years outside 0000–9999 use ISO 8601's expanded form (`+10000-01-01…`,
/// `-0001-…`) instead of panicking; the API's bounds keep them from being stored.
pub fn rfc3339(ms: i64) -> String {
    // Days stay within ±1.1e11 for any i64 of ms: the pool's calendar (i64) cannot
    // overflow on them.
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = crate::pool::window::civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("+{year}")
    };
    format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// How long a statement waits for a lock another process holds (a backup, the
/// `sqlite3` shell) before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn open_conn(path: &Path, write: bool, busy: Duration) -> Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(busy)?;
    if write {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is synced at every commit, so "committed" means "on disk".
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Overwrite deleted content (a redacted one-time code) in the b-tree pages.
        conn.pragma_update(None, "secure_delete", "FAST")?;
        // A checkpointed WAL is cut back to this size instead of keeping its peak.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    }
    Ok(conn)
}

/// `PRAGMA quick_check` before anything else touches the file: a damaged database is
/// refused with [`StoreError::Corrupt`] rather than written into and made worse. It
/// reads every page once (seconds for a database of gigabytes), at start only.
fn check_intact(path: &Path) -> Result<()> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let damaged = |e: &rusqlite::Error| {
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        )
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let lines: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| {
            if damaged(&e) {
                corrupt(e.to_string())
            } else {
                StoreError::from(e)
            }
        })?;
    if lines != ["ok"] {
        return Err(corrupt(lines.join("; ")));
    }
    Ok(())
}

/// Bytes the `-wal` file is truncated to after a checkpoint resets it.
pub const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// What a checkpoint did: WAL frames in the log, and how many are now in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Another connection held the checkpoint back (it runs again at the next tick).
    pub busy: bool,
    /// Frames in the WAL.
    pub log_frames: i64,
    /// Frames copied into the database file.
    pub checkpointed: i64,
}

impl Store {
    /// Opens (creating if needed) and migrates the database, and starts the writer.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, BUSY_TIMEOUT)
    }

    /// [`Store::open`] with another busy timeout (tests use a short one).
    pub fn open_with(path: impl AsRef<Path>, busy: Duration) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        make_private(&path)?;
        check_intact(&path)?;
        let mut conn = open_conn(&path, true, busy)?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let found = usize::try_from(found).unwrap_or(0);
        if found > schema::VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                known: schema::VERSION,
            });
        }
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let health = Arc::new(Health::default());
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name("gsmgw-store".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    writer_loop(conn, rx, &h)
                }));
                if let Err(p) = run {
                    let why = panic_message(p.as_ref());
                    tracing::error!(error = %why, "the store writer stopped");
                    if let Ok(mut f) = h.failure.lock() {
                        *f = Some(why);
                    }
                    h.stopped.notify_waiters();
                    h.stopped.notify_one();
                }
            })
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                thread: Mutex::new(Some(thread)),
                health,
                busy,
            }),
        })
    }

    /// Stops the writer thread as a bug would (a panic outside any write), so tests can
    /// check that the process notices; never called by the daemon itself.
    #[doc(hidden)]
    pub fn crash_writer_for_tests(&self) {
        let job: Job = Box::new(|_| panic!("writer crashed on purpose (test)"));
        if let Ok(w) = self.inner.writer.lock()
            && let Some(tx) = w.as_ref()
        {
            let _ = tx.send(job);
        }
    }

    /// Why the writer thread stopped, if it stopped without [`Store::close`]; from then
    /// on every write fails, so the process should exit.
    pub fn writer_failure(&self) -> Option<String> {
        self.inner
            .health
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
    }

    /// Resolves when the writer thread stops other than by [`Store::close`].
    pub async fn writer_stopped(&self) -> String {
        loop {
            let notified = self.inner.health.stopped.notified();
            if let Some(why) = self.writer_failure() {
                return why;
            }
            notified.await;
        }
    }

    /// The last group commit's error, if the last commit failed (disk full, read-only,
    /// locked); `None` once a commit succeeds again.
    pub fn last_write_error(&self) -> Option<StoreError> {
        self.inner
            .health
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
    }

    /// A passive WAL checkpoint from a connection of its own: copies what readers no
    /// longer need into the database file without waiting on them or blocking the
    /// writer, so the `-wal` file cannot grow without bound even when SQLite's
    /// automatic checkpoint keeps losing to a reader. Blocking; run it off the runtime.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        // Read-write (a checkpoint writes the database file) but none of the writer's
        // set-up: it only checkpoints.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.inner.path, flags)?;
        let (busy, log, done): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        Ok(Checkpoint {
            busy: busy != 0,
            log_frames: log,
            checkpointed: done,
        })
    }

    /// The database file this store opened.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| -> Reply {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, f),
                Err(e) => Err(e.clone()),
            };
            Box::new(move |commit_error: Option<&StoreError>| {
                let _ = tx.send(match commit_error {
                    None => result,
                    Some(e) => Err(e.clone()),
                });
            })
        });
        let guard = self
            .inner
            .writer
            .lock()
            .map_err(|_| StoreError::WriterGone)?;
        guard
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(job)
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Runs `f` in the next group commit; resolves once that commit is durable.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(f)?.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Store::write`] for code outside the async runtime.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(f)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Runs a read on a pooled read-only connection (blocking; use from
    /// `spawn_blocking` or [`Store::read`]).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.inner.readers.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => open_conn(&self.inner.path, false, self.inner.busy)?,
        };
        let r = f(&conn);
        if let Ok(mut pool) = self.inner.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
        r
    }

    /// Runs a read off the async runtime's worker threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Sqlite(format!("read task failed: {e}")))?
    }

    /// Stops the writer after the writes already queued; later writes fail.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Some(t) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// Runs one statement through the connection's statement cache (the writer runs these
/// for every write; parsing them each time showed in profiles).
fn exec_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs one write in its own savepoint: an error or a panic rolls back that write only.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    exec_cached(conn, "SAVEPOINT job")?;
    let out =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).unwrap_or_else(|p| {
            let why = panic_message(p.as_ref());
            tracing::error!(error = %why, "a store write panicked; it was rolled back");
            Err(StoreError::Panicked(why))
        });
    match out {
        Ok(v) => {
            exec_cached(conn, "RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            exec_cached(conn, "ROLLBACK TO job")?;
            exec_cached(conn, "RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, health: &Health) {
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        let begin = exec_cached(&conn, "BEGIN IMMEDIATE");
        if let Err(e) = &begin {
            // Could not even start (another process holds the lock past the busy
            // timeout, or the disk is gone): fail this write and every write already
            // waiting, without running them, rather than making each wait its own
            // busy timeout; then go on with the next.
            health.set_last_error(Some(e));
            first(Err(e))(Some(e));
            while let Ok(job) = rx.try_recv() {
                job(Err(e))(Some(e));
            }
            continue;
        }
        replies.push(first(Ok(&conn)));
        while replies.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => replies.push(job(Ok(&conn))),
                Err(_) => break,
            }
        }
        let commit = exec_cached(&conn, "COMMIT");
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        health.set_last_error(commit.as_ref().err());
        for reply in replies.drain(..) {
            reply(commit.as_ref().err());
        }
    }
}

#[cfg(test)]
mod tests;
