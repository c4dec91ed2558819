"""RFC 6962 Merkle trees: the Certificate Transparency reference vectors, and properties."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from tectra.journal.merkle import (
    EMPTY_ROOT,
    MerkleBuilder,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_inclusion,
)

# RFC 6962 test data as used by the certificate-transparency reference implementation.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
PROOF_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]
PROOF_5_OF_8 = [
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
]


def test_hash_prefixes() -> None:
    assert leaf_hash(b"ab") == hashlib.sha256(b"\x00ab").digest()
    assert node_hash(b"L", b"R") == hashlib.sha256(b"\x01LR").digest()
    assert EMPTY_ROOT.hex() == ROOTS[0]


def test_reference_roots_for_every_size() -> None:
    hashes = [leaf_hash(d) for d in LEAVES]
    for n in range(len(LEAVES) + 1):
        assert merkle_root(hashes[:n]).hex() == ROOTS[n], n


def test_reference_inclusion_proofs() -> None:
    hashes = [leaf_hash(d) for d in LEAVES]
    root = bytes.fromhex(ROOTS[8])
    for index, proof in ((0, PROOF_0_OF_8), (5, PROOF_5_OF_8)):
        assert [p.hex() for p in inclusion_proof(hashes, index)] == proof
        assert verify_inclusion(hashes[index], index, 8, [bytes.fromhex(p) for p in proof], root)


def _recursive_root(leaves: list[bytes]) -> bytes:
    # RFC 6962 section 2.1 written literally.
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_recursive_root(leaves[:k]), _recursive_root(leaves[k:]))


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_incremental_root_equals_the_rfc_recursion(data: list[bytes]) -> None:
    hashes = [leaf_hash(d) for d in data]
    builder = MerkleBuilder()
    for i, h in enumerate(hashes):
        builder.add(h)
        if i % 7 == 0:
            assert builder.root() == _recursive_root(hashes[: i + 1])
    assert builder.root() == _recursive_root(hashes)
    assert builder.count == len(hashes)


@given(st.integers(1, 70), st.data())
def test_every_proof_verifies_and_tampering_fails(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "little")) for i in range(n)]
    root = merkle_root(hashes)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(hashes, index)
    assert verify_inclusion(hashes[index], index, n, proof, root)
    assert not verify_inclusion(leaf_hash(b"other"), index, n, proof, root)
    if n > 1:
        assert not verify_inclusion(hashes[index], (index + 1) % n, n, proof, root)
