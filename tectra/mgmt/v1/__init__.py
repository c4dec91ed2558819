"""Version 1 of the management API; *_pb2 modules are generated at build time from *.proto."""
