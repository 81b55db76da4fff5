# The WSGI script tests/script_paths.rs installs under file and directory names that are not
# UTF-8: it reports its own file name as bytes (os.fsencode(__file__), hex), whether its
# module name is mod_wsgi's md5 of those bytes, SCRIPT_FILENAME as bytes (latin-1, PEP 3333),
# and which process and which import of the script served the request.
import hashlib
import json
import os

IMPORT_ID = os.urandom(8).hex()
FILE_BYTES = os.fsencode(__file__)


def application(environ, start_response):
    body = json.dumps({
        "file": FILE_BYTES.hex(),
        "module_is_md5_of_file": __name__ == "_mod_wsgi_" + hashlib.md5(FILE_BYTES).hexdigest(),
        "script_filename": environ["SCRIPT_FILENAME"].encode("latin-1").hex(),
        "pid": os.getpid(),
        "import_id": IMPORT_ID,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
