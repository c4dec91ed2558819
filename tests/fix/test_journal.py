"""The per-session ClOrdID journal behind PossDup handling: persisted, bounded, reset-aware."""

from __future__ import annotations

from pathlib import Path

from adapters.fix.acceptor import ClOrdIdJournal


def test_journal_survives_reopen_and_forgets_on_sequence_reset(tmp_path: Path) -> None:
    path = tmp_path / "s.clordids"
    j = ClOrdIdJournal(path, capacity=100)
    j.open(expected_seq=1)
    j.add(2, "A1")
    j.add(3, "A 2")  # ClOrdIDs may hold spaces
    j.add(3, "A1")  # already there: no second line
    j.close()  # as after kill -9: the lines were flushed as they were added

    again = ClOrdIdJournal(path, capacity=100)
    again.open(expected_seq=3)  # died before quickfix counted seq 3: still the same day
    assert "A1" in again and "A 2" in again and len(again) == 2
    assert not again.check_reset(expected_seq=4)
    assert again.check_reset(expected_seq=2)  # sequence numbers went back: a new session day
    assert "A1" not in again and len(again) == 0
    again.close()
    assert path.read_text() == ""


def test_journal_keeps_the_newest_entries(tmp_path: Path) -> None:
    j = ClOrdIdJournal(tmp_path / "s.clordids", capacity=3)
    j.open(expected_seq=1)
    for i in range(5):
        j.add(i + 2, f"C{i}")
    assert [f"C{i}" in j for i in range(5)] == [False, False, True, True, True]
    j.close()
    reopened = ClOrdIdJournal(tmp_path / "s.clordids", capacity=3)
    reopened.open(expected_seq=7)
    assert len(reopened) == 3 and "C4" in reopened and "C1" not in reopened
    reopened.close()
