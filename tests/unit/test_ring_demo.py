"""The demo consumer's accounting: exact loss, corrupt records and sequence faults are counted."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tectra.roles.ring_demo import ConsumerTally, fill_probes
from tectra.schema import RING_PROBE, new_records


def _probes(first_seq: int, n: int) -> np.ndarray:
    batch = new_records(RING_PROBE, n)
    fill_probes(batch, first_seq, 123_456)
    return batch


def test_clean_stream_counts_every_record() -> None:
    tally = ConsumerTally()
    tally.check(_probes(1, 10), 0)
    tally.check(_probes(11, 5), 0)
    assert (tally.received, tally.lost, tally.checksum_errors, tally.sequence_errors) == (
        15,
        0,
        0,
        0,
    )
    assert tally.next_seq == 16


def test_reported_loss_explains_the_gap() -> None:
    tally = ConsumerTally()
    tally.check(_probes(1, 4), 0)
    tally.check(_probes(9, 4), 4)  # the ring says 4 were overrun: seqs 5..8
    assert tally.lost == 4
    assert tally.sequence_errors == 0


def test_loss_reported_without_records_advances_the_sequence() -> None:
    tally = ConsumerTally()
    tally.check(_probes(1, 4), 0)
    tally.check(_probes(1, 0), 3)
    tally.check(_probes(8, 2), 0)
    assert (tally.lost, tally.received, tally.sequence_errors) == (3, 6, 0)


def test_unexplained_gap_is_a_sequence_error() -> None:
    tally = ConsumerTally()
    tally.check(_probes(1, 4), 0)
    tally.check(_probes(7, 4), 0)
    assert tally.sequence_errors == 1


@given(st.integers(0, 63), st.integers(0, 4), st.integers(0, 63))
def test_any_flipped_bit_is_a_checksum_error(index: int, word: int, bit: int) -> None:
    batch = _probes(1, 64)
    raw = batch.view(np.uint64).reshape(64, 8)
    # Words 1..6 of a record are seq, ts_ns, send_ns, payload x3; flip one bit in one of them
    # (other than ts_ns, which the checksum does not cover).
    column = (1, 3, 4, 5, 6)[word]
    raw[index, column] ^= np.uint64(1) << np.uint64(bit)
    tally = ConsumerTally()
    tally.check(batch, 0)
    assert tally.checksum_errors == 1
