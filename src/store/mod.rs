//! The durable store: SQLite (bundled) in WAL mode with `synchronous = FULL`, so a
//! commit is on disk when it returns. It owns the schema and every query the daemon
//! runs.
//!
//! Writes go through one writer thread that gathers whatever writes are waiting into a
//! single transaction (group commit) and answers each caller only after that commit:
//! many concurrent producers share one fsync. Each write runs in its own savepoint, so
//! one failing write does not undo the others in its group. Reads use separate
//! connections, which WAL lets run alongside the writer.

mod api_misc;
mod events;
mod inbox;
mod messages;
mod otp;
mod schema;
mod suppression;
mod templates;

pub use api_misc::*;
pub use events::*;
pub use inbox::*;
pub use messages::*;
pub use otp::*;
pub use suppression::*;
pub use templates::*;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::oneshot;

/// The store layer's errors.
#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database {path} has schema version {found}; this gsmgw knows up to {known}")]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

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
}

/// Current time as unix milliseconds, the unit every timestamp column uses.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn open_conn(path: &Path, write: bool) -> Result<Connection> {
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
    conn.busy_timeout(Duration::from_secs(10))?;
    if write {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is synced at every commit, so "committed" means "on disk".
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) and migrates the database, and starts the writer.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let mut conn = open_conn(&path, true)?;
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
        let thread = std::thread::Builder::new()
            .name("gsmgw-store".into())
            .spawn(move || writer_loop(conn, rx))
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
            }),
        })
    }

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
            None => open_conn(&self.inner.path, false)?,
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

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        let begin = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from);
        if let Err(e) = &begin {
            // Could not even start: fail this write (without running it) and go on.
            first(Err(e))(Some(e));
            continue;
        }
        replies.push(first(Ok(&conn)));
        while replies.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => replies.push(job(Ok(&conn))),
                Err(_) => break,
            }
        }
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies.drain(..) {
            reply(commit.as_ref().err());
        }
    }
}

#[cfg(test)]
mod tests;
