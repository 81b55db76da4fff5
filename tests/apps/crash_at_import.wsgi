# Dies at import: a daemon that preloads it exits at once, every time (crash loop).
import os
import sys

sys.stderr.write("crash_at_import: exiting on purpose\n")
sys.stderr.flush()
os._exit(3)
