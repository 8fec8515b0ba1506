//! A recording VFS: a shim over SQLite's `unix` VFS that passes every call through to it and
//! writes down, in one global sequence-ordered [`Event`] log, every write, truncate, sync and
//! delete of a database file or a WAL. The test also appends an event when an answer arrives,
//! so the log says what was on its way to disk, what was on disk, and what the client had been
//! told, in the order it happened.
//!
//! Each logged call holds the log's lock from before the real call until its event is in the
//! log, so the log's order is the order the operating system saw: a sync is logged after every
//! write it covers (on any connection) and before every write it does not. Other files (the
//! `-shm` file, which SQLite maps through the database file's `xShm*` methods, temporary files)
//! are passed through and not logged.
//!
//! [`install`] registers the shim as the process's default VFS, so every connection the server
//! opens goes through it without the server knowing; the test reads its images with the real
//! `unix` VFS by name.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::ptr;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use libsqlite3_sys as ffi;

/// The name the shim registers under.
const NAME: &CStr = c"powercut";

/// A database file or WAL the log follows, by its full path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(u32);

/// One opening of a followed file: each connection opens the database and the WAL for itself,
/// so this tells the connection that wrote or synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(u64);

/// A followed file as one connection opened it.
#[derive(Debug, Clone, Copy)]
struct Followed {
    file: FileId,
    handle: Handle,
}

/// One entry of the log.
#[derive(Debug, Clone)]
pub enum Event {
    /// `bytes` written at `offset`.
    Write {
        file: FileId,
        handle: Handle,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The file cut (or extended) to `size` bytes.
    Truncate { file: FileId, size: u64 },
    /// Every write and truncate of `file` logged before this is on disk.
    Sync { file: FileId, handle: Handle },
    /// The file removed.
    Delete { file: FileId },
    /// The test received a 200 for the transaction with this `descricao`, from the server
    /// writing to `database`.
    Answered { database: FileId, descricao: String },
}

/// The followed files' paths (a [`FileId`] is an index), the handles given so far, and the
/// events.
#[derive(Debug)]
struct Log {
    paths: Vec<String>,
    handles: u64,
    events: Vec<Event>,
}

static LOG: Mutex<Log> = Mutex::new(Log {
    paths: Vec::new(),
    handles: 0,
    events: Vec::new(),
});

fn log() -> MutexGuard<'static, Log> {
    LOG.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Log {
    fn intern(&mut self, path: &str) -> FileId {
        let index = match self.paths.iter().position(|known| known == path) {
            Some(index) => index,
            None => {
                self.paths.push(path.to_owned());
                self.paths.len() - 1
            }
        };
        FileId(u32::try_from(index).expect("fewer than 2^32 files"))
    }

    fn follow(&mut self, path: &str) -> Followed {
        self.handles += 1;
        Followed {
            file: self.intern(path),
            handle: Handle(self.handles),
        }
    }

    fn find(&self, path: &str) -> Option<FileId> {
        let index = self.paths.iter().position(|known| known == path)?;
        Some(FileId(u32::try_from(index).expect("fewer than 2^32 files")))
    }
}

/// The file the log follows at `path` (SQLite's full path name), once SQLite has opened it.
pub fn file(path: &Path) -> Option<FileId> {
    log().find(path.to_str()?)
}

/// Appends "answered 200" for `descricao`, from the server writing to `database`.
pub fn record_answer(database: FileId, descricao: String) {
    log().events.push(Event::Answered {
        database,
        descricao,
    });
}

/// How many events the log holds: the position of the next one.
pub fn len() -> usize {
    log().events.len()
}

/// A copy of the events from `start` on.
pub fn events_from(start: usize) -> Vec<Event> {
    log().events[start..].to_vec()
}

/// The `unix` VFS the shim passes every call to.
#[derive(Debug)]
struct RealVfs(*mut ffi::sqlite3_vfs);

// SAFETY: a registered VFS object is never changed or freed, and the bundled SQLite is built
// threadsafe, so any thread may call its methods.
unsafe impl Send for RealVfs {}
// SAFETY: as for `Send`: shared references only ever read the pointer.
unsafe impl Sync for RealVfs {}

static REAL: OnceLock<RealVfs> = OnceLock::new();

/// The real VFS; set before the shim is registered, so before any of its methods can run.
fn real() -> (*mut ffi::sqlite3_vfs, &'static ffi::sqlite3_vfs) {
    let vfs = REAL
        .get()
        .expect("the shim is registered after REAL is set")
        .0;
    // SAFETY: `vfs` came from `sqlite3_vfs_find` and registered VFS objects live as long as the
    // process.
    (vfs, unsafe { &*vfs })
}

/// Registers the shim as the process's default VFS (once; later calls do nothing).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // SAFETY: a NUL-terminated name; `sqlite3_vfs_find` initialises SQLite if needed.
        let unix = unsafe { ffi::sqlite3_vfs_find(c"unix".as_ptr()) };
        assert!(!unix.is_null(), "SQLite has a unix VFS");
        REAL.set(RealVfs(unix)).expect("set once");
        let (_, unix) = real();
        let shim = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 3,
            szOsFile: c_int::try_from(size_of::<ShimFile>()).expect("small") + unix.szOsFile,
            mxPathname: unix.mxPathname,
            pNext: ptr::null_mut(),
            zName: NAME.as_ptr(),
            pAppData: ptr::null_mut(),
            xOpen: Some(open),
            xDelete: Some(delete),
            xAccess: Some(access),
            xFullPathname: Some(full_pathname),
            xDlOpen: Some(dl_open),
            xDlError: Some(dl_error),
            xDlSym: Some(dl_sym),
            xDlClose: Some(dl_close),
            xRandomness: Some(randomness),
            xSleep: Some(sleep),
            xCurrentTime: Some(current_time),
            xGetLastError: Some(get_last_error),
            xCurrentTimeInt64: Some(current_time_int64),
            xSetSystemCall: Some(set_system_call),
            xGetSystemCall: Some(get_system_call),
            xNextSystemCall: Some(next_system_call),
        }));
        // SAFETY: `shim` is leaked, so it outlives every use SQLite makes of it, and it is fully
        // initialised; 1 makes it the default VFS.
        let rc = unsafe { ffi::sqlite3_vfs_register(shim, 1) };
        assert_eq!(rc, ffi::SQLITE_OK, "register the shim");
    });
}

