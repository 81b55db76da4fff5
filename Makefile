# mod_rwsgi — build, test, install.
#   make            build build/mod_rwsgi.so
#   make test       install missing system packages (as root), build, run every test
#   make test-venv  the venv (Webware, Flask, Django, PasteDeploy from PyPI) the tests serve; make test runs it
#   make serve      (see README) serve an example app
#   make install    install the module into Apache through apxs
#   make deb        the Debian package build/deb/libapache2-mod-rwsgi_<version>_<arch>.deb
#   make test-packaging  the pip (sdist in a venv) and .deb routes end to end (minutes)
#   make bench      static vs mod_wsgi vs mod_rwsgi vs granian/gunicorn behind mod_proxy, with wrk (docs/PERFORMANCE.md)
#   make bench-owngil  WSGIPerInterpreterGIL On vs Off, CPU-bound groups in one daemon (3.12+ chroot, root)
#   make soak       memory soak: a million requests and leak checks (minutes)
#   make test-pythons  build and test in Debian chroots with Python 3.13, 3.14, 3.15 (root),
#                   including one module with daemon groups on 3.13/3.14/3.15 venvs (sid)
#   make test-any-python  only that last test
# Options: PYTHON=/path/to/python3 (default: the system /usr/bin/python3), APXS=/path/to/apxs

PYTHON ?= /usr/bin/python3
APXS ?= apxs
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

# One cargo target dir per interpreter, so switching PYTHON= never mixes builds.
PY_TAG := $(shell printf '%s' "$(PYTHON)" | md5sum | cut -c1-8)
export CARGO_TARGET_DIR ?= $(CURDIR)/target/py-$(PY_TAG)
export PYO3_PYTHON := $(PYTHON)
export APXS
SO := build/mod_rwsgi.so
export RWSGI_SO := $(CURDIR)/$(SO)

DEB_PACKAGES := apache2 apache2-dev clang libclang-dev python3-dev python3-venv iproute2 curl openssl redis-server

.PHONY: all build deps check-python check-free-threaded test test-venv test-pythons test-any-python soak unit-test integration-test lint install serve clean deb deb-deps test-packaging

all: build

# The module, and the daemon host rwsgi-daemon for its Python (bench/run.py compares forked
# daemons with daemons exec'd from it; groups on another Python use their venv's own).
HOST := build/rwsgi-daemon
build: check-python
	$(CARGO) build --release --lib --bin rwsgi-daemon
	@mkdir -p build
	@# install(1) replaces the file instead of writing into it: an Apache still running the
	@# previous build keeps its mapping (cp would rewrite the pages it executes).
	install -m 755 $(CARGO_TARGET_DIR)/release/libmod_rwsgi.so $(SO)
	install -m 755 $(CARGO_TARGET_DIR)/release/rwsgi-daemon $(HOST)
	@echo "built $(SO) for $$($(PYTHON) -c 'import sys; print(sys.version.split()[0])') ($(PYTHON))"

# Embedding needs libpython as a shared library and Python's headers.
check-python:
	@test -x "$(PYTHON)" || { echo "mod_rwsgi: PYTHON=$(PYTHON) is not an executable Python interpreter" >&2; exit 1; }
	@$(PYTHON) -c 'import sysconfig,sys,os; \
	shared = sysconfig.get_config_var("Py_ENABLE_SHARED"); \
	inc = sysconfig.get_paths()["include"]; \
	ok_shared = bool(shared); ok_inc = os.path.exists(os.path.join(inc, "Python.h")); \
	msg = ([] if ok_shared else ["it has no shared libpython (Debian: apt-get install libpython3-dev; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"]) + \
	      ([] if ok_inc else ["its headers are missing: no Python.h in " + inc + " (Debian: apt-get install python3-dev)"]); \
	[print("mod_rwsgi: cannot embed " + sys.executable + ": " + m, file=sys.stderr) for m in msg]; \
	sys.exit(1 if msg else 0)'

