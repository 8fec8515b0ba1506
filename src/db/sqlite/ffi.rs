//! The SQLite C calls the crate makes itself, behind a safe interface: the only SQLite `unsafe`
//! code in the crate.
//!
//! The write path runs its statements on a [`Connection`] of its own rather than through sqlx,
//! because sqlx hands every statement to the connection's own thread and wakes the caller back:
//! two thread hand-offs per statement, most of the cost of a write. A [`Connection`] owns its
//! `sqlite3*` and every statement prepared on it, and finalizes and closes them all when dropped.
//! A prepared statement is named by a [`Prepared`] key and used through `&mut Connection`
//! ([`Connection::query`]), so the borrow checker proves what SQLite's multi-thread mode asks:
//! one thread at a time on a connection and its statements.
//!
//! The reader connections stay sqlx's; [`wait_when_busy`] gives them the backoff busy handler
//! ([`super::busy`]), the one call on their handle that sqlx does not wrap.
//!
//! [`Connection::on_wal_commit`] tells the checkpoint task how long the WAL is after each commit
//! (SQLite's WAL hook), so that it copies the WAL in small steps as it grows.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

use super::busy;

/// A failed SQLite call: its extended result code, SQLite's message, and for a file that could
/// not be opened, read or written, the operating system's error behind it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQLite error {code}: {message}{}", os_cause(*.os_error))]
pub struct SqliteFailure {
    pub code: c_int,
    pub message: String,
    /// The `errno` of the failed system call (`sqlite3_system_errno`), for `SQLITE_CANTOPEN` and
    /// `SQLITE_IOERR`: "unable to open database file" alone does not say why.
    pub os_error: Option<c_int>,
}

impl SqliteFailure {
    /// Whether SQLite answered that another connection holds the lock it needs.
    pub fn is_busy(&self) -> bool {
        is_busy_code(self.code)
    }

    /// Whether the file system holding the database is full: `SQLITE_FULL`, or an I/O error
    /// whose system call failed with `ENOSPC` (how SQLite reports some of its writes failing).
    pub fn is_full(&self) -> bool {
        let no_space = |errno| {
            std::io::Error::from_raw_os_error(errno).kind() == std::io::ErrorKind::StorageFull
        };
        is_full_code(self.code)
            || (self.code & 0xff == ffi::SQLITE_IOERR && self.os_error.is_some_and(no_space))
    }

    fn misuse(message: &str) -> Self {
        Self {
            code: ffi::SQLITE_MISUSE,
            message: message.to_owned(),
            os_error: None,
        }
    }

    fn from_code(code: c_int) -> Self {
        // SAFETY: sqlite3_errstr returns a pointer to a static, NUL-terminated English string.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errstr(code)) };
        Self {
            code,
            message: message.to_string_lossy().into_owned(),
            os_error: None,
        }
    }
}

/// `" (<the OS's words> (os error N))"` for a failure with an `errno`, else nothing.
fn os_cause(os_error: Option<c_int>) -> String {
    os_error.map_or_else(String::new, |errno| {
        format!(" ({})", std::io::Error::from_raw_os_error(errno))
    })
}

/// Whether a (possibly extended) SQLite result code is `SQLITE_BUSY`.
pub fn is_busy_code(code: c_int) -> bool {
    code & 0xff == ffi::SQLITE_BUSY
}

/// Whether a (possibly extended) SQLite result code is `SQLITE_FULL`: a write needed space the
/// file system does not have.
pub fn is_full_code(code: c_int) -> bool {
    code & 0xff == ffi::SQLITE_FULL
}

/// Tells connections apart, so a [`Prepared`] key is only ever used on its own connection.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// One SQLite connection, opened here, with the statements prepared on it.
#[derive(Debug)]
pub struct Connection {
    handle: NonNull<ffi::sqlite3>,
    statements: Vec<NonNull<ffi::sqlite3_stmt>>,
    id: u64,
    /// The WAL hook SQLite calls, kept alive (and at one address) as long as the handle is open:
    /// `Drop` closes the handle before the fields are dropped.
    wal_hook: Option<Box<WalHook>>,
}

/// What [`Connection::on_wal_commit`] calls: the WAL's length in pages after a commit.
struct WalHook(Box<dyn Fn(u32) + Send + Sync>);

impl fmt::Debug for WalHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WalHook")
    }
}