/// What SQLite allocates for each file opened through the shim (`szOsFile` bytes): this header,
/// then the real VFS's file object.
#[derive(Debug)]
#[repr(C)]
struct ShimFile {
    /// Must come first: SQLite reads `pMethods` through the `sqlite3_file` pointer.
    base: ffi::sqlite3_file,
    /// The real file object, right after this header in the same allocation.
    real: *mut ffi::sqlite3_file,
    /// Set for a database file or a WAL: what its events are logged under.
    followed: Option<Followed>,
}

/// The methods of every file opened through the shim.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The shim's header, the real file object and the real file's methods, for a file SQLite
/// opened through the shim.
///
/// # Safety
///
/// `file` is a file that [`open`] set up and that is not closed yet.
unsafe fn parts(
    file: *mut ffi::sqlite3_file,
) -> (
    Option<Followed>,
    *mut ffi::sqlite3_file,
    &'static ffi::sqlite3_io_methods,
) {
    // SAFETY: per the contract, `file` points to a `ShimFile` written by `open`.
    let shim = unsafe { &*file.cast::<ShimFile>() };
    // SAFETY: `open` gives SQLite our methods only when the real open set the real methods,
    // which the real VFS keeps in static storage.
    let methods = unsafe { &*(*shim.real).pMethods };
    (shim.followed, shim.real, methods)
}

