"""Test-suite policy: kernel tests are mandatory under CI=true and skip with a reason elsewhere."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@functools.cache
def kernel_path_unavailable() -> str | None:
    """Why kernel tests cannot run here, or None when root, bpffs and bcc are all present."""
    if os.geteuid() != 0:
        return "needs root (BPF, XDP and network namespaces)"
    if not os.path.ismount("/sys/fs/bpf"):
        return "bpffs is not mounted at /sys/fs/bpf (run `make test`, which bootstraps it)"
    if not (Path("/lib/modules") / os.uname().release / "build" / "include").exists():
        return "no kernel headers for bcc at /lib/modules/$(uname -r)/build"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc is not importable ({exc})"
    if shutil.which("clang") is None:
        return "clang is not installed"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is None:
        return
    reason = kernel_path_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true makes kernel tests mandatory, but: {reason}", pytrace=False)
    pytest.skip(f"kernel path unavailable: {reason}")


@pytest.fixture
def shm_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private shared-memory root per test so rings never collide with a running appliance."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path_factory.getbasetemp()
    root = base / f"tectra-test-{os.getpid()}-{os.urandom(4).hex()}"
    root.mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)