// SAFETY: the connection is opened in SQLite's multi-thread mode (`SQLITE_OPEN_NOMUTEX`, on a
// library built thread-safe, which `open` checks), where a connection may move between threads
// as long as one thread at a time uses it. Every call on the handle or on one of its statements
// goes through `&self` or `&mut self`, and `Connection` is not `Sync`, so only one thread at a
// time can make them.
unsafe impl Send for Connection {}

/// A statement prepared on a [`Connection`]: a key to run it with [`Connection::query`].
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    connection: u64,
    index: usize,
}

impl Connection {
    /// Opens (creating if missing) the database file at `path`, read-write, with extended result
    /// codes and no busy handler.
    pub fn open(path: &Path) -> Result<Self, SqliteFailure> {
        // SAFETY: a plain query of a compile-time setting.
        if unsafe { ffi::sqlite3_threadsafe() } == 0 {
            return Err(SqliteFailure::misuse(
                "the linked SQLite was built without thread safety",
            ));
        }
        let path = path
            .to_str()
            .and_then(|path| CString::new(path).ok())
            .ok_or_else(|| SqliteFailure::misuse("the database path is not UTF-8 without NUL"))?;
        let flags = ffi::SQLITE_OPEN_READWRITE
            | ffi::SQLITE_OPEN_CREATE
            | ffi::SQLITE_OPEN_NOMUTEX
            | ffi::SQLITE_OPEN_PRIVATECACHE;
        let mut handle = ptr::null_mut();
        // SAFETY: `path` is NUL-terminated; `handle` is written (possibly even on failure).
        let rc = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut handle, flags, ptr::null()) };
        let Some(handle) = NonNull::new(handle) else {
            return Err(SqliteFailure::from_code(rc));
        };
        let connection = Self {
            handle,
            statements: Vec::new(),
            id: NEXT_CONNECTION.fetch_add(1, Relaxed),
            wal_hook: None,
        };
        // On failure, `connection` is dropped, which closes the handle.
        connection.check(rc)?;
        // SAFETY: the handle is open.
        let rc = unsafe { ffi::sqlite3_extended_result_codes(handle.as_ptr(), 1) };
        connection.check(rc)?;
        Ok(connection)
    }

    /// Runs `sql`, any number of statements separated by `;`, ignoring any rows.
    pub fn execute(&mut self, sql: &str) -> Result<(), SqliteFailure> {
        let sql = CString::new(sql).map_err(|_| SqliteFailure::misuse("SQL text with a NUL"))?;
        // SAFETY: the handle is open and `sql` NUL-terminated; no callback, no error buffer
        // (the message is read from the connection by `check`).
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.handle.as_ptr(),
                sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        self.check(rc)
    }

    /// Compiles one statement, kept until the connection closes.
    pub fn prepare(&mut self, sql: &str) -> Result<Prepared, SqliteFailure> {
        let sql = CString::new(sql).map_err(|_| SqliteFailure::misuse("SQL text with a NUL"))?;
        let mut stmt = ptr::null_mut();
        // SAFETY: the handle is open, `sql` is NUL-terminated (length -1), `stmt` is written.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.handle.as_ptr(),
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        self.check(rc)?;
        let stmt = NonNull::new(stmt).ok_or_else(|| SqliteFailure::misuse("no SQL statement"))?;
        self.statements.push(stmt);
        Ok(Prepared {
            connection: self.id,
            index: self.statements.len() - 1,
        })
    }

    /// The statement `prepared` names, to bind and run; a misuse failure if it was prepared on
    /// another connection.
    pub fn query(&mut self, prepared: Prepared) -> Result<Query<'_>, SqliteFailure> {
        if prepared.connection != self.id {
            return Err(SqliteFailure::misuse(
                "a statement used on another connection",
            ));
        }
        Ok(Query {
            stmt: self.statements[prepared.index],
            connection: self,
        })
    }

    /// Whether a transaction is open (`BEGIN` ran without a `COMMIT` or `ROLLBACK` yet).
    pub fn in_transaction(&self) -> bool {
        // SAFETY: the handle is open.
        unsafe { ffi::sqlite3_get_autocommit(self.handle.as_ptr()) == 0 }
    }

    /// The rowid of the row the last successful `INSERT` on this connection added.
    pub fn last_insert_rowid(&self) -> i64 {
        // SAFETY: the handle is open.
        unsafe { ffi::sqlite3_last_insert_rowid(self.handle.as_ptr()) }
    }

    /// While another connection holds a lock this one needs, wait with the backoff's pauses
    /// ([`busy::keep_waiting`]), giving up with `SQLITE_BUSY` after `timeout`.
    pub fn wait_when_busy(&mut self, timeout: Duration) -> Result<(), SqliteFailure> {
        // SAFETY: the handle is open; see `set_backoff`.
        let rc = unsafe { set_backoff(self.handle, timeout) };
        self.check(rc)
    }

    /// Fail a statement that finds the lock taken at once, with `SQLITE_BUSY`, instead of waiting
    /// inside SQLite: the writer waits for its turn itself, between attempts.
    pub fn fail_when_busy(&mut self) -> Result<(), SqliteFailure> {
        // SAFETY: the handle is open; no handler means no callback to keep alive.
        let rc = unsafe { ffi::sqlite3_busy_handler(self.handle.as_ptr(), None, ptr::null_mut()) };
        self.check(rc)
    }

    /// Calls `hook` after each commit on this connection, on the committing thread, with the
    /// number of pages in the WAL. Replaces SQLite's auto-checkpoint, which is the default WAL
    /// hook: a connection with this hook never checkpoints by itself.
    pub fn on_wal_commit(&mut self, hook: impl Fn(u32) + Send + Sync + 'static) {
        let hook = Box::new(WalHook(Box::new(hook)));
        let context = ptr::from_ref::<WalHook>(&hook).cast_mut().cast::<c_void>();
        // SAFETY: the handle is open. `context` points into a box the connection keeps (below)
        // until the handle is closed, or until a later call has given SQLite its successor, so it
        // is valid whenever SQLite calls `wal_committed`.
        unsafe { ffi::sqlite3_wal_hook(self.handle.as_ptr(), Some(wal_committed), context) };
        self.wal_hook = Some(hook);
    }

    fn check(&self, rc: c_int) -> Result<(), SqliteFailure> {
        check(self.handle, rc)
    }
}

