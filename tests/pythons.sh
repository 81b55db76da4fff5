#!/usr/bin/env bash
# `make test-pythons`: builds mod_rwsgi and runs a subset of the real-Apache tests inside
# debootstrap'd Debian chroots, each with its own Apache (apache2, apache2-dev) and its own
# Python (python3.X-dev), with the host's Rust toolchain bind-mounted read-only.
#
#   tests/pythons.sh                  every target of RWSGI_PYTHONS
#   RWSGI_PYTHONS="sid:3.14" tests/pythons.sh
#   tests/pythons.sh --chroots-only   only make (or check) the chroots
#   RWSGI_TEST_FILES=asgi RWSGI_TEST_FILTER=NAME tests/pythons.sh   only the tests of those
#                                     files whose name contains NAME (no unit tests)
#   RWSGI_OTHER_PYTHONS="3.15" RWSGI_PYTHONS=sid:3.14 RWSGI_TEST_FILES=daemon_host \
#     RWSGI_TEST_FILTER=venvs_of_other_pythons tests/pythons.sh
#                                     issue 35's test: one Apache with the module for 3.14
#                                     and daemon groups on venvs of the other Pythons, each
#                                     with mod_rwsgi pip-installed from this checkout
#                                     (tests/daemon_host.rs; slow: a pip build per Python)
#   tests/pythons.sh --bench-owngil   bench/owngil.py (WSGIPerInterpreterGIL, 3.12+) in the
#                                     first target of RWSGI_PYTHONS (`make bench-owngil`)
#   tests/pythons.sh --stop-loop [N]  tests/apache_stop_loop.sh (Apache's forced-stop crash,
#                                     with and without mod_rwsgi; N stops per variant) in
#                                     the first target of RWSGI_PYTHONS
#   tests/pythons.sh --is-forced-stop-crash TRACE
#                                     whether gdb's trace of a core (as report_cores reads
#                                     it) is that crash (tests/harness.rs)
#
# Chroots live in build/chroots/<suite>, kept between runs and made again when their
# package list or mirror changes (the .rwsgi-stamp file names both). Each run happens in
# its own mount and PID namespace (unshare): /proc, /sys, /dev and the toolchain are
# mounted only there, so they vanish with the namespace even when a run is killed, and no
# process of a run outlives it. Network: the Debian mirror apt uses on this machine, PyPI
# (the test venv) and crates.io (cargo).
set -euo pipefail

# suite:python targets: Debian's python3.X packages, and X.Yt, a free-threaded CPython
# (--disable-gil) built in the chroot from Debian's python3.X source package (its build
# dependencies are installed when it first runs). A chroot's packages are those of all its
# suite's python3.X targets here, whichever RWSGI_PYTHONS picks.
# (pyo3 0.30 builds for free-threaded 3.14t and later, not 3.13t.)
ALL_TARGETS="trixie:3.13 sid:3.14 sid:3.15 sid:3.14t"
# Pythons a chroot has besides its targets' (python3.X-dev and -venv): the venvs of the daemon
# groups of issue 35's test (RWSGI_OTHER_PYTHONS) are made with them.
VENV_PYTHONS="sid:3.13"
# What runs by default. A Python whose release level is not "final" (alpha, beta,
# candidate) may fail without failing the whole run; its result is printed all the same.
RWSGI_PYTHONS=${RWSGI_PYTHONS:-"trixie:3.13 sid:3.14 sid:3.15"}
# Issue 35's three-Python test (tests/daemon_host.rs, venvs_of_other_pythons...) runs in this
# target's default run, after its other tests: the module for that target's Python, and daemon
# groups on venvs of these Pythons, each with mod_rwsgi pip-installed from this checkout.
OTHER_PYTHONS_TARGET="sid:3.14"
OTHER_PYTHONS_DEFAULT="3.13 3.15"
# Bounds, in seconds: making one chroot, and one build-and-test run inside it (the target
# with the three-Python test gets longer: its two pip builds of mod_rwsgi).
BOOTSTRAP_TIMEOUT=${RWSGI_BOOTSTRAP_TIMEOUT:-1200}
RUN_TIMEOUT=${RWSGI_RUN_TIMEOUT:-1500}
OTHER_PYTHONS_RUN_TIMEOUT=${RWSGI_RUN_TIMEOUT:-2700}

