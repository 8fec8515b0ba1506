//! The few SQLite C calls the writer makes, behind a small safe interface.
//!
//! The writer uses one connection that sqlx opened (pragmas, busy handler and schema all applied
//! the sqlx way) and runs its statements on that connection's raw handle, on the thread of the
//! request that committed: sqlx would send every statement to the connection's worker thread and
//! wake the caller back, two thread hand-offs per statement, which is most of the cost of a write
//! (see README, "How it stays exact and fast"). Only what the writer needs is here: prepared
//! statements that live as long as the connection, `i64`/text parameters, one optional `i64`
//! result, and plain runs.

use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

/// A failed SQLite call: its extended result code and SQLite's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQLite error {code}: {message}")]
pub struct SqliteFailure {
    pub code: c_int,
    pub message: String,
}

/// Whether a (possibly extended) SQLite result code says the lock was held by another
/// connection for longer than the busy handler waits.
pub fn is_busy_code(code: c_int) -> bool {
    code & 0xff == ffi::SQLITE_BUSY
}

impl SqliteFailure {
    /// See [`is_busy_code`].
    pub fn is_busy(&self) -> bool {
        is_busy_code(self.code)
    }

    fn from_code(code: c_int) -> Self {
        // SAFETY: sqlite3_errstr returns a pointer to a static, NUL-terminated English string.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errstr(code)) };
        Self {
            code,
            message: message.to_string_lossy().into_owned(),
        }
    }
}

/// A database connection borrowed for `'h` from its owner (a locked sqlx handle), used from one
/// thread at a time.
#[derive(Debug)]
pub struct Connection<'h> {
    handle: NonNull<ffi::sqlite3>,
    _owner: PhantomData<&'h mut ffi::sqlite3>,
}

impl<'h> Connection<'h> {
    /// Wraps an open connection's handle.
    ///
    /// # Safety
    /// `handle` must be an open connection that nothing else uses and nobody closes during `'h`
    /// (sqlx's `LockedSqliteHandle` guarantees both while it is held).
    pub unsafe fn new(handle: NonNull<ffi::sqlite3>) -> Self {
        Self {
            handle,
            _owner: PhantomData,
        }
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

    /// Compiles one statement, to be run many times while the connection is borrowed (`'h`).
    pub fn prepare(&self, sql: &str) -> Result<Statement<'h>, SqliteFailure> {
        let sql = CString::new(sql).map_err(|_| SqliteFailure {
            code: ffi::SQLITE_MISUSE,
            message: "SQL text with a NUL byte".into(),
        })?;
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
        let stmt = NonNull::new(stmt).ok_or_else(|| SqliteFailure {
            code: ffi::SQLITE_MISUSE,
            message: "no statement in the SQL text".into(),
        })?;
        Ok(Statement {
            stmt,
            handle: self.handle,
            _connection: PhantomData,
        })
    }

    /// Makes SQLite fail a statement that finds the lock taken at once, with `SQLITE_BUSY`,
    /// instead of calling a busy handler: the writer waits for its turn itself (see `writer`).
    pub fn fail_when_busy(&self) -> Result<(), SqliteFailure> {
        // SAFETY: the handle is open; no handler means no callback to keep alive.
        let rc = unsafe { ffi::sqlite3_busy_handler(self.handle.as_ptr(), None, ptr::null_mut()) };
        self.check(rc)
    }

    fn check(&self, rc: c_int) -> Result<(), SqliteFailure> {
        check(self.handle, rc)
    }
}

/// `Ok` for `SQLITE_OK`, else the connection's extended code and message.
fn check(handle: NonNull<ffi::sqlite3>, rc: c_int) -> Result<(), SqliteFailure> {
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: the handle is open; the message stays valid until the next call on it, and is
    // copied at once.
    let (code, message) = unsafe {
        (
            ffi::sqlite3_extended_errcode(handle.as_ptr()),
            CStr::from_ptr(ffi::sqlite3_errmsg(handle.as_ptr())),
        )
    };
    Err(SqliteFailure {
        code: if code == ffi::SQLITE_OK { rc } else { code },
        message: message.to_string_lossy().into_owned(),
    })
}

/// A prepared statement of a connection borrowed for `'h`; finalized when dropped, which must
/// happen before the connection is given back (a struct holding both declares it first).
#[derive(Debug)]
pub struct Statement<'h> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    handle: NonNull<ffi::sqlite3>,
    _connection: PhantomData<&'h mut ffi::sqlite3>,
}

impl Statement<'_> {
    /// Binds an integer to parameter `?index` (from 1).
    pub fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), SqliteFailure> {
        // SAFETY: the statement is alive.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, value) };
        check(self.handle, rc)
    }

    /// Binds NULL to parameter `?index` (from 1).
    pub fn bind_null(&mut self, index: c_int) -> Result<(), SqliteFailure> {
        // SAFETY: the statement is alive.
        let rc = unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), index) };
        check(self.handle, rc)
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
        check(self.handle, rc)
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
        self.each_row(|row| {
            if let Some(read) = read.take() {
                first = Some(read(row));
            }
        })?;
        Ok(first)
    }

    /// Runs the statement to its end, handing every row to `read`; then resets it for the next
    /// run (keeping the bindings until they are replaced).
    pub fn each_row(&mut self, mut read: impl FnMut(&Row<'_>)) -> Result<(), SqliteFailure> {
        let outcome = loop {
            // SAFETY: the statement is alive and used by one thread at a time.
            match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
                ffi::SQLITE_ROW => read(&Row {
                    stmt: self.stmt,
                    columns: self.columns(),
                    _statement: PhantomData,
                }),
                ffi::SQLITE_DONE => break Ok(()),
                rc => break check(self.handle, rc),
            }
        };
        // SAFETY: the statement is alive. Its return code repeats the step's error, already taken.
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
        outcome
    }

    fn columns(&self) -> c_int {
        // SAFETY: the statement is alive.
        unsafe { ffi::sqlite3_column_count(self.stmt.as_ptr()) }
    }
}

/// The current row of a statement being stepped.
pub struct Row<'s> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    columns: c_int,
    _statement: PhantomData<&'s ()>,
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
        // SAFETY: a row is current (a `Row` exists only between a step that returned
        // SQLITE_ROW and the next call on the statement) and `index` is one of its columns.
        (0..self.columns).contains(&index)
            && unsafe { ffi::sqlite3_column_type(self.stmt.as_ptr(), index) } != ffi::SQLITE_NULL
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is alive and never used again.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}
