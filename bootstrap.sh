#!/usr/bin/env bash
# Idempotent set-up for `make demo` / `make test` on a fresh Debian machine.
# Each step checks first and acts only when needed; a second run changes nothing and says so.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(clang llvm libbpf-dev libxdp-dev xdp-tools bpftool liburing-dev libsystemd-dev
  pkg-config python3-bpfcc bpfcc-tools linux-headers-amd64 systemd-container debootstrap
  nats-server prometheus ansible iproute2 ethtool)
VENV=.venv
STAMPS=.bootstrap
PYTHON=${PYTHON:-python3}
changed=0

say() { printf 'bootstrap: %s\n' "$*"; }
is_root() { [ "$(id -u)" -eq 0 ]; }
mkdir -p "$STAMPS"

# 1. Debian packages.
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if is_root; then
    say "installing apt packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    changed=1
  else
    say "WARNING: not root, cannot install apt packages: ${missing[*]} (kernel path will be unavailable)"
  fi
fi

# 2. Kernel headers for bcc: only when the running kernel's own are absent.
kbuild=/lib/modules/$(uname -r)/build
if [ ! -e "$kbuild/include" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$hdr" ] && is_root; then
    common=${hdr%-amd64}-common
    mkdir -p "/lib/modules/$(uname -r)"
    ln -sfn "$hdr" "$kbuild"
    ln -sfn "$common" "/lib/modules/$(uname -r)/source"
    say "running kernel $(uname -r) has no headers package: linked $kbuild -> $hdr (source -> $common) so bcc can compile"
    changed=1
  else
    say "WARNING: no kernel headers for $(uname -r) and none to link; bcc programs will not compile"
  fi
fi

# 3. bpffs, needed for pinned maps and libxdp's dispatcher.
if is_root && ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
  say "mounted bpffs at /sys/fs/bpf"
  changed=1
fi

# 4. Virtualenv.
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { say "ERROR: Python 3.11+ required"; exit 1; }
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip setuptools wheel
  say "created virtualenv $VENV"
  changed=1
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 5. The package (editable) with its cffi extension and gRPC stubs; rebuilt when sources change.
src_hash=$(cat pyproject.toml setup.py csrc/*.c csrc/*.h csrc/*.py tectra/mgmt/v1/*.proto 2>/dev/null \
  | sha256sum | cut -c1-16)
if [ "$(cat "$STAMPS/package" 2>/dev/null || true)" != "$src_hash" ]; then
  say "installing build requirements and the tectra package (editable, extension built)"
  "$VENV/bin/pip" install -q "setuptools>=77" wheel "cffi>=1.16" "grpcio-tools>=1.60"
  # quickfix builds from source (~5 min) the first time; pip caches the wheel afterwards.
  "$VENV/bin/pip" install -q --no-build-isolation -e '.[dev,fix]'
  echo "$src_hash" > "$STAMPS/package"
  changed=1
fi

# 6. bcc's Python bindings (Debian's, pure Python over libbcc) made importable in the venv.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$site/bcc" ]; then
  ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
  say "linked Debian's bcc bindings into $VENV"
  changed=1
fi

if [ "$changed" -eq 0 ]; then
  say "nothing to do: apt packages, kernel headers, bpffs, virtualenv, package build and bcc are all in place"
else
  say "done"
fi
