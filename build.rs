//! Build script: finds Apache's and APR's headers through `apxs` and `apr-1-config`
//! (never a hard-coded path), generates the raw bindings with bindgen, and records which
//! Python the module embeds.

#[path = "build_support/link_flags.rs"]
mod link_flags;
#[path = "build_support/rpath.rs"]
mod rpath;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "mod_rwsgi build: cannot run `{program} {}`: {e}. Install apache2-dev \
             (apt-get install apache2-dev) or set APXS=/path/to/apxs.",
                args.join(" ")
            )
        });
    if !out.status.success() {
        panic!(
            "mod_rwsgi build: `{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `-I` and `-D` flags of a config tool's output.
fn split_flags(flags: &str) -> Vec<String> {
    flags.split_whitespace().map(str::to_string).collect()
}

fn main() {
    println!("cargo:rerun-if-changed=apache/wrapper.h");
    println!("cargo:rerun-if-env-changed=APXS");
    println!("cargo:rerun-if-env-changed=APR_CONFIG");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    println!("cargo:rerun-if-env-changed=RWSGI_NO_RPATH");
    println!("cargo:rerun-if-env-changed=RWSGI_HOST_LIBPYTHON");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-changed=build_support/rpath.rs");
    println!("cargo:rerun-if-changed=build_support/link_flags.rs");

    // pyo3 leaves libpython out of a Python extension module: Apache could not load that.
    if env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some() {
        panic!(
            "mod_rwsgi build: PYO3_BUILD_EXTENSION_MODULE is set, which builds without \
             libpython; an Apache module must link libpython. Unset it (maturin and \
             setuptools-rust's PyO3 binding set it: package with setuptools-rust's \
             NoBinding, see pyproject.toml)"
        );
    }

    let apxs = env::var("APXS").unwrap_or_else(|_| "apxs".to_string());
    let httpd_include = tool_output(&apxs, &["-q", "INCLUDEDIR"]);
    let apr_config = env::var("APR_CONFIG").unwrap_or_else(|_| {
        let from_apxs = tool_output(&apxs, &["-q", "APR_CONFIG"]);
        if from_apxs.is_empty() {
            "apr-1-config".to_string()
        } else {
            from_apxs
        }
    });
    let mut clang_args = vec![format!("-I{httpd_include}")];
    clang_args.extend(split_flags(&tool_output(
        &apr_config,
        &["--includes", "--cppflags"],
    )));
    if let Ok(apu) = Command::new("apu-1-config").arg("--includes").output() {
        clang_args.extend(split_flags(&String::from_utf8_lossy(&apu.stdout)));
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("apache/wrapper.h")
        .clang_args(&clang_args)
        .allowlist_function("ap_.*|apr_.*|apu_.*|unixd_.*")
        .allowlist_type(
            "module_struct|command_rec|request_rec|server_rec|conn_rec|cmd_parms|process_rec|\
             ap_.*|apr_.*|authn_provider|authz_provider|authn_status|authz_status",
        )
        .allowlist_var(
            "MODULE_MAGIC_.*|RWSGI_.*|OK|DECLINED|DONE|HTTP_.*|APLOG_.*|RSRC_CONF|ACCESS_CONF|\
             OR_.*|GLOBAL_ONLY|NOT_IN_.*|AP_MPMQ_.*|AP_SQ_.*|APR_.*|REQUEST_.*|ap_unixd_config|\
             ap_listeners|ap_server_root|ap_runtime_dir|ap_server_conf|M_GET|M_POST|M_OPTIONS|\
             APR_HOOK_.*|AP_FILTER_.*|AP_REQ_.*|AP_AUTH_INTERNAL_.*|REMOTE_HOST",
        )
        .blocklist_function("apr_pool_.*debug.*|apr_.*_debug")
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .wrap_unsafe_ops(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("mod_rwsgi build: bindgen failed on apache/wrapper.h");
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("mod_rwsgi build: cannot write bindings.rs");

    // libpython: pyo3-ffi links it (DT_NEEDED).
    let py = pyo3_build_config::get();
    // `#[cfg(Py_GIL_DISABLED)]` and `#[cfg(Py_3_13)]` in this crate, as in pyo3's own.
    pyo3_build_config::use_pyo3_cfgs();
    if !py.shared() {
        panic!(
            "mod_rwsgi build: the Python at {} has no shared libpython; embedding needs one \
             (Debian: apt-get install libpython3-dev; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)",
            py.executable().unwrap_or("?")
        );
    }
    // The rpath points the .so at the LIBDIR of the very Python it was built against, where
    // the loader would not look by itself.
    let target = env::var("TARGET").unwrap_or_default();
    let no_rpath = env::var("RWSGI_NO_RPATH").ok();
    if let Some(lib_dir) = py.lib_dir() {
        if rpath::wants_rpath(Path::new(lib_dir), &target, no_rpath.as_deref()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        }
    }
    link_host_libpython(py);
    println!(
        "cargo:rustc-env=RWSGI_BUILD_PYTHON_VERSION={}.{}",
        py.version().major,
        py.version().minor
    );
    println!(
        "cargo:rustc-env=RWSGI_BUILD_PYTHON_EXECUTABLE={}",
        py.executable().unwrap_or("")
    );
}

/// How the daemon host `rwsgi-daemon` gets its libpython (issue 35, docs/PERFORMANCE.md):
/// statically, from the Python's own `libpython3.X.a`, into a non-PIE executable, when that
/// archive exists and links (a trial link with `cc`); else the shared libpython, as the
/// module, said in a build warning. Static and non-PIE, libpython's code and data need no
/// relocation at start (Debian's own `/usr/bin/python3` is built so): an exec'd daemon then
/// costs about the memory of a daemon forked from Apache, whose libpython Apache relocated.
/// The Python C API is exported (`--dynamic-list`) for extension modules (lib-dynload,
/// site-packages), nothing else. `RWSGI_HOST_LIBPYTHON=shared` forces the shared library.
fn link_host_libpython(py: &pyo3_build_config::InterpreterConfig) {
    const BIN: &str = "rwsgi-daemon";
    match static_libpython(py) {
        Ok(args) => {
            for arg in args {
                println!("cargo:rustc-link-arg-bin={BIN}={arg}");
            }
            println!("cargo:rustc-env=RWSGI_HOST_LIBPYTHON_LINK=static");
        }
        Err(why) => {
            println!(
                "cargo:warning=mod_rwsgi build: {BIN} links the shared libpython ({why}); an \
                 exec'd daemon then costs about 1.5 MiB more memory than a forked one"
            );
            // For tests/daemon_host.rs: why the host has the shared libpython.
            println!("cargo:rustc-env=RWSGI_HOST_LIBPYTHON_LINK=shared: {why}");
        }
    }
}

/// The link arguments of a static libpython for the daemon host, or why there are none.
fn static_libpython(py: &pyo3_build_config::InterpreterConfig) -> Result<Vec<String>, String> {
    if env::var("RWSGI_HOST_LIBPYTHON").is_ok_and(|v| v == "shared") {
        return Err("RWSGI_HOST_LIBPYTHON=shared".into());
    }
    if env::var("TARGET").unwrap_or_default() != env::var("HOST").unwrap_or_default() {
        return Err("cross-compiling".into());
    }
    let python = py
        .executable()
        .ok_or("no Python executable is known to pyo3")?;
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig as s\n\
             v = lambda k: s.get_config_var(k) or ''\n\
             print(v('LIBPL')); print(v('LIBRARY'))\n\
             print(' '.join([v('LIBS'), v('SYSLIBS'), v('MODLIBS')]))",
        ])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let (Some(libpl), Some(library), Some(libs)) = (lines.next(), lines.next(), lines.next())
    else {
        return Err(format!("{python} did not tell its LIBPL and LIBRARY"));
    };
    let archive = Path::new(libpl).join(library);
    if library.is_empty() || !archive.is_file() {
        return Err(format!(
            "{python} has no static libpython '{}' (Debian: libpython3.X-dev has it)",
            archive.display()
        ));
    }
    // Split as the shell would, link flags only, each once (build_support/link_flags.rs).
    let (extra, dropped) = link_flags::python_link_libs(libs);
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let symbols = out_dir.join("python-api.list");
    std::fs::write(&symbols, "{\n  Py*;\n  _Py*;\n};\n")
        .map_err(|e| format!("cannot write {}: {e}", symbols.display()))?;
    let mut args = vec![
        "-no-pie".to_string(),
        // Lazy binding, as Debian's /usr/bin/python3 and libpython3.X.so have: rustc's
        // default `-z now` resolves every libc/libm function libpython imports at start
        // (their IFUNC resolvers touch about 0.1 MiB of libm and libc code per daemon).
        "-Wl,-z,lazy".to_string(),
        "-Wl,--whole-archive".to_string(),
        archive.display().to_string(),
        "-Wl,--no-whole-archive".to_string(),
        format!("-Wl,--dynamic-list={}", symbols.display()),
    ];
    args.extend(extra);
    // A trial link of a program that starts Python, with exactly these arguments.
    let trial = out_dir.join("static-libpython-trial.c");
    std::fs::write(
        &trial,
        "extern void Py_Initialize(void);\nint main(void) { Py_Initialize(); return 0; }\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", trial.display()))?;
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .arg(&trial)
        .arg("-o")
        .arg(out_dir.join("static-libpython-trial"))
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let left_out = if dropped.is_empty() {
            String::new()
        } else {
            format!(
                " (left out of its LIBS/SYSLIBS/MODLIBS as no link flags: {:?})",
                dropped
            )
        };
        return Err(format!(
            "'{}' does not link{left_out}: {}",
            archive.display(),
            err.lines().take(3).collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(args)
}