# What every chroot needs besides python3.X-dev and python3.X-venv: the build (a C
# compiler for the shim, libclang for bindgen, apxs) and what the tests use.
BASE_PACKAGES="apache2 apache2-dev build-essential clang libclang-dev ca-certificates iproute2 procps"
# What building CPython from its Debian source package needs (X.Yt targets).
CPYTHON_BUILD_PACKAGES="dpkg-dev zlib1g-dev libffi-dev libssl-dev libbz2-dev liblzma-dev libsqlite3-dev"

# What runs in a chroot: the unit tests (--lib: they start the embedded Python too), whole
# integration test files, then single tests by name.
# tests/pyhost.rs stops Apache with graceful-stop: a forced stop can crash a child inside
# Apache's event MPM itself (README, "Python versions").
TEST_FILES=${RWSGI_TEST_FILES:-"daemon_mode embedded_mode pep3333 webware pyhost asgi asgi_websocket subinterpreters"}
TEST_SINGLE="lifecycle:touching_the_script_under_load_fails_no_request conf_errors:free_threading"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHROOTS=$ROOT/build/chroots
TOOLCHAIN_IN_CHROOT=/opt/rust-toolchain
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CORE_DIR_IN_CHROOT=/tmp/rwsgi-cores
HOST_CA_BUNDLE=${SSL_CERT_FILE:-$CA_BUNDLE}

log() { printf 'test-pythons: %s\n' "$*" >&2; }

# The Debian mirror of this machine's apt sources (deb822 or one-line format).
debian_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

packages_for() { # suite -> the package list of its chroot (all its Pythons)
    local suite=$1 pkgs=$BASE_PACKAGES target ver
    for target in $ALL_TARGETS $VENV_PYTHONS; do
        [ "${target%%:*}" = "$suite" ] || continue
        ver=${target#*:}
        case $ver in
        *t) ;;
        *) pkgs="$pkgs python$ver-dev python$ver-venv" ;;
        esac
    done
    echo "$pkgs"
}

# Runs "$@" in a fresh mount and PID namespace with the chroot's /proc, /sys, /dev and
# the toolchain mounted; the namespace (and with it every mount and process) ends when
# the command does, or when the timeout kills it.
in_chroot() {
    local dir=$1 seconds=$2
    shift 2
    timeout --kill-after=20 "$seconds" \
        unshare --mount --pid --fork --kill-child --propagation private -- \
        "$ROOT/tests/pythons.sh" --namespace "$dir" "$@"
}

# Inside the namespace (PID 1): mount, chroot, and unmount on the way out.
namespace_main() {
    NS_CHROOT=$1
    shift
    unmount_all() {
        for m in "$CA_BUNDLE" "$TOOLCHAIN_IN_CHROOT" /dev/pts /dev /sys /proc; do
            umount -l "$NS_CHROOT$m" 2>/dev/null || true
        done
    }
    trap unmount_all EXIT
    local dir=$NS_CHROOT
    mount -t proc proc "$dir/proc"
    mount --bind /sys "$dir/sys"
    mount --bind /dev "$dir/dev"
    mount --bind /dev/pts "$dir/dev/pts"
    mkdir -p "$dir$TOOLCHAIN_IN_CHROOT"
    mount --bind "$RUST_SYSROOT" "$dir$TOOLCHAIN_IN_CHROOT"
    mount -o remount,bind,ro "$dir$TOOLCHAIN_IN_CHROOT"
    # The host's CA bundle: whatever this machine trusts for PyPI and crates.io (a local
    # egress CA, say), the chroot trusts too.
    if [ -e "$dir$CA_BUNDLE" ]; then # not yet while the chroot's packages are installed
        mount --bind "$HOST_CA_BUNDLE" "$dir$CA_BUNDLE"
        mount -o remount,bind,ro "$dir$CA_BUNDLE"
    fi
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb PIP_CERT="$CA_BUNDLE" \
        RWSGI_TEST_FILES="$TEST_FILES" RWSGI_TEST_FILTER="${RWSGI_TEST_FILTER:-}" \
        ${RWSGI_OTHER_PYTHONS:+RWSGI_OTHER_PYTHONS="$RWSGI_OTHER_PYTHONS"} \
        PATH="$TOOLCHAIN_IN_CHROOT/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "$@"
}

