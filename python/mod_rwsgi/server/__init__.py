# Holds the Apache module (mod_rwsgi.cpython-3XY-<platform>.so). It is loaded by Apache's
# LoadModule, never imported: importing it fails on Apache's undefined ap_* symbols.
