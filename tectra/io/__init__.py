"""I/O wrappers over the C shims: shared-memory rings (and later AF_XDP, io_uring)."""
