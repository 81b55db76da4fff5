//! `wsgi.file_wrapper(filelike, blksize=8192)` (`mod_wsgi.FileWrapper`): iterates `filelike.read(blksize)` chunks and
//! forwards `close()`. When an application returns one before anything was written and the
//! file has the fd of a regular file, the driver hands the fd to `RequestIo::send_file`
//! (from `tell()`, for min(Content-Length, size - offset) bytes), falling back to iteration.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

/// The class, defined in each interpreter (a Python class, not a `#[pyclass]` whose one type
/// object pyo3 shares between all interpreters of the process; see `interp_state.rs`).
/// `filelike` and `blksize` are read-only, as mod_wsgi's.
const FILE_WRAPPER_PY: &std::ffi::CStr = cr#"
class FileWrapper:
    """wsgi.file_wrapper(filelike, blksize=8192): iterates filelike.read(blksize) chunks."""

    __slots__ = ("_filelike", "_blksize")

    def __init__(self, filelike, blksize=8192):
        try:
            blksize = blksize.__index__()
        except AttributeError:
            raise TypeError("file_wrapper blksize must be an integer, not %s"
                            % type(blksize).__name__) from None
        if blksize <= 0:
            raise ValueError("file_wrapper blksize must be a positive integer, not %d" % blksize)
        if not hasattr(filelike, "read"):
            raise TypeError("file_wrapper needs a file-like object with a read() method, not %s"
                            % type(filelike).__name__)
        self._filelike = filelike
        self._blksize = blksize

    @property
    def filelike(self):
        return self._filelike

    @property
    def blksize(self):
        return self._blksize

    def __iter__(self):
        return self

    def __next__(self):
        data = self._filelike.read(self._blksize)
        if len(data) > 0:
            return data
        raise StopIteration

    def close(self):
        if hasattr(self._filelike, "close"):
            self._filelike.close()
"#;

/// Defines `mod_wsgi.FileWrapper` in the current interpreter.
pub(crate) fn define(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let globals = PyDict::new(py);
    globals.set_item("__name__", "mod_wsgi")?;
    py.run(FILE_WRAPPER_PY, Some(&globals), None)?;
    Ok(globals
        .get_item("FileWrapper")?
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("FileWrapper not defined"))?
        .cast_into::<PyType>()?)
}

/// What the driver needs for `send_file`: the fd, where to start, and the file's size.
pub(crate) struct FileSpan {
    pub fd: i32,
    pub offset: u64,
    pub size: u64,
}

/// The fd/offset/size of a FileWrapper's `filelike` if it is a regular file we can hand out;
/// None for anything else (sockets, pipes, BytesIO, errors), which then goes through
/// iteration.
pub(crate) fn file_span(wrapper: &Bound<'_, PyAny>) -> Option<FileSpan> {
    let filelike = wrapper.getattr("filelike").ok()?;
    let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
    let size = regular_file_size(fd)?;
    let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
    Some(FileSpan { fd, offset, size })
}

/// Size of the file behind `fd` if it is a regular file.
fn regular_file_size(fd: i32) -> Option<u64> {
    // SAFETY: fstat only writes into the zero-initialised stat buffer we own; an invalid or
    // closed fd makes it fail with EBADF, which we treat as "not a regular file".
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return None;
        }
        st
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    u64::try_from(st.st_size).ok()
}
