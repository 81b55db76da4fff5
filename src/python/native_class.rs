//! Python classes with Rust state, defined per interpreter (issue 32): heap types made by
//! `PyType_FromSpec` in the interpreter that uses them, so no type object is shared between
//! interpreters (a `#[pyclass]`'s one process-wide type object cannot be used from a
//! sub-interpreter with its own GIL). An instance is made at C level ([`new`]: `tp_alloc`,
//! no Python-level `__init__`, no closure objects), which keeps the request path as cheap
//! as pyo3's own classes.
//!
//! Layout of an instance: the object header, a pointer to its boxed Rust value (`T`, fixed
//! per class) and an optional Python object (the read-only member of a class that declares
//! one, e.g. `LogBuffer.name`). Methods and slots are plain `PyMethodDef`s / slot functions
//! through pyo3's trampolines (the thread counted as attached, errors restored) and get the
//! value with [`value`]; their bodies run inside [`catch_panic`], so a Rust panic raises a
//! `SystemError` rather than pyo3's `PanicException` (see there).
//!
//! The classes cannot be instantiated from Python (`tp_new` raises TypeError) nor
//! subclassed, so every instance a method receives was made by [`new`] with its class's `T`.

use std::ffi::{CStr, c_int, c_void};
use std::marker::PhantomData;

use pyo3::exceptions::{PySystemError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Runs the body of a function, method or slot Python calls into Rust (`what` names it),
/// turning a Rust panic into a `SystemError` carrying the panic message. Every such boundary
/// of mod_rwsgi runs its body in here: pyo3's trampolines would turn the panic into pyo3's
/// `PanicException` instead, whose type object is made once per process, in whichever
/// interpreter first needs it (pyo3 0.30.1 `src/panic.rs` defines it with
/// `pyo3_exception!`, whose `type_object_raw` keeps it in a `static PyOnceLock`,
/// `src/exceptions.rs`): inside a sub-interpreter with its own GIL that hands an object of
/// another interpreter to this one. `SystemError` is a static built-in type, valid in every
/// interpreter, and like any exception it reaches the application (or the request's error
/// log line).
pub(crate) fn catch_panic<R>(what: &str, body: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("panic from Rust code");
            Err(PySystemError::new_err(format!(
                "mod_rwsgi: internal error (Rust panic) in {what}: {message}"
            )))
        }
    }
}

/// The instance layout shared by every class made here.
#[repr(C)]
struct Instance {
    ob_base: ffi::PyObject,
    /// `Box<T>::into_raw`, or null until [`new`] sets it.
    value: *mut c_void,
    /// An owned reference or null (the member of classes that declare one).
    member: *mut ffi::PyObject,
}

/// Byte offset of [`Instance::member`], for a class's `PyMemberDef`.
pub(crate) const MEMBER_OFFSET: ffi::Py_ssize_t = std::mem::offset_of!(Instance, member) as _;

/// A `PyMethodDef`/`PyMemberDef` table in a `static` (CPython only reads it; the pointers in it
/// are to static strings and functions).
#[repr(transparent)]
pub(crate) struct Table<T, const N: usize>(pub [T; N]);
// SAFETY: the tables hold only pointers to 'static C strings and functions, never mutated.
unsafe impl<T, const N: usize> Sync for Table<T, N> {}

/// What a class is made of. `T` is the Rust value of its instances.
pub(crate) struct Spec<T> {
    pub name: &'static CStr,
    pub doc: &'static CStr,
    /// Ends with a zeroed entry.
    pub methods: Option<&'static [ffi::PyMethodDef]>,
    /// Ends with a zeroed entry; offsets must be [`MEMBER_OFFSET`].
    pub members: Option<&'static [ffi::PyMemberDef]>,
    /// Extra slots (`tp_call`, `tp_iter`, `tp_iternext` ...).
    pub slots: fn() -> Vec<ffi::PyType_Slot>,
    pub _value: PhantomData<fn(T)>,
}

// SAFETY: as for `Table`: pointers to static, immutable data only.
unsafe impl<T> Sync for Spec<T> {}

