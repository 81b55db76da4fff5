# Raises while it is imported, as a half-initialised framework would.
raise RuntimeError("raise_at_import: configuration is broken on purpose")
