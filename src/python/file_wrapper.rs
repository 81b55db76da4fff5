//! `wsgi.file_wrapper(filelike, blksize=8192)`: iterates `filelike.read(blksize)` chunks and
//! forwards `close()`. When an application returns one before anything was written and the
//! file has the fd of a regular file, the driver hands the fd to `RequestIo::send_file`
//! (from `tell()`, for min(Content-Length, size - offset) bytes), falling back to iteration.

use pyo3::prelude::*;

use super::log_object::type_name;

#[pyclass(frozen, module = "mod_wsgi", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    #[pyo3(get)]
    filelike: Py<PyAny>,
    #[pyo3(get)]
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Bound<'_, PyAny>, blksize: isize) -> PyResult<FileWrapper> {
        let blksize = usize::try_from(blksize)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "file_wrapper blksize must be a positive integer, not {blksize}"
                ))
            })?;
        if !filelike.hasattr("read")? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "file_wrapper needs a file-like object with a read() method, not {}",
                type_name(&filelike)
            )));
        }
        Ok(FileWrapper {
            filelike: filelike.unbind(),
            blksize,
        })
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

/// What the driver needs for `send_file`: the fd, where to start, and the file's size.
pub(crate) struct FileSpan {
    pub fd: i32,
    pub offset: u64,
    pub size: u64,
}

impl FileWrapper {
    /// The fd/offset/size of `filelike` if it is a regular file we can hand out; None for
    /// anything else (sockets, pipes, BytesIO, errors), which then goes through iteration.
    pub(crate) fn file_span(&self, py: Python<'_>) -> Option<FileSpan> {
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
        let size = regular_file_size(fd)?;
        let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
        Some(FileSpan { fd, offset, size })
    }
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
