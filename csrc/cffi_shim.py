"""What every csrc/*_build.py shares: the cffi API-mode (out-of-line) builder of one C shim,
and an in-place build for development (`python csrc/NAME_build.py`).

setup.py compiles every csrc/*_build.py's module-level `ffibuilder`; this file is not one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cffi

CSRC = Path(__file__).resolve().parent
REPO = CSRC.parent


def shim_builder(
    module: str,
    cdef: str,
    *,
    source: str,
    header: str | None = None,
    libraries: Sequence[str] = (),
    extra_compile_args: Sequence[str] = ("-O3", "-std=c11", "-Wall", "-Wextra"),
    relative: bool,
) -> cffi.FFI:
    """A builder for MODULE compiling csrc/SOURCE (behind csrc/HEADER when given, else the
    source is #included into the generated C file). setuptools insists on source paths
    relative to setup.py while cffi's own compile() changes directory and needs absolute ones:
    RELATIVE says which caller this is."""
    where = Path("csrc") if relative else CSRC
    builder = cffi.FFI()
    builder.cdef(cdef)
    common = {
        "include_dirs": [str(where)],
        "libraries": list(libraries),
        "extra_compile_args": list(extra_compile_args),
    }
    if header is None:
        builder.set_source(module, f'#include "{source}"', depends=[str(where / source)], **common)
    else:
        builder.set_source(
            module,
            f'#include "{header}"',
            sources=[str(where / source)],
            depends=[str(where / header)],
            **common,
        )
    return builder


def build_in_place(make: Callable[..., cffi.FFI]) -> Path:
    """Compile in a scratch directory and copy only the .so into tectra/ (no stray .c/.o)."""
    with tempfile.TemporaryDirectory(prefix="tectra-shim-build-") as tmp:
        built = Path(make(paths_relative_to_repo=False).compile(tmpdir=tmp))
        target = REPO / "tectra" / built.name
        shutil.copy2(built, target)
    return target