/// Runs `call` (the real operation) under the log's lock and logs `event` if it succeeded, so
/// that the log's order is the order in which the operations reached the operating system.
fn logged(call: impl FnOnce() -> c_int, event: impl FnOnce() -> Event) -> c_int {
    let mut log = log();
    let rc = call();
    if rc == ffi::SQLITE_OK {
        log.events.push(event());
    }
    rc
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: SQLite allocated `szOsFile` bytes at `file`: the header, then room for the real
    // file object (the header's size is a multiple of 8, so the real one stays aligned).
    let real_file = unsafe { file.cast::<u8>().add(size_of::<ShimFile>()) }.cast();
    let Some(real_open) = methods.xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: the real VFS opens its own file object in the space SQLite gave for it, with the
    // arguments SQLite gave the shim.
    let rc = unsafe { real_open(unix, name, real_file, flags, out_flags) };
    let kinds = ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL;
    let followed = (rc == ffi::SQLITE_OK && !name.is_null() && flags & kinds != 0)
        // SAFETY: a non-null name is a NUL-terminated path that lives while the file is open.
        .then(|| unsafe { CStr::from_ptr(name) }.to_str().ok())
        .flatten()
        .map(|path| log().follow(path));
    // SQLite calls xClose whenever `pMethods` is set after xOpen, failed or not: so the shim's
    // methods are set exactly when the real ones are.
    // SAFETY: `real_file` was just handed to the real xOpen, which always sets `pMethods`.
    let opened = !unsafe { (*real_file).pMethods }.is_null();
    let header = ShimFile {
        base: ffi::sqlite3_file {
            pMethods: if opened { &METHODS } else { ptr::null() },
        },
        real: real_file,
        followed,
    };
    // SAFETY: `file` is SQLite's allocation for this file, large and aligned enough for the
    // header (see `install`), and not initialised yet.
    unsafe { file.cast::<ShimFile>().write(header) };
    rc
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes only files it opened through the shim.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file; SQLite never uses the file after xClose.
    methods
        .xClose
        .map_or(ffi::SQLITE_OK, |call| unsafe { call(real) })
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buffer: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call and buffer to the real file.
    methods.xRead.map_or(ffi::SQLITE_IOERR_READ, |call| unsafe {
        call(real, buffer, amount, offset)
    })
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (followed, real, methods) = unsafe { parts(file) };
    let Some(call) = methods.xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: passes SQLite's call and data to the real file.
    let real_write = || unsafe { call(real, data, amount, offset) };
    let Some(Followed { file, handle }) = followed else {
        return real_write();
    };
    logged(real_write, || Event::Write {
        file,
        handle,
        offset: u64::try_from(offset).expect("a file offset is positive"),
        // SAFETY: SQLite passes `amount` readable bytes at `data` for the length of the call.
        bytes: unsafe {
            std::slice::from_raw_parts(data.cast::<u8>(), usize::try_from(amount).unwrap_or(0))
        }
        .to_vec(),
    })
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: an open file of the shim's.
    let (followed, real, methods) = unsafe { parts(file) };
    let Some(call) = methods.xTruncate else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    // SAFETY: passes SQLite's call to the real file.
    let real_truncate = || unsafe { call(real, size) };
    let Some(Followed { file, .. }) = followed else {
        return real_truncate();
    };
    logged(real_truncate, || Event::Truncate {
        file,
        size: u64::try_from(size).expect("a file size is positive"),
    })
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: an open file of the shim's.
    let (followed, real, methods) = unsafe { parts(file) };
    let Some(call) = methods.xSync else {
        return ffi::SQLITE_IOERR_FSYNC;
    };
    // SAFETY: passes SQLite's call to the real file.
    let real_sync = || unsafe { call(real, flags) };
    let Some(Followed { file, handle }) = followed else {
        return real_sync();
    };
    logged(real_sync, || Event::Sync { file, handle })
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call and out-pointer to the real file.
    methods
        .xFileSize
        .map_or(ffi::SQLITE_IOERR_FSTAT, |call| unsafe { call(real, size) })
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file.
    methods
        .xLock
        .map_or(ffi::SQLITE_IOERR_LOCK, |call| unsafe { call(real, level) })
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file.
    methods
        .xUnlock
        .map_or(ffi::SQLITE_IOERR_UNLOCK, |call| unsafe {
            call(real, level)
        })
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call and out-pointer to the real file.
    methods
        .xCheckReservedLock
        .map_or(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, |call| unsafe {
            call(real, out)
        })
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call and argument to the real file.
    methods
        .xFileControl
        .map_or(ffi::SQLITE_NOTFOUND, |call| unsafe {
            call(real, op, argument)
        })
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file.
    methods
        .xSectorSize
        .map_or(4096, |call| unsafe { call(real) })
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file.
    methods
        .xDeviceCharacteristics
        .map_or(0, |call| unsafe { call(real) })
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call and out-pointer to the real file.
    methods
        .xShmMap
        .map_or(ffi::SQLITE_IOERR_SHMMAP, |call| unsafe {
            call(real, region, size, extend, out)
        })
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    count: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file.
    methods
        .xShmLock
        .map_or(ffi::SQLITE_IOERR_SHMLOCK, |call| unsafe {
            call(real, offset, count, flags)
        })
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    if let Some(call) = methods.xShmBarrier {
        // SAFETY: passes SQLite's call to the real file.
        unsafe { call(real) }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    // SAFETY: passes SQLite's call to the real file.
    methods
        .xShmUnmap
        .map_or(ffi::SQLITE_OK, |call| unsafe { call(real, delete) })
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    match methods.xFetch {
        // SAFETY: passes SQLite's call and out-pointer to the real file.
        Some(call) if methods.iVersion >= 3 => unsafe { call(real, offset, amount, out) },
        _ => {
            // No memory map: SQLite reads the page with xRead instead.
            // SAFETY: SQLite passes a valid out-pointer.
            unsafe { *out = ptr::null_mut() };
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: an open file of the shim's.
    let (_, real, methods) = unsafe { parts(file) };
    match methods.xUnfetch {
        // SAFETY: passes SQLite's call to the real file, which mapped `page`.
        Some(call) if methods.iVersion >= 3 => unsafe { call(real, offset, page) },
        _ => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_directory: c_int,
) -> c_int {
    let (unix, methods) = real();
    let Some(call) = methods.xDelete else {
        return ffi::SQLITE_IOERR_DELETE;
    };
    // SAFETY: passes SQLite's call and path to the real VFS.
    let real_delete = || unsafe { call(unix, name, sync_directory) };
    // SAFETY: SQLite passes a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(name) }.to_str().ok();
    let Some(file) = path.and_then(|path| log().find(path)) else {
        return real_delete();
    };
    logged(real_delete, || Event::Delete { file })
}

unsafe extern "C" fn access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS.
    methods
        .xAccess
        .map_or(ffi::SQLITE_IOERR_ACCESS, |call| unsafe {
            call(unix, name, flags, out)
        })
}

unsafe extern "C" fn full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call and buffer (at least `mxPathname` bytes, the real VFS's) on.
    methods
        .xFullPathname
        .map_or(ffi::SQLITE_CANTOPEN, |call| unsafe {
            call(unix, name, size, out)
        })
}

unsafe extern "C" fn dl_open(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS.
    methods
        .xDlOpen
        .map_or(ptr::null_mut(), |call| unsafe { call(unix, name) })
}

unsafe extern "C" fn dl_error(_vfs: *mut ffi::sqlite3_vfs, size: c_int, out: *mut c_char) {
    let (unix, methods) = real();
    if let Some(call) = methods.xDlError {
        // SAFETY: passes SQLite's call and buffer to the real VFS.
        unsafe { call(unix, size, out) }
    }
}

type Symbol = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn dl_sym(
    _vfs: *mut ffi::sqlite3_vfs,
    library: *mut c_void,
    symbol: *const c_char,
) -> Option<Symbol> {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS, which opened `library`.
    methods
        .xDlSym
        .and_then(|call| unsafe { call(unix, library, symbol) })
}

unsafe extern "C" fn dl_close(_vfs: *mut ffi::sqlite3_vfs, library: *mut c_void) {
    let (unix, methods) = real();
    if let Some(call) = methods.xDlClose {
        // SAFETY: passes SQLite's call to the real VFS, which opened `library`.
        unsafe { call(unix, library) }
    }
}

unsafe extern "C" fn randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call and buffer to the real VFS.
    methods
        .xRandomness
        .map_or(0, |call| unsafe { call(unix, size, out) })
}

unsafe extern "C" fn sleep(_vfs: *mut ffi::sqlite3_vfs, microseconds: c_int) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS.
    methods
        .xSleep
        .map_or(0, |call| unsafe { call(unix, microseconds) })
}

unsafe extern "C" fn current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call and out-pointer to the real VFS.
    methods
        .xCurrentTime
        .map_or(ffi::SQLITE_ERROR, |call| unsafe { call(unix, out) })
}

unsafe extern "C" fn get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call and buffer to the real VFS.
    methods
        .xGetLastError
        .map_or(0, |call| unsafe { call(unix, size, out) })
}

unsafe extern "C" fn current_time_int64(
    _vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call and out-pointer to the real VFS.
    methods
        .xCurrentTimeInt64
        .map_or(ffi::SQLITE_ERROR, |call| unsafe { call(unix, out) })
}

unsafe extern "C" fn set_system_call(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    replacement: ffi::sqlite3_syscall_ptr,
) -> c_int {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS.
    methods
        .xSetSystemCall
        .map_or(ffi::SQLITE_NOTFOUND, |call| unsafe {
            call(unix, name, replacement)
        })
}

unsafe extern "C" fn get_system_call(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
) -> ffi::sqlite3_syscall_ptr {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS.
    methods
        .xGetSystemCall
        .and_then(|call| unsafe { call(unix, name) })
}

unsafe extern "C" fn next_system_call(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
) -> *const c_char {
    let (unix, methods) = real();
    // SAFETY: passes SQLite's call to the real VFS.
    methods
        .xNextSystemCall
        .map_or(ptr::null(), |call| unsafe { call(unix, name) })
}