/// Called by SQLite after each commit of a connection with a [`WalHook`], on the committing
/// thread, with the WAL's length in pages. Returning `SQLITE_OK` leaves the commit as it is.
extern "C" fn wal_committed(
    context: *mut c_void,
    _handle: *mut ffi::sqlite3,
    _database: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `context` is the `WalHook` that `on_wal_commit` registered, alive while the
    // connection is open; SQLite calls this only from a call on that connection.
    let hook = unsafe { &*context.cast_const().cast::<WalHook>() };
    (hook.0)(u32::try_from(pages).unwrap_or(0));
    ffi::SQLITE_OK
}

impl Drop for Connection {
    fn drop(&mut self) {
        for stmt in self.statements.drain(..) {
            // SAFETY: each statement was prepared on this handle and is finalized once, here.
            unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
        }
        // SAFETY: the handle is open, every statement prepared on it is finalized (the only ones
        // it can have: `prepare` keeps each), and it is not used again.
        let rc = unsafe { ffi::sqlite3_close(self.handle.as_ptr()) };
        if rc != ffi::SQLITE_OK {
            tracing::warn!(code = rc, "closing the write connection failed");
        }
    }
}

/// Gives `handle` the backoff busy handler, giving up after `timeout`.
///
/// # Safety
/// `handle` must be an open connection that no other thread uses during the call.
unsafe fn set_backoff(handle: NonNull<ffi::sqlite3>, timeout: Duration) -> c_int {
    // The timeout travels as the callback's context pointer: an integer, nothing to free.
    let timeout_ms = usize::try_from(timeout.as_millis()).unwrap_or(usize::MAX);
    // SAFETY: the caller guarantees the handle; the callback is a plain function that only reads
    // its context as an integer.
    unsafe {
        ffi::sqlite3_busy_handler(
            handle.as_ptr(),
            Some(on_busy),
            ptr::without_provenance_mut(timeout_ms),
        )
    }
}

/// Called by SQLite, on the thread running the statement, each time a lock is found taken.
/// Returning 0 gives up with `SQLITE_BUSY`.
extern "C" fn on_busy(timeout_ms: *mut c_void, attempt: c_int) -> c_int {
    let timeout = Duration::from_millis(timeout_ms.addr() as u64);
    c_int::from(busy::keep_waiting(timeout, attempt))
}

