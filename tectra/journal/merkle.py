"""RFC 6962 Merkle trees over journal records: leaf and node hashing, roots, inclusion proofs.

This module owns the hash tree that makes a segment tamper-evident record by record:

* leaf hash ``MTH({d}) = SHA-256(0x00 || d)`` where ``d`` is one whole frame as stored
  (header, payload, padding, CRC);
* node hash ``SHA-256(0x01 || left || right)``;
* for n > 1 leaves, ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))`` with k the largest power of
  two smaller than n (RFC 6962 §2.1), so trees that are not a power of two are unbalanced on the
  right rather than padded; the empty tree's root is ``SHA-256()``.

`MerkleBuilder` folds leaves in as they are appended, keeping only the roots of its perfect
subtrees (O(log n) memory), so the writer has the root the moment it seals a segment.
`inclusion_proof` / `verify_inclusion` prove that one frame belongs to a sealed segment whose
root is in the manifest, without the rest of the segment (RFC 6962 §2.1.1, RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "MerkleBuilder",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_inclusion",
]

_LEAF: Final = hashlib.sha256(b"\x00")
_NODE: Final = hashlib.sha256(b"\x01")
EMPTY_ROOT: Final[bytes] = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-256(0x00 || data)."""
    h = _LEAF.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    h = _NODE.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves (the RFC's recursion, iteratively by perfect subtrees)."""
    builder = MerkleBuilder()
    builder.extend(leaves)
    return builder.root()


class MerkleBuilder:
    """Incremental RFC 6962 root: add leaf hashes in order, ask for the root at any time.

    The stack holds (size, hash) of perfect subtrees with strictly decreasing sizes (the binary
    digits of the leaf count). The root folds them right to left, which is exactly the RFC's
    split at the largest power of two at every level.
    """

    __slots__ = ("_count", "_stack")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash (use `leaf_hash(data)`)."""
        stack = self._stack
        size, h = 1, leaf
        while stack and stack[-1][0] == size:
            left = stack.pop()[1]
            h = node_hash(left, h)
            size *= 2
        stack.append((size, h))
        self._count += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.add(leaf)

    def add_data(self, buf: memoryview, lens: Iterable[int]) -> None:
        """Hash and add consecutive leaves: buf holds them back to back, `lens` their sizes.

        The same as ``add(leaf_hash(...))`` per leaf, written out inline: this is the
        writer's per-frame cost, and Python call overhead is most of it.
        """
        stack = self._stack
        leaf_proto = _LEAF
        sha = hashlib.sha256
        pos = count = 0
        for n in lens:
            h = leaf_proto.copy()
            h.update(buf[pos : pos + n])
            digest = h.digest()
            pos += n
            count += 1
            size = 1
            while stack and stack[-1][0] == size:
                digest = sha(b"\x01" + stack.pop()[1] + digest).digest()
                size <<= 1
            stack.append((size, digest))
        self._count += count

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _size, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def _subtree_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_subtree_root(leaves, lo, lo + k), _subtree_root(leaves, lo + k, hi))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree over `leaves` (RFC 6962 PATH(m, D[n]))."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} not in a tree of {n}")
    path: list[bytes] = []
    lo, hi = 0, n
    # Walk from the root down; the sibling subtrees collected are the path, deepest last.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_subtree_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_subtree_root(leaves, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when `proof` shows leaf hash `leaf` at `index` in a tree of `tree_size` with `root`
    (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