# Makes (or reuses) build/chroots/<suite> with its package list installed.
ensure_chroot() {
    local suite=$1 dir=$CHROOTS/$1 mirror want
    mirror=$(debian_mirror)
    want="$suite $mirror $(packages_for "$suite" | md5sum | cut -c1-32)"
    if [ "$(cat "$dir/.rwsgi-stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    # Same suite and mirror, another package list: install it into the chroot as it is.
    if [ "$(cut -d' ' -f1-2 "$dir/.rwsgi-stamp" 2>/dev/null)" = "$suite $mirror" ]; then
        log "installing the $suite chroot's package list into $dir"
        # shellcheck disable=SC2046
        if in_chroot "$dir" "$BOOTSTRAP_TIMEOUT" /bin/sh -c \
            "apt-get -o Acquire::Check-Valid-Until=false update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(packages_for "$suite") >/dev/null && apt-get clean"; then
            echo "$want" >"$dir/.rwsgi-stamp"
            return 0
        fi
        log "that failed: making the chroot again"
    fi
    log "making the $suite chroot in $dir from $mirror (cached for later runs)"
    rm -rf --one-file-system "$dir"
    mkdir -p "$CHROOTS"
    # In its own mount namespace: the /proc and /sys debootstrap mounts in the chroot go
    # with it, even if debootstrap is killed half-way.
    timeout --kill-after=20 "$BOOTSTRAP_TIMEOUT" unshare --mount --propagation private -- \
        debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$CHROOTS/$suite.debootstrap.log" 2>&1 || {
        log "debootstrap $suite failed; its log:"
        tail -n 30 "$CHROOTS/$suite.debootstrap.log" >&2
        return 1
    }
    # shellcheck disable=SC2046
    # Check-Valid-Until: a mirror that is a snapshot of the archive serves a sid Release
    # file past its Valid-Until date; the signatures are still checked.
    in_chroot "$dir" "$BOOTSTRAP_TIMEOUT" /bin/sh -c \
        "apt-get -o Acquire::Check-Valid-Until=false update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(packages_for "$suite") >/dev/null && apt-get clean" || {
        log "installing the packages of the $suite chroot failed"
        return 1
    }
    echo "$want" >"$dir/.rwsgi-stamp"
}

# Copies the working tree (tracked and untracked, not ignored: also uncommitted changes)
# to <chroot>/src, keeping modification times so cargo rebuilds only what changed.
sync_source() {
    local dir=$1
    rm -rf "$dir/src" && mkdir -p "$dir/src"
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -C "$dir/src" -xf -
}

# Inside the chroot, for X.Yt: a free-threaded CPython X.Y in /opt/pythonX.Yt, built from
# Debian's source package of the installed pythonX.Y (kept until that version changes).
build_free_threaded() {
    local base=$1 prefix=/opt/python$1t version start=$SECONDS
    version=$(dpkg-query -W -f='${source:Version}' "python$base")
    if [ "$(cat "$prefix/.rwsgi-built" 2>/dev/null)" = "$version" ]; then
        return 0
    fi
    echo "== building a free-threaded CPython $version (--disable-gil) into $prefix"
    rm -rf /root/cpython-build "$prefix" && mkdir -p /root/cpython-build && cd /root/cpython-build
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/rwsgi-deb-src.list
    apt-get -o Acquire::Check-Valid-Until=false update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $CPYTHON_BUILD_PACKAGES >/dev/null
    apt-get source -qq --only-source "python$base=$version" >/dev/null
    cd "python$base-"*/
    # No ensurepip: Debian's patches refuse it outside a venv; venvs get pip from
    # python3-pip-whl as with the system Python.
    ./configure -q --prefix="$prefix" --disable-gil --enable-shared --with-ensurepip=no >/dev/null
    make -s -j"$(nproc)" >/dev/null 2>&1
    make -s install >/dev/null 2>&1
    # Debian's patched build ignores the rpath in LDFLAGS: the loader is told instead.
    echo "$prefix/lib" >"/etc/ld.so.conf.d/python${base}t.conf" && ldconfig
    echo "$version" >"$prefix/.rwsgi-built"
    rm -rf /root/cpython-build
    echo "== built $("$prefix/bin/python${base}t" -VV) in $((SECONDS - start)) s"
    cd /src
}

