"""pip builds mod_rwsgi here for the Python running pip (a venv's own interpreter): the Apache
module as mod_rwsgi/server/mod_rwsgi.cpython-3XY-<platform>.so (linked with that Python's
libpython, not importable), and the rwsgi-express and rwsgi-load commands and the daemon host
rwsgi-daemon into the venv's bin/.
Metadata is in pyproject.toml; build_support/check_build_env.py says what is missing first.
"""

import os
import sys

from setuptools import setup
from setuptools_rust import Binding, RustBin, RustExtension
from setuptools_rust.build import build_rust

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_support"))
import check_build_env  # noqa: E402


class build_rust_checked(build_rust):
    """build_rust after checking cargo, apxs, libclang, a C compiler and Python's libpython."""

    def run(self):
        problems, updates = check_build_env.check(dict(os.environ))
        if problems:
            raise SystemExit(
                "mod_rwsgi cannot be built:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        os.environ.update(updates)
        super().run()


setup(
    rust_extensions=[
        # NoBinding: a plain cdylib that keeps libpython linked (the PyO3 binding would set
        # PYO3_BUILD_EXTENSION_MODULE and drop it; build.rs refuses that).
        RustExtension(
            "mod_rwsgi.server.mod_rwsgi",
            binding=Binding.NoBinding,
            py_limited_api=False,
            cargo_manifest_args=["--locked"],
            # The crate's own crate types: the two commands then link this very build of
            # the library instead of compiling it a second time as an rlib.
            args=["--crate-type", "cdylib,rlib"],
        ),
        RustBin("rwsgi-express", cargo_manifest_args=["--locked"]),
        RustBin("rwsgi-load", cargo_manifest_args=["--locked"]),
        # The daemon host for this venv's Python: a module built for another Python runs a
        # daemon group whose python-home is this venv on it (<venv>/bin/rwsgi-daemon).
        RustBin("rwsgi-daemon", cargo_manifest_args=["--locked"]),
    ],
    cmdclass={"build_rust": build_rust_checked},
    zip_safe=False,
)
