# Calls sys.exit() while it is imported, as a script that gives up on its configuration would.
import sys

sys.exit("exit_at_import: giving up on purpose")