# Inside the chroot: build against /usr/bin/python<ver>, make the test venv, run the tests.
inside_main() {
    local ver=$1 py=/usr/bin/python$1
    case $ver in
    *t)
        build_free_threaded "${ver%t}"
        py=/opt/python$ver/bin/python$ver
        ;;
    esac
    export CARGO_HOME=/root/.cargo
    export CARGO_TARGET_DIR=/root/target/py$ver
    export RWSGI_TEST_VENV=/opt/rwsgi-test-venv-py$ver
    cd /src
    echo "== $("$py" -c 'import sys; print(sys.version.split()[0])') ($py), $(/usr/sbin/apache2 -v | head -n1 | sed 's/.*: //'), $(grep PRETTY_NAME /etc/os-release | cut -d'"' -f2), $(rustc --version)"
    make --no-print-directory build test-venv PYTHON="$py" TEST_VENV="$RWSGI_TEST_VENV"
    # How the daemon host got its libpython (build.rs: static when it links, else a warning).
    if ldd build/rwsgi-daemon | grep -q libpython; then
        echo "== build/rwsgi-daemon links the shared libpython"
    else
        echo "== build/rwsgi-daemon links the static libpython"
    fi
    export RWSGI_SO=/src/build/mod_rwsgi.so PYO3_PYTHON=$py
    # An Apache process that crashes leaves a core here (the harness adds CoreDumpDirectory);
    # run_target prints its backtrace.
    ulimit -c unlimited
    export RWSGI_TEST_CORE_DIR=$CORE_DIR_IN_CHROOT
    rm -rf "$RWSGI_TEST_CORE_DIR" && mkdir -m 1777 "$RWSGI_TEST_CORE_DIR"
    local args=(--lib) t
    if [ -n "${RWSGI_TEST_FILTER:-}" ]; then
        for t in $TEST_FILES; do cargo test --release --test "$t" -- --test-threads=2 "$RWSGI_TEST_FILTER"; done
        return
    fi
    for t in $TEST_FILES; do args+=(--test "$t"); done
    cargo test --release --no-fail-fast "${args[@]}" -- --test-threads=2
    for t in $TEST_SINGLE; do
        cargo test --release --test "${t%%:*}" -- --test-threads=2 "${t#*:}"
    done
    if [ -n "${RWSGI_OTHER_PYTHONS:-}" ]; then
        cargo test --release --test daemon_host -- --test-threads=1 venvs_of_other_pythons
    fi
}

# Inside the chroot: builds /src/build/mod_rwsgi.so for python $1.
build_inside() {
    export CARGO_HOME=/root/.cargo CARGO_TARGET_DIR=/root/target/py$1
    cd /src
    make --no-print-directory build PYTHON="/usr/bin/python$1" >/dev/null
}

# --inside-bench VER: builds the module for python VER and runs bench/owngil.py.
inside_bench() {
    build_inside "$1"
    "/usr/bin/python$1" bench/owngil.py --so /src/build/mod_rwsgi.so ${RWSGI_BENCH_ARGS:-}
}

# --inside-stop-loop VER N: builds the module for python VER and runs tests/apache_stop_loop.sh.
inside_stop_loop() {
    build_inside "$1"
    PYTHON=/usr/bin/python$1 tests/apache_stop_loop.sh /src/build/mod_rwsgi.so "$2"
}