# Install what is missing on Debian/Ubuntu; other users get the exact command to run.
# Installs the Debian packages $(1) that are missing (as root), or prints the apt-get line.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "mod_rwsgi: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "mod_rwsgi: missing packages. Run as root:"; \
	    echo "  apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))
	@command -v $(CARGO) >/dev/null || { echo "mod_rwsgi: cargo not found; install Rust (rustup)" >&2; exit 1; }

# Issue 35: the daemon-mode suites a second time with every daemon exec'd from rwsgi-daemon
# (the manager's test hook RWSGI_TEST_DAEMON_HOST, set by tests/common for RWSGI_TEST_VIA_HOST),
# as a group on another Python runs. About 3 minutes on 2 cores.
VIA_HOST_SUITES := daemon_mode daemon_options daemon_exchange restarts asgi_restarts signals \
  webware openmetrics metrics telemetry reload_hooks
test: deps build test-venv
	$(CARGO) test --release --no-fail-fast -- --test-threads=2
	@echo "mod_rwsgi: the daemon-mode suites again, every daemon exec'd from rwsgi-daemon"
	RWSGI_TEST_VIA_HOST=1 $(CARGO) test --release --no-fail-fast \
	  $(addprefix --test ,$(VIA_HOST_SUITES)) -- --test-threads=2

# Other Pythons, each on its own Debian (tests/pythons.sh): trixie with 3.13, sid with 3.14
# and 3.15, made with debootstrap into build/chroots/ (cached), built with the host's Rust
# toolchain and tested there. RWSGI_PYTHONS="sid:3.14" picks targets. The sid 3.14 run also
# runs issue 35's three-Python test (see test-any-python).
test-pythons:
	$(call install_missing,debootstrap)
	tests/pythons.sh

# Issue 35 (slow: pip builds mod_rwsgi once per Python, kept in the chroot's cargo cache): in
# the sid chroot, one Apache with the module for 3.14 and daemon groups on venvs of 3.13 and
# 3.15, each with mod_rwsgi pip-installed from this checkout, serving Webware.
test-any-python:
	$(call install_missing,debootstrap)
	RWSGI_PYTHONS=sid:3.14 RWSGI_TEST_FILES=daemon_host RWSGI_TEST_FILTER=venvs_of_other_pythons \
	  RWSGI_OTHER_PYTHONS="3.13 3.15" RWSGI_RUN_TIMEOUT=$${RWSGI_RUN_TIMEOUT:-3600} tests/pythons.sh

# Memory soak (minutes): a million requests, then leak checks; RSS must stay within 5%.
soak: deps build
	$(CARGO) test --release --test soak -- --ignored --nocapture --test-threads=1

# The venv of the frameworks the tests serve (Webware, Flask, Django; pinned in
# tests/apps/requirements.txt), made with $(PYTHON) like a deployment's venv. Apache's daemons
# read it as www-data: it lives in build/ when www-data can reach the checkout, else in /tmp.
# Remade only when the requirements or the Python change (its .installed stamp names both).
TEST_VENV ?= $(shell if [ "$$(id -u)" != 0 ] || runuser -u www-data -- test -x "$(CURDIR)" 2>/dev/null; \
  then echo "$(CURDIR)/build/test-venv"; \
  else echo "/tmp/rwsgi-test-venv-$$(printf %s '$(CURDIR)' | md5sum | cut -c1-8)"; fi)
export RWSGI_TEST_VENV := $(TEST_VENV)

test-venv: check-python
	@want="$$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])') $$(md5sum < tests/apps/requirements.txt)"; \
	if [ "$$(cat $(TEST_VENV)/.installed 2>/dev/null)" != "$$want" ]; then \
	  echo "mod_rwsgi: making the test venv $(TEST_VENV) (pip install -r tests/apps/requirements.txt)"; \
	  rm -rf $(TEST_VENV) && $(PYTHON) -m venv $(TEST_VENV) && \
	  $(TEST_VENV)/bin/pip install -q --disable-pip-version-check -r tests/apps/requirements.txt && \
	  chmod -R a+rX $(TEST_VENV) && echo "$$want" > $(TEST_VENV)/.installed || exit 1; \
	fi