/// Defines the class of `spec` in the current interpreter.
pub(crate) fn define<'py, T: Send + Sync + 'static>(
    py: Python<'py>,
    spec: &'static Spec<T>,
) -> PyResult<Bound<'py, PyType>> {
    let mut slots: Vec<ffi::PyType_Slot> = vec![
        ffi::PyType_Slot {
            slot: ffi::Py_tp_dealloc,
            pfunc: dealloc::<T> as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_new,
            pfunc: refuse_new as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: spec.doc.as_ptr() as *mut c_void,
        },
    ];
    if let Some(methods) = spec.methods {
        slots.push(ffi::PyType_Slot {
            slot: ffi::Py_tp_methods,
            pfunc: methods.as_ptr() as *mut c_void,
        });
    }
    if let Some(members) = spec.members {
        slots.push(ffi::PyType_Slot {
            slot: ffi::Py_tp_members,
            pfunc: members.as_ptr() as *mut c_void,
        });
    }
    slots.extend((spec.slots)());
    slots.push(ffi::PyType_Slot {
        slot: 0,
        pfunc: std::ptr::null_mut(),
    });
    let mut type_spec = ffi::PyType_Spec {
        name: spec.name.as_ptr(),
        basicsize: std::mem::size_of::<Instance>() as c_int,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: attached (token); the spec and slots are valid for the call (CPython copies
    // them; the method and member tables it keeps pointers to are 'static).
    unsafe {
        let ty = ffi::PyType_FromSpec(&mut type_spec);
        Ok(Bound::from_owned_ptr_or_err(py, ty)?.cast_into_unchecked())
    }
}

/// A new instance of `class` (made by [`define`] with this `T`) owning `value`, and holding
/// `member` (the class's member, if it declares one).
pub(crate) fn new<'py, T: Send + Sync + 'static>(
    class: &Bound<'py, PyType>,
    value: T,
    member: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = class.py();
    let ty = class.as_type_ptr();
    // SAFETY: attached; `ty` is a live heap type of the `Instance` layout (made by `define`),
    // whose tp_alloc returns a zeroed instance (value and member null) or null with an error
    // set. The value and member are written before anything else sees the object.
    unsafe {
        let alloc = (*ty).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        let obj = alloc(ty, 0);
        let obj = Bound::from_owned_ptr_or_err(py, obj)?;
        let inst = obj.as_ptr().cast::<Instance>();
        (*inst).value = Box::into_raw(Box::new(value)).cast();
        if let Some(member) = member {
            (*inst).member = member.into_ptr();
        }
        Ok(obj)
    }
}

/// The Rust value of `slf`.
///
/// # Safety
/// `slf` is a live instance of a class made by [`define`] with this `T` (true of the `self`
/// CPython passes to that class's methods and slots: the class has no subclasses and cannot
/// be instantiated otherwise), and the returned reference does not outlive it.
pub(crate) unsafe fn value<'a, T>(slf: *mut ffi::PyObject) -> PyResult<&'a T> {
    // SAFETY: caller's contract: `slf` has the `Instance` layout.
    let ptr = unsafe { (*slf.cast::<Instance>()).value };
    if ptr.is_null() {
        return Err(PyTypeError::new_err("object not initialised"));
    }
    // SAFETY: set by `new` from a `Box<T>`, freed only by `dealloc`.
    Ok(unsafe { &*ptr.cast::<T>() })
}

unsafe extern "C" fn refuse_new(
    _ty: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls tp_new attached; the message is a static C string.
    unsafe {
        ffi::PyErr_SetString(
            ffi::PyExc_TypeError,
            c"mod_wsgi objects cannot be created from Python".as_ptr(),
        );
    }
    std::ptr::null_mut()
}

/// `tp_dealloc`: drops the Rust value (which holds no Python object, so nothing here needs
/// pyo3's attached state), releases the member, frees the object and its type reference.
unsafe extern "C" fn dealloc<T>(slf: *mut ffi::PyObject) {
    // SAFETY: CPython calls tp_dealloc attached, once, with the last reference to an
    // instance of the `Instance` layout; its type is a heap type (PyType_FromSpec), which
    // each instance holds a reference to.
    unsafe {
        let inst = slf.cast::<Instance>();
        let value = std::mem::replace(&mut (*inst).value, std::ptr::null_mut());
        if !value.is_null() {
            let dropped =
                std::panic::catch_unwind(|| drop(Box::from_raw(value.cast::<T>()))).is_ok();
            if !dropped {
                // A panicking destructor: nothing sensible is left to do across the C frame.
                std::process::abort();
            }
        }
        let member = std::mem::replace(&mut (*inst).member, std::ptr::null_mut());
        if !member.is_null() {
            ffi::Py_DECREF(member);
        }
        let ty = ffi::Py_TYPE(slf);
        match (*ty).tp_free {
            Some(free) => free(slf.cast()),
            None => ffi::PyObject_Free(slf.cast()),
        }
        ffi::Py_DECREF(ty.cast());
    }
}

/// A `METH_FASTCALL | METH_KEYWORDS` method's arguments: at most `names.len()`, positional or
/// by those names; the rest `None`. `func` names the method in errors.
///
/// # Safety
/// `args`, `nargs`, `kwnames` are what CPython passed to a fastcall method.
pub(crate) unsafe fn fastcall_args<'py, const N: usize>(
    py: Python<'py>,
    func: &str,
    names: [&str; N],
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    let mut out: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    let nargs = nargs as usize;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: kwnames is a tuple (CPython's fastcall convention).
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    };
    if nargs > N {
        return Err(PyTypeError::new_err(format!(
            "{func}() takes at most {N} argument{} ({} given)",
            if N == 1 { "" } else { "s" },
            nargs + nkw
        )));
    }
    for (i, slot) in out.iter_mut().enumerate().take(nargs) {
        // SAFETY: args holds nargs borrowed references.
        *slot = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) });
    }
    for k in 0..nkw {
        // SAFETY: kwnames is a tuple of nkw str; their values follow the positional ones.
        let (name, value) = unsafe {
            (
                Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, k as _)),
                Bound::from_borrowed_ptr(py, *args.add(nargs + k)),
            )
        };
        let name = name.str()?.to_cow()?.into_owned();
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Err(PyTypeError::new_err(format!(
                "{func}() got an unexpected keyword argument '{name}'"
            )));
        };
        if out[i].is_some() {
            return Err(PyTypeError::new_err(format!(
                "{func}() got multiple values for argument '{name}'"
            )));
        }
        out[i] = Some(value);
    }
    Ok(out)
}

