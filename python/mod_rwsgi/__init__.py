"""mod_rwsgi installed by pip: the Apache module built for this Python, and where it is.

`python -m mod_rwsgi module-config` (or `rwsgi-express module-config`) prints the lines to
put into Apache's configuration.
"""

import glob
import os
import sys

# Equal to Cargo.toml's version (tests/packaging.rs checks).
__version__ = "0.1.0"


def module_path():
    """The path of the Apache module (mod_rwsgi/server/mod_rwsgi.cpython-3XY-<platform>.so)."""
    server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server")
    found = sorted(glob.glob(os.path.join(server, "mod_rwsgi*.so")))
    if not found:
        raise FileNotFoundError(f"no mod_rwsgi*.so in {server}: the package was installed without its module")
    return found[0]


def python_home():
    """The virtual environment this package is installed in, or None outside a venv."""
    return sys.prefix if sys.prefix != sys.base_prefix else None


def _apache_word(s):
    """A configuration word, quoted only when it has to be (as rwsgi-express does)."""
    if any(c.isspace() or c in "\"'" for c in s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def module_config():
    """The LoadModule line, and WSGIPythonHome when installed in a venv."""
    lines = [f"LoadModule rwsgi_module {_apache_word(os.path.realpath(module_path()))}"]
    home = python_home()
    if home is not None:
        lines.append(f"WSGIPythonHome {_apache_word(os.path.realpath(home))}")
    return "\n".join(lines) + "\n"
