"""What building mod_rwsgi needs, checked before cargo runs (setup.py calls `check()`):
cargo >= 1.85, apxs (Apache's headers), libclang (bindgen), a C compiler, and a Python with
a shared libpython and its headers. Each missing piece is one line saying how to get it.

Run as a script (`python3 build_support/check_build_env.py`) it prints those lines and
exits 1 when something is missing.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

MIN_CARGO = (1, 85)


def find_cargo(env):
    """cargo's path: $CARGO, cargo on PATH, else rustup's ~/.cargo/bin/cargo (a PEP 517 build
    run by `sudo pip` may have lost ~/.cargo/bin from PATH). None when there is none."""
    if env.get("CARGO"):
        return shutil.which(env["CARGO"], path=env.get("PATH"))
    found = shutil.which("cargo", path=env.get("PATH", os.defpath))
    if found:
        return found
    home = env.get("CARGO_HOME") or os.path.join(env.get("HOME", "/nonexistent"), ".cargo")
    rustup_cargo = os.path.join(home, "bin", "cargo")
    return rustup_cargo if os.access(rustup_cargo, os.X_OK) else None


def cargo_problem(cargo):
    if cargo is None:
        return (
            "cargo (Rust >= %d.%d) not found on PATH or in ~/.cargo/bin: install Rust with "
            "rustup (https://rustup.rs), or set CARGO=/path/to/cargo" % MIN_CARGO
        )
    try:
        out = subprocess.run([cargo, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        return f"cannot run {cargo} --version: {e}"
    m = re.search(r"(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_CARGO:
        return (
            "%s is %s; mod_rwsgi needs Rust >= %d.%d (rustup update, or Debian bookworm's "
            "cargo-web)" % (cargo, out.strip(), *MIN_CARGO)
        )
    return None


def find_apxs(env):
    if env.get("APXS"):
        return shutil.which(env["APXS"], path=env.get("PATH"))
    for name in ("apxs", "apxs2"):
        found = shutil.which(name, path=env.get("PATH", os.defpath))
        if found:
            return found
    return None


def apxs_problem(apxs, env):
    if apxs is None:
        where = f"APXS={env['APXS']} is not an executable" if env.get("APXS") else "apxs not found on PATH"
        return (
            f"{where}: Apache's development files are needed (Debian/Ubuntu: apt-get install "
            "apache2-dev; Fedora: dnf install httpd-devel), or set APXS=/path/to/apxs"
        )
    try:
        subprocess.run([apxs, "-q", "INCLUDEDIR"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"{apxs} -q INCLUDEDIR failed ({e}): is Apache's development package complete?"
    return None


def libclang_problem(env):
    """bindgen loads libclang at build time: LIBCLANG_PATH, llvm-config's libdir, or the usual
    system directories."""
    pattern = "libclang*.so*"
    if env.get("LIBCLANG_PATH"):
        if glob.glob(os.path.join(env["LIBCLANG_PATH"], pattern)):
            return None
        return f"LIBCLANG_PATH={env['LIBCLANG_PATH']} has no {pattern} (bindgen needs libclang)"
    dirs = []
    llvm_config = shutil.which("llvm-config", path=env.get("PATH", os.defpath))
    if llvm_config:
        try:
            dirs.append(subprocess.run([llvm_config, "--libdir"], capture_output=True, text=True).stdout.strip())
        except OSError:
            pass
    dirs += glob.glob("/usr/lib/llvm-*/lib") + glob.glob("/usr/lib*/llvm*/lib*")
    dirs += ["/usr/lib", "/usr/lib64", "/usr/local/lib"] + glob.glob("/usr/lib/*-linux-gnu")
    if any(glob.glob(os.path.join(d, pattern)) for d in dirs if d):
        return None
    return (
        "libclang not found (bindgen needs it to read Apache's headers): Debian/Ubuntu: "
        "apt-get install libclang-dev clang; Fedora: dnf install clang-devel; or set "
        "LIBCLANG_PATH=/dir/with/libclang.so"
    )


def c_compiler_problem(env):
    cc = env.get("CC") or "cc"
    if shutil.which(cc.split()[0], path=env.get("PATH", os.defpath)):
        return None
    return f"no C compiler ({cc}) on PATH: Debian/Ubuntu: apt-get install build-essential"


def python_problems():
    problems = []
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        problems.append(
            f"{sys.executable} has no shared libpython, which an Apache module embedding Python "
            "needs (Debian: apt-get install libpython3-dev; pyenv: "
            "PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        problems.append(
            f"no Python.h in {include}: Python's headers are needed (Debian: apt-get install "
            "python3-dev)"
        )
    return problems


def check(env):
    """The problems (one line each) and the environment changes that make cargo and apxs
    findable by the build (PATH with ~/.cargo/bin, APXS)."""
    problems = []
    updates = {}
    cargo = find_cargo(env)
    problem = cargo_problem(cargo)
    if problem:
        problems.append(problem)
    else:
        # setuptools-rust runs `cargo` (or $CARGO) and `rustc` from PATH: rustup puts both
        # in one directory.
        path = env.get("PATH", os.defpath)
        if not env.get("CARGO") and shutil.which("cargo", path=path) != cargo or not shutil.which(
            "rustc", path=path
        ):
            updates["PATH"] = os.path.dirname(cargo) + os.pathsep + path
    apxs = find_apxs(env)
    problem = apxs_problem(apxs, env)
    if problem:
        problems.append(problem)
    elif not env.get("APXS"):
        updates["APXS"] = apxs
    for problem in (libclang_problem(env), c_compiler_problem(env)):
        if problem:
            problems.append(problem)
    problems += python_problems()
    return problems, updates


def main():
    problems, _ = check(dict(os.environ))
    for problem in problems:
        print(f"mod_rwsgi: cannot build: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