/// A `PyMethodDef` for a fastcall method `$f` (`unsafe fn(Python, slf, args, nargs,
/// kwnames) -> PyResult<*mut PyObject>`), through pyo3's trampoline.
macro_rules! method {
    ($name:literal, $f:path, $doc:literal) => {
        pyo3::ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: pyo3::ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
                    fastcall_cfunction_with_keywords,
                    $f
                ),
            },
            ml_flags: pyo3::ffi::METH_FASTCALL | pyo3::ffi::METH_KEYWORDS,
            ml_doc: $doc.as_ptr(),
        }
    };
}
pub(crate) use method;

/// Defines `unsafe fn $f`, a fastcall method for [`method!`] of the class whose instances
/// hold a `$T`: it takes at most the named arguments (positional or by those names; each an
/// `Option<Bound<PyAny>>`, `None` when not given; `$name` names the method in errors), binds
/// the token, the instance's value and the arguments, and runs `$body`, which returns
/// `PyResult<*mut ffi::PyObject>` (a new reference), inside [`catch_panic`]. Doc comments go
/// on the function.
macro_rules! fastcall_method {
    ($(#[$meta:meta])* fn $f:ident($py:ident, $value:ident: &$T:ty $(, $arg:ident)*) $name:literal $body:block) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// The fastcall method contract of `native_class::method!` on an instance of its class.
        unsafe fn $f(
            $py: pyo3::Python<'_>,
            slf: *mut pyo3::ffi::PyObject,
            args: *const *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
            kwnames: *mut pyo3::ffi::PyObject,
        ) -> pyo3::PyResult<*mut pyo3::ffi::PyObject> {
            native_class::catch_panic($name, || {
                // SAFETY: the caller's contract: CPython passes an instance of the class (made
                // by `new` with this value type: the class has no subclasses) and its fastcall
                // arguments.
                let ([$($arg),*], $value) = unsafe {
                    (
                        native_class::fastcall_args(
                            $py,
                            $name,
                            [$(stringify!($arg)),*],
                            args,
                            nargs,
                            kwnames,
                        )?,
                        native_class::value::<$T>(slf)?,
                    )
                };
                $body
            })
        }
    };
}
pub(crate) use fastcall_method;

/// No extra slots.
pub(crate) fn no_slots() -> Vec<ffi::PyType_Slot> {
    Vec::new()
}

/// The zeroed entry that ends a method table.
pub(crate) const METHODS_END: ffi::PyMethodDef = ffi::PyMethodDef::zeroed();