/// Gives a sqlx connection (a reader) the backoff busy handler, giving up after `timeout`.
pub async fn wait_when_busy(
    connection: &mut SqliteConnection,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    // SAFETY: the handle is locked, so sqlx's worker thread makes no call on it meanwhile.
    let rc = unsafe { set_backoff(handle.as_raw_handle(), timeout) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "sqlite3_busy_handler failed with code {rc}"
        )))
    }
}

/// `Ok` for `SQLITE_OK`, else the connection's extended code and message.
fn check(handle: NonNull<ffi::sqlite3>, rc: c_int) -> Result<(), SqliteFailure> {
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: the handle is open; the message stays valid until the next call on it, and is
    // copied at once.
    let (code, message, errno) = unsafe {
        (
            ffi::sqlite3_extended_errcode(handle.as_ptr()),
            CStr::from_ptr(ffi::sqlite3_errmsg(handle.as_ptr())),
            ffi::sqlite3_system_errno(handle.as_ptr()),
        )
    };
    let code = if code == ffi::SQLITE_OK { rc } else { code };
    // SQLite records the errno only for these two; for any other code it is a stale one.
    let file_error = matches!(code & 0xff, ffi::SQLITE_CANTOPEN | ffi::SQLITE_IOERR);
    Err(SqliteFailure {
        code,
        message: message.to_string_lossy().into_owned(),
        os_error: (file_error && errno != 0).then_some(errno),
    })
}

/// A prepared statement of a connection, borrowed with the connection for one run.
#[derive(Debug)]
pub struct Query<'c> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    connection: &'c mut Connection,
}

impl Query<'_> {
    /// Binds an integer to parameter `?index` (from 1).
    pub fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), SqliteFailure> {
        // SAFETY: the statement is alive (its connection is borrowed).
        let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, value) };
        self.connection.check(rc)
    }

    /// Binds an integer, or NULL for `None`, to parameter `?index` (from 1).
    pub fn bind_optional_i64(
        &mut self,
        index: c_int,
        value: Option<i64>,
    ) -> Result<(), SqliteFailure> {
        match value {
            Some(value) => self.bind_i64(index, value),
            None => {
                // SAFETY: the statement is alive.
                let rc = unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), index) };
                self.connection.check(rc)
            }
        }
    }

    /// Binds a text to parameter `?index` (from 1); SQLite keeps its own copy.
    pub fn bind_text(&mut self, index: c_int, value: &str) -> Result<(), SqliteFailure> {
        let length = c_int::try_from(value.len())
            .map_err(|_| SqliteFailure::from_code(ffi::SQLITE_TOOBIG))?;
        // SAFETY: the statement is alive; `value` is valid for `length` bytes and, because of
        // SQLITE_TRANSIENT, SQLite copies it before returning.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.stmt.as_ptr(),
                index,
                value.as_ptr().cast(),
                length,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.connection.check(rc)
    }

    /// Runs the statement to its end, ignoring any rows; then resets it.
    pub fn run(&mut self) -> Result<(), SqliteFailure> {
        self.first_row(|_| ()).map(drop)
    }

    /// Runs the statement to its end and returns what `read` took from its first row, if it gave
    /// one; then resets it for the next run (keeping the bindings until they are replaced).
    pub fn first_row<T>(
        &mut self,
        read: impl FnOnce(&Row<'_>) -> T,
    ) -> Result<Option<T>, SqliteFailure> {
        let mut read = Some(read);
        let mut first = None;
        let outcome = loop {
            // SAFETY: the statement is alive, and its connection borrowed by this thread.
            match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
                ffi::SQLITE_ROW => {
                    if let Some(read) = read.take() {
                        // SAFETY: the statement is alive.
                        let columns = unsafe { ffi::sqlite3_column_count(self.stmt.as_ptr()) };
                        first = Some(read(&Row {
                            stmt: self.stmt,
                            columns,
                            _query: std::marker::PhantomData,
                        }));
                    }
                }
                ffi::SQLITE_DONE => break Ok(()),
                rc => break self.connection.check(rc),
            }
        };
        // SAFETY: the statement is alive. Its return code repeats the step's error, already taken.
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
        outcome.map(|()| first)
    }
}

/// The current row of a statement being stepped.
#[derive(Debug)]
pub struct Row<'q> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    columns: c_int,
    _query: std::marker::PhantomData<&'q ()>,
}

