"""I/O wrappers over the C shims: shared-memory rings, XDP steering, AF_XDP, io_uring and
recvmmsg receive paths, network namespaces."""
