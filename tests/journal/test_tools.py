"""cut, export and the `tectra journal ...` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from tectra.journal.capture import Recorder
from tectra.journal.cli import add_journal_commands
from tectra.journal.cut import CutError, cut_journal
from tectra.journal.export import export_parquet
from tectra.journal.reader import JournalReader
from tectra.journal.reference import VwapComponent, synthetic_trades
from tectra.journal.verify import verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import TRADE


def _seqs(d: Path) -> list[int]:
    return np.concatenate([fb.seq for fb in JournalReader(d).batches()]).tolist()


def test_cut_by_sequence(journal_dir: Path, tmp_path: Path) -> None:
    result = cut_journal(
        journal_dir, tmp_path / "cut", start_seq=100, end_seq=300, segment_max_bytes=8192
    )
    assert (result.first_seq, result.last_seq, result.records) == (100, 300, 201)
    assert result.segments > 1
    assert _seqs(tmp_path / "cut") == list(range(100, 301))
    assert verify_journal(tmp_path / "cut").ok
    # Frames are copied verbatim: identical bytes in both journals.
    a = b"".join(
        fb.frames_bytes() for fb in JournalReader(journal_dir).batches(start_seq=100, end_seq=300)
    )
    b = b"".join(fb.frames_bytes() for fb in JournalReader(tmp_path / "cut").batches())
    assert a == b


def test_cut_by_time(journal_dir: Path, tmp_path: Path) -> None:
    # TRADE frames carry mono_ns = record ts_ns = 1_000_000 + seq * 1000 (see conftest).
    mono = {}
    for fb in JournalReader(journal_dir).batches():
        mono.update(zip(fb.seq.tolist(), fb.mono_ns.tolist(), strict=True))
    start, end = mono[60], mono[90]
    result = cut_journal(journal_dir, tmp_path / "t", start_ns=start, end_ns=end)
    assert result.first_seq <= 60 and result.last_seq >= 90
    cut_times = [mono[s] for s in _seqs(tmp_path / "t")]
    assert cut_times[0] >= start or result.first_seq == 60
    assert verify_journal(tmp_path / "t").ok


def test_cut_refuses_bad_windows(journal_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CutError):
        cut_journal(journal_dir, tmp_path / "x", start_seq=10, end_seq=5)
    with pytest.raises(CutError):
        cut_journal(journal_dir, tmp_path / "y", start_seq=10_000)
    with pytest.raises(CutError):
        cut_journal(journal_dir, tmp_path / "z", start_seq=1, start_ns=5)


def test_export_parquet(journal_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    files = export_parquet(journal_dir, tmp_path / "pq")
    assert set(files) == {"TRADE", "FIX_MESSAGE"}
    trades = pq.read_table(files["TRADE"])
    assert trades.num_rows == 500
    assert set(TRADE.dtype.names or ()) <= set(trades.column_names)
    assert trades.column("price").to_pylist()[:3] == [1_000_001, 1_000_002, 1_000_003]
    assert trades.column("journal_seq").to_pylist()[:2] == [1, 2]
    assert trades.schema.field("symbol").type.byte_width == 8
    fix = pq.read_table(files["FIX_MESSAGE"])
    assert fix.column("payload").to_pylist()[0].startswith(b"8=FIX.4.4")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tectra")
    add_journal_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_commands(
    journal_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(["journal", "verify", str(journal_dir)]) == 0
    assert "OK" in capsys.readouterr().out
    assert _cli(["journal", "verify", "--json", str(journal_dir)]) == 0
    assert '"ok": true' in capsys.readouterr().out
    assert (
        _cli(
            [
                "journal",
                "cut",
                str(journal_dir),
                str(tmp_path / "c"),
                "--from-seq",
                "5",
                "--to-seq",
                "9",
            ]
        )
        == 0
    )
    assert _seqs(tmp_path / "c") == [5, 6, 7, 8, 9]
    assert (
        _cli(["journal", "export", str(journal_dir), str(tmp_path / "pq"), "--types", "TRADE"]) == 0
    )
    assert (tmp_path / "pq" / "TRADE.parquet").exists()
    seg = JournalReader(journal_dir).paths[0]
    data = bytearray(seg.read_bytes())
    data[400] ^= 1
    seg.write_bytes(bytes(data))
    assert _cli(["journal", "verify", str(journal_dir)]) == 1
    assert "crc_mismatch" in capsys.readouterr().out


def test_cli_replay_and_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = tmp_path / "live"
    w = JournalWriter(live, WriterOptions(fsync=FsyncPolicy.NONE))
    rec = Recorder(VwapComponent(), w)
    for batch, now in synthetic_trades(3, batches=200):
        rec.step(batch, now)
    w.close()
    spec = "tectra.journal.reference:VwapComponent"
    out = tmp_path / "replayed"
    assert _cli(["journal", "replay", str(live), "--component", spec, "--out", str(out)]) == 0
    assert "ZERO DIFFS" in capsys.readouterr().out
    assert _cli(["journal", "diff", str(live), str(out), "--component", "strategy"]) == 0
    assert _cli(["journal", "replay", str(live), "--component", spec, "--json"]) == 0
    assert '"divergences": 0' in capsys.readouterr().out


def test_export_and_verify_record_batches(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from .conftest import trades

    w = JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE))
    w.append_batch(trades(1, 10))
    w.append_records(trades(11, 2))
    w.append_batch(trades(13, 5))
    w.close()
    assert verify_journal(tmp_path / "j").ok
    files = export_parquet(tmp_path / "j", tmp_path / "pq")
    table = pq.read_table(files["TRADE"])
    assert table.column("seq").to_pylist() == list(range(1, 18))
    assert table.column("journal_seq").to_pylist() == [1] * 10 + [2, 3] + [4] * 5