impl Row<'_> {
    /// Column `index` (from 0) as an integer, or `None` when it is NULL or not a column.
    pub fn i64(&self, index: c_int) -> Option<i64> {
        // SAFETY: a row is current and `index` is one of its columns (`has_value`).
        self.has_value(index)
            .then(|| unsafe { ffi::sqlite3_column_int64(self.stmt.as_ptr(), index) })
    }

    /// Column `index` (from 0) as text, or `None` when it is NULL or not a column. Text that is
    /// not UTF-8 (never written by this service) is read with replacement characters.
    pub fn text(&self, index: c_int) -> Option<String> {
        if !self.has_value(index) {
            return None;
        }
        // SAFETY: a row is current and `index` is one of its columns (`has_value`). The text
        // pointer stays valid until the next call on the statement, and `bytes` (asked after
        // it, as SQLite requires) is its length; it is copied at once.
        unsafe {
            let text = ffi::sqlite3_column_text(self.stmt.as_ptr(), index);
            let bytes = ffi::sqlite3_column_bytes(self.stmt.as_ptr(), index);
            if text.is_null() {
                return None;
            }
            let bytes = std::slice::from_raw_parts(text, usize::try_from(bytes).unwrap_or(0));
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    }

    /// Whether `index` is one of the row's columns and holds something other than NULL.
    fn has_value(&self, index: c_int) -> bool {
        // SAFETY: a row is current (a `Row` exists only inside `first_row`'s read, between a
        // step that returned SQLITE_ROW and the next call on the statement) and `index` is one
        // of its columns.
        (0..self.columns).contains(&index)
            && unsafe { ffi::sqlite3_column_type(self.stmt.as_ptr(), index) } != ffi::SQLITE_NULL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_runs_only_on_the_connection_that_prepared_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut one = Connection::open(&dir.path().join("one.db")).expect("open");
        let mut two = Connection::open(&dir.path().join("two.db")).expect("open");
        let select = one.prepare("SELECT 41 + 1").expect("prepare");
        let answer = one
            .query(select)
            .and_then(|mut query| query.first_row(|row| row.i64(0)))
            .expect("runs on its own connection");
        assert_eq!(answer, Some(Some(42)));
        let err = two
            .query(select)
            .expect_err("refused on another connection");
        assert_eq!(err.code, ffi::SQLITE_MISUSE);
    }

    /// "unable to open database file" says nothing of why: the failure carries the OS's error.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_cannot_be_opened_names_the_operating_system_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let directory = dir.path().join("directory.db");
        std::fs::create_dir(&directory).expect("a directory");
        for (path, errno) in [
            (directory, libc::EISDIR),
            (dir.path().join("missing/x.db"), libc::ENOENT),
        ] {
            let failure = Connection::open(&path)
                .and_then(|mut connection| connection.execute("PRAGMA user_version"))
                .expect_err("cannot open it");
            assert_eq!(failure.code & 0xff, ffi::SQLITE_CANTOPEN, "{failure}");
            assert_eq!(failure.os_error, Some(errno), "{failure}");
            assert!(
                failure
                    .to_string()
                    .contains(&std::io::Error::from_raw_os_error(errno).to_string()),
                "{failure}"
            );
            assert!(!failure.is_full());
        }
    }

    #[test]
    fn the_wal_hook_sees_every_commit_and_stops_the_auto_checkpoint() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicU32;

        let dir = tempfile::tempdir().expect("temp dir");
        let mut connection = Connection::open(&dir.path().join("wal.db")).expect("open");
        connection
            .execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
            .expect("set up");
        let (commits, longest) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (seen, most) = (commits.clone(), longest.clone());
        connection.on_wal_commit(move |pages| {
            seen.fetch_add(1, Relaxed);
            most.fetch_max(pages, Relaxed);
        });
        let insert = connection
            .prepare("INSERT INTO t VALUES (1)")
            .expect("prepare");
        // SQLite's auto-checkpoint would start the WAL over at 1,000 pages.
        for _ in 0..1_200 {
            connection
                .query(insert)
                .and_then(|mut q| q.run())
                .expect("insert");
        }
        assert_eq!(commits.load(Relaxed), 1_200);
        assert!(longest.load(Relaxed) >= 1_200, "{longest:?} pages");
    }
}