lint:
	$(CARGO) fmt --check
	/usr/bin/python3 build_support/log_codes.py --check
	/usr/bin/python3 build_support/module_graph.py --check
	/usr/bin/python3 build_support/doc_check.py
	$(CARGO) clippy --release --all-targets -- -D warnings
	@$(MAKE) --no-print-directory check-free-threaded

# Type-checks (clippy -D warnings) the free-threaded code paths (`#[cfg(Py_GIL_DISABLED)]`, a
# daemon host for a CPython 3.14t venv) without such an interpreter: pyo3 reads the build's
# facts from build_support/pyo3-free-threaded-3.14t.cfg instead of running a Python. It does
# not link or run anything (no libpython3.14t here). Its own target dir keeps the normal build's.
# tests/free_threaded.rs runs it too, so `make test` (CI) does.
FT_TARGET_DIR := $(CURDIR)/target/free-threaded-check
check-free-threaded:
	PYO3_CONFIG_FILE=$(CURDIR)/build_support/pyo3-free-threaded-3.14t.cfg CARGO_TARGET_DIR=$(FT_TARGET_DIR) \
	  $(CARGO) clippy --release --lib --bins -- -D warnings

# `make install`: the module through apxs (into its LIBEXECDIR), then rwsgi.load and
# rwsgi.conf into $(APACHE_CONFDIR)/mods-available for a2enmod, the .load pointing at
# $(MODULE_INSTALL_PATH). tests/packaging.rs runs install-conf into a copy of /etc/apache2.
APACHE_CONFDIR ?= /etc/apache2
MODULE_INSTALL_PATH ?= $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)/mod_rwsgi.so
.PHONY: install-conf
install: build
	$(APXS) -i -n rwsgi $(SO)
	@$(MAKE) --no-print-directory install-conf

install-conf:
	@if [ -d "$(APACHE_CONFDIR)/mods-available" ]; then \
	  sed 's|^LoadModule rwsgi_module .*|LoadModule rwsgi_module $(MODULE_INSTALL_PATH)|' \
	    apache/rwsgi.load > "$(APACHE_CONFDIR)/mods-available/rwsgi.load" && \
	  chmod 644 "$(APACHE_CONFDIR)/mods-available/rwsgi.load" && \
	  install -m 644 apache/rwsgi.conf "$(APACHE_CONFDIR)/mods-available/rwsgi.conf" && \
	  echo "installed $(APACHE_CONFDIR)/mods-available/rwsgi.{load,conf}; enable with: a2enmod rwsgi"; \
	else echo "no $(APACHE_CONFDIR)/mods-available (not a Debian-style Apache): add to httpd.conf:"; \
	  echo "  LoadModule rwsgi_module $(MODULE_INSTALL_PATH)"; fi

# The Debian package (debian/: dh with the apache2 addon, cargo called directly). Built from a
# copy of the tree in build/deb/src (dpkg-buildpackage writes its results next to the source
# and cleans the tree), mtimes kept and cargo's output cached in target/deb, so a rebuild of
# unchanged sources is quick. -d: cargo comes from rustup here, not from a Debian package.
DEB_BUILD_PACKAGES := debhelper dpkg-dev build-essential apache2-dev python3-dev libpython3-dev clang libclang-dev help2man
DEB_VERSION = $(shell dpkg-parsechangelog -S Version)
DEB_ARCH = $(shell dpkg --print-architecture)
DEB := build/deb/libapache2-mod-rwsgi_$(DEB_VERSION)_$(DEB_ARCH).deb
deb-deps:
	$(call install_missing,$(DEB_BUILD_PACKAGES))

