"""Build hooks that pyproject.toml cannot express: cffi shims and gRPC stubs.

The C shims in csrc/ are compiled by cffi in API (out-of-line) mode; the gRPC
stubs are generated from the .proto files kept beside the code that serves them,
so `import tectra.mgmt.v1.status_pb2` works after any install (editable or not).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def generate_grpc_stubs() -> None:
    """Run grpc_tools.protoc over every tectra/**/v*/*.proto, writing next to it."""
    from grpc_tools import protoc  # build-time dependency (pyproject build-system)

    include = str(Path(protoc.__file__).resolve().parent / "_proto")
    for proto in sorted(ROOT.glob("tectra/**/*.proto")):
        rel = proto.relative_to(ROOT)
        args = [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"-I{include}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {rel}")


class BuildPyWithGrpc(build_py):
    def run(self) -> None:
        generate_grpc_stubs()
        super().run()


# Every csrc/*_build.py defines a module-level cffi `ffibuilder` (one C shim per concept).
CFFI_BUILDERS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("csrc/*_build.py"))

setup(
    cffi_modules=[f"{builder}:ffibuilder" for builder in CFFI_BUILDERS],
    cmdclass={"build_py": BuildPyWithGrpc},
)