# Runs `tests/pythons.sh MODE VER ARGS...` in the chroot of RWSGI_PYTHONS' first target
# (VER its Python), made first if need be.
in_first_target() {
    local mode=$1 target=${RWSGI_PYTHONS%% *} suite
    shift
    suite=${target%%:*}
    ensure_chroot "$suite" || return 1
    sync_source "$CHROOTS/$suite"
    in_chroot "$CHROOTS/$suite" "$RUN_TIMEOUT" /usr/bin/env RWSGI_BENCH_ARGS="${RWSGI_BENCH_ARGS:-}" \
        /bin/bash /src/tests/pythons.sh "$mode" "${target#*:}" "$@"
}

# Whether gdb's trace $1 ("info threads", "bt", "thread apply all bt" of a core) is Apache's
# own crash (CONTRIBUTING.md, "Other Pythons"; also without mod_rwsgi): on SIGTERM the event
# MPM's main thread closes its workers' sockets (apr_os_sock_get) while workers destroy their
# pools and exit. The main thread faults in apr_os_sock_get, or a worker beside it does; the
# core's current thread can also be one that was merely exiting (the kernel names whichever
# thread took the process-wide signal). So: some thread in apr_os_sock_get called from the
# event MPM, and no mod_rwsgi or Python frame in the core's current thread.
is_apache_forced_stop_crash() {
    local callers current
    callers=$(grep -A1 -E '^#[0-9]+ .* apr_os_sock_get \(\)' <<<"$1" || true)
    current=$(current_thread_frames "$1")
    [[ $callers =~ \#[0-9]+\ [^$'\n']*mod_mpm_event && ! $current =~ rwsgi|python|Py[A-Z] ]]
}

# gdb's trace $1 before "thread apply all bt": the threads list and the current thread's "bt".
before_all_threads() {
    sed '/^Thread [0-9]* (/,$d' <<<"$1"
}

# The frames of the core's current thread in gdb's trace $1.
current_thread_frames() {
    before_all_threads "$1" | grep '^#' || true
}

# The "thread apply all bt" block of the thread in apr_os_sock_get in gdb's trace $1.
sock_get_thread_block() {
    awk '/^Thread [0-9]+ \(/ { if (hit) exit; block = $0; next }
         block != "" { block = block "\n" $0 }
         /^#[0-9]+ .* apr_os_sock_get \(\)/ && block != "" { hit = 1 }
         END { if (hit) print block }' <<<"$1"
}

# Backtraces of the Apache processes that crashed in the last run in chroot $1 (their core
# files, if the kernel's core_pattern writes files), read with this machine's gdb; then
# the cores are removed (hundreds of MB each). Without gdb, where they are is said. Fails
# when one of them is not Apache's own forced-stop crash.
report_cores() {
    local dir=$1 core trace where unknown=0
    # One directory per test's Apache, named after the test and its server root (tests/common).
    for core in "$dir$CORE_DIR_IN_CHROOT"/*/core* "$dir$CORE_DIR_IN_CHROOT"/core*; do
        [ -f "$core" ] || continue
        if ! command -v gdb >/dev/null; then
            log "an Apache process crashed: core file $core (apt-get install gdb for its backtrace)"
            continue
        fi
        trace=$(gdb -batch -iex "set sysroot $dir" -iex "set auto-load safe-path /" \
            -ex "info threads" -ex "bt 30" -ex "thread apply all bt 30" \
            "$dir/usr/sbin/apache2" "$core" 2>&1 \
            | grep -vE '^(warning:|\[New LWP|$)' \
            | sed -e 's/warning: Unexpected size of section.*$//' -e "s|$dir/|/|g" || true)
        where="test and server root: $(basename "$(dirname "$core")")"
        if is_apache_forced_stop_crash "$trace"; then
            log "an Apache child crashed in the event MPM's forced stop, Apache's own known crash ($where); backtrace from $core:"
            # The core's current thread and the one in apr_os_sock_get are enough.
            trace=$(before_all_threads "$trace"; sock_get_thread_block "$trace")
        else
            log "an Apache process crashed, not in Apache's known forced-stop crash: this fails the run ($where); backtraces from $core:"
            unknown=1
        fi
        printf '%s\n' "$trace" >&2
        rm -f "$core"
    done
    return "$unknown"
}

# One suite:python target: chroot, build and tests, timed; prints its result line.
run_target() {
    local suite=${1%%:*} ver=${1#*:} start status=0 crashed=0 release=final verdict
    local RUN_TIMEOUT=$RUN_TIMEOUT
    local -x RWSGI_OTHER_PYTHONS=${RWSGI_OTHER_PYTHONS:-}
    if [ "$1" = "$OTHER_PYTHONS_TARGET" ] && [ -z "${RWSGI_TEST_FILES:-}" ] && [ -z "$RWSGI_OTHER_PYTHONS" ]; then
        RWSGI_OTHER_PYTHONS=$OTHER_PYTHONS_DEFAULT
        RUN_TIMEOUT=$OTHER_PYTHONS_RUN_TIMEOUT
    fi
    start=$(date +%s)
    ensure_chroot "$suite" >&2 || status=$?
    if [ "$status" = 0 ] && [ ! -x "$CHROOTS/$suite/usr/bin/python${ver%t}" ]; then
        log "$suite has no python${ver%t}"
        status=1
    elif [ "$status" = 0 ]; then
        release=$(chroot "$CHROOTS/$suite" "/usr/bin/python${ver%t}" -c 'import sys; print(sys.version_info.releaselevel)')
        sync_source "$CHROOTS/$suite"
        log "building and testing with Python $ver in $suite (at most ${RUN_TIMEOUT}s)"
        in_chroot "$CHROOTS/$suite" "$RUN_TIMEOUT" /bin/bash /src/tests/pythons.sh --inside "$ver" >&2 || status=$?
        report_cores "$CHROOTS/$suite" || crashed=1
    fi
    if [ "$status" = 0 ] && [ "$crashed" = 1 ]; then
        status=1
        verdict="FAILED (an Apache process crashed)"
    elif [ "$status" = 0 ]; then
        verdict=passed
    elif [ "$status" = 124 ] || [ "$status" = 137 ]; then
        verdict="FAILED (timed out after ${RUN_TIMEOUT}s)"
    else
        verdict="FAILED (status $status)"
    fi
    # A pre-release (alpha, beta, candidate) may fail without failing the run.
    [ "$status" != 0 ] && [ "$release" != final ] && verdict="$verdict, allowed for a $release release"
    printf '%-8s Python %-5s %-55s %5ss\n' "$suite" "$ver" "$verdict" "$(($(date +%s) - start))"
    [ "$status" = 0 ] || [ "$release" != final ]
}

main() {
    case "${1:-}" in
    --namespace)
        shift
        namespace_main "$@"
        return
        ;;
    --inside)
        shift
        inside_main "$@"
        return
        ;;
    --inside-bench)
        shift
        inside_bench "$@"
        return
        ;;
    --inside-stop-loop)
        shift
        inside_stop_loop "$@"
        return
        ;;
    --is-forced-stop-crash)
        is_apache_forced_stop_crash "$(cat "$2")"
        return
        ;;
    esac
    [ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot, mounts)"; return 1; }
    command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; return 1; }
    RUST_SYSROOT=$(rustc --print sysroot)
    export RUST_SYSROOT
    local target suite results=() failed=0
    if [ "${1:-}" = --bench-owngil ]; then
        in_first_target --inside-bench
        return
    fi
    if [ "${1:-}" = --stop-loop ]; then
        in_first_target --inside-stop-loop "${2:-60}"
        return
    fi
    if [ "${1:-}" = --chroots-only ]; then
        for suite in $(printf '%s\n' $RWSGI_PYTHONS | cut -d: -f1 | sort -u); do
            ensure_chroot "$suite" || failed=1
        done
        return "$failed"
    fi
    for target in $RWSGI_PYTHONS; do
        results+=("$(run_target "$target")") || failed=1
    done
    if [ "${#results[@]}" -gt 0 ]; then
        log "results:"
        printf '  %s\n' "${results[@]}" >&2
    fi
    return "$failed"
}

main "$@"
exit $?