deb: deb-deps
	@command -v $(CARGO) >/dev/null || { echo "mod_rwsgi: cargo not found; install Rust (rustup)" >&2; exit 1; }
	rm -rf build/deb && mkdir -p build/deb/src
	tar -C $(CURDIR) --exclude=./target --exclude=./build --exclude=./.git --exclude=./fuzz/target \
	  --exclude='*.egg-info' -cf - . | tar -C build/deb/src -xf -
	cd build/deb/src && CARGO_TARGET_DIR=$(CURDIR)/target/deb dpkg-buildpackage -b -us -uc -d
	@test -f $(DEB) && echo "built $(DEB)"

# The pip and Debian routes end to end (tests/packaging_pip.rs, tests/packaging_deb.rs): each
# does a release build, so they are not part of `make test`; .ci/run runs them after it.
PACKAGING_PACKAGES := $(DEB_BUILD_PACKAGES) lintian python3-venv
test-packaging: deps build test-venv
	$(call install_missing,$(PACKAGING_PACKAGES))
	$(CARGO) test --release --test packaging_pip --test packaging_deb -- --ignored --test-threads=1

# rwsgi-express (src/bin/rwsgi-express.rs) and the example app it serves for `make serve`.
EXPRESS := $(CARGO_TARGET_DIR)/release/rwsgi-express
SERVE_OPTS ?=
.PHONY: express
express: check-python
	$(CARGO) build --release --bin rwsgi-express

serve: deps build express
	$(EXPRESS) start-server examples/hello/app.wsgi --url-alias /static examples/hello/static \
	  --module $(CURDIR)/$(SO) $(SERVE_OPTS)

# Benchmark (bench/run.py): wrk, Debian's mod_wsgi, and granian, gunicorn and uvicorn behind
# mod_proxy_http to compare against.
# BENCH_DURATION=5 BENCH_REPS=3 by default; BENCH_QUICK=1 for a one-minute smoke run;
# BENCH_OPTS="--out results.md" also writes the table as markdown.
BENCH_OPTS ?=
BENCH_PACKAGES := wrk libapache2-mod-wsgi-py3
.PHONY: bench bench-deps bench-ipc bench-venv bench-owngil
# WSGIPerInterpreterGIL On vs Off (issue 32): CPU-bound requests in two application groups of
# one daemon process. Needs Python 3.12+, so it runs in a chroot of `make test-pythons` (root).
bench-owngil:
	RWSGI_PYTHONS="$${RWSGI_PYTHONS:-sid:3.14}" tests/pythons.sh --bench-owngil

bench-deps:
	$(call install_missing,$(BENCH_PACKAGES))

# The venv of granian, gunicorn and uvicorn (pinned in bench/requirements.txt), which the backends run
# from as www-data: where the test venv goes (build/ or /tmp). Remade as the test venv is. If
# pip cannot install them (PyPI unreachable), the bench says so and runs without them.
BENCH_VENV ?= $(subst test-venv,bench-venv,$(TEST_VENV))
export BENCH_VENV
bench-venv:
	@want="$$(/usr/bin/python3 -c 'import sys; print(sys.executable, sys.version.split()[0])') $$(md5sum < bench/requirements.txt)"; \
	if [ "$$(cat $(BENCH_VENV)/.installed 2>/dev/null)" != "$$want" ]; then \
	  echo "mod_rwsgi: making the bench venv $(BENCH_VENV) (pip install -r bench/requirements.txt)"; \
	  rm -rf $(BENCH_VENV) && /usr/bin/python3 -m venv $(BENCH_VENV) && \
	  $(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt && \
	  chmod -R a+rX $(BENCH_VENV) && echo "$$want" > $(BENCH_VENV)/.installed || { \
	  rm -rf $(BENCH_VENV); \
	  echo "mod_rwsgi: NOTE: could not install bench/requirements.txt (PyPI unreachable?):" \
	    "make bench runs without the granian, gunicorn and uvicorn proxy variants"; }; \
	fi

bench: deps bench-deps build test-venv bench-venv
	/usr/bin/python3 bench/run.py $(BENCH_OPTS)

# The CPU floor of one request crossing into another process (bench/ipc_floor.rs).
bench-ipc: deps
	$(CARGO) run --release --example ipc_floor

clean:
	$(CARGO) clean
	rm -rf build
