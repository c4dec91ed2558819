"""Load generator and floor: every request answered, latencies measured, rate stepping, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fix.floor import FloorAcceptor
from adapters.fix.loadgen import (
    LoadGenerator,
    LoadGenError,
    LoadResult,
    Mix,
    find_max_rate,
    main,
    run_load,
)
from tests.fix.conftest import PASSWORD, FixEnv, unique
from tests.fix.fixsupport import free_port


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[tuple[int, str, str]]:
    port, us, them = free_port(), unique("FLOOR"), unique("LG")
    with FloorAcceptor(port, tmp_path / "floor", sender_comp_id=us, target_comp_ids=(them,)):
        yield port, us, them


def test_mix_parsing() -> None:
    assert Mix.parse("new=0.5,cancel=0.5") == Mix(0.5, 0.5, 0.0)
    assert Mix(8, 1, 1).thresholds() == (0.8, 0.9)
    for bad in ("new", "buy=1", "new=-1,cancel=0,replace=0"):
        with pytest.raises(LoadGenError):
            Mix.parse(bad)


def test_sustained_needs_every_answer_the_rate_and_p99() -> None:
    ok = LoadResult(1000, 1, 1000, 1000, 1, 5_000_000, 6, 7, 8, 990.0, 0)
    assert ok.sustained() and ok.lost == 0
    assert not LoadResult(1000, 1, 600, 600, 1, 1, 1, 1, 1, 1000.0, 0).sustained()  # stalled
    assert not LoadResult(1000, 1, 1000, 999, 1, 1, 1, 1, 1, 1000.0, 0).sustained()
    assert not LoadResult(1000, 1, 1000, 1000, 1, 1, 1, 1, 1, 900.0, 0).sustained()
    assert not ok.sustained(p99_limit_ns=4_000_000)


def test_every_request_is_answered_by_the_floor(floor: tuple[int, str, str]) -> None:
    port, us, them = floor
    with LoadGenerator("127.0.0.1", port, sender_comp_id=them, target_comp_id=us) as gen:
        result = gen.run(400, 0.5, Mix(0.6, 0.2, 0.2), seed=7)
        again = gen.run(300, 0.5, Mix(0.6, 0.2, 0.2), seed=7, warmup_s=0.2)
    assert result.sent == result.received == 200 and result.lost == 0
    assert result.answers["execution_report"] == 200 and "stale" not in result.answers
    assert 0 < result.p50_ns <= result.p99_ns <= result.p999_ns <= result.max_ns
    assert result.achieved_rate == pytest.approx(400, rel=0.05)
    assert again.sent == again.received == 150  # warm-up excluded from the figures
    summary = result.to_dict()
    assert summary["achieved_rate_per_s"] > 0 and summary["p99_ns"] == result.p99_ns


def test_fill_mode_answers_cancels_with_cancel_rejects(tmp_path: Path) -> None:
    port, us, them = free_port(), unique("FLOOR"), unique("LG")
    with FloorAcceptor(port, tmp_path, mode="fill", sender_comp_id=us, target_comp_ids=(them,)):
        result = run_load(
            "127.0.0.1",
            port,
            200,
            0.5,
            Mix(0.5, 0.5, 0.0),
            3,
            warmup_s=0.0,
            sender_comp_id=them,
            target_comp_id=us,
        )
    assert result.lost == 0 and result.answers.get("cancel_reject", 0) > 0


def test_find_max_rate_steps_up_to_the_cap(floor: tuple[int, str, str]) -> None:
    port, us, them = floor
    found = find_max_rate(
        "127.0.0.1",
        port,
        start_rate=100,
        max_rate=160,
        seconds=0.4,
        warmup_s=0.1,
        settle_s=0.0,
        p99_limit_ns=500_000_000,  # the stepping is under test here, not this machine's speed
        sender_comp_id=them,
        target_comp_id=us,
    )
    assert [s.target_rate for s in found.steps] == [100, 150]
    assert found.max_rate == 150 and found.at_max is found.steps[-1]
    assert json.loads(json.dumps(found.to_dict()))["max_sustained_rate_per_s"] == 150


def test_find_max_rate_bisects_after_a_failed_step(floor: tuple[int, str, str]) -> None:
    port, us, them = floor
    found = find_max_rate(
        "127.0.0.1",
        port,
        start_rate=100,
        step_factor=2,
        max_rate=1000,
        refine_steps=1,
        seconds=0.3,
        warmup_s=0.0,
        settle_s=0.0,
        p99_limit_ns=1,  # nothing is that fast: the first step fails, nothing is sustained
        sender_comp_id=them,
        target_comp_id=us,
    )
    assert found.max_rate == 0 and found.at_max is None and len(found.steps) == 1


def test_loadgen_logs_on_to_the_acceptor_with_credentials(fix_env: FixEnv) -> None:
    s = fix_env.session(4, account="")
    acc, sink = fix_env.acceptor(s)
    kw = {"sender_comp_id": s.target_comp_id, "target_comp_id": s.sender_comp_id}
    result = run_load(
        "127.0.0.1",
        acc.port,
        100,
        0.5,
        Mix(0.6, 0.2, 0.2),
        1,
        warmup_s=0.0,
        username="trader",
        password=PASSWORD,
        account="DESK1",
        **kw,
    )
    assert result.lost == 0 and len(sink.seen) == result.sent
    assert {d["account"] for d in sink.seen} == {"DESK1"}
    with pytest.raises(LoadGenError, match="invalid username or password"):
        LoadGenerator(
            "127.0.0.1", acc.port, username="trader", password="wrong", logon_timeout_s=3, **kw
        ).start()


def test_command_line_with_a_spawned_floor(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "--spawn-floor",
            "new",
            "--rate",
            "200",
            "--seconds",
            "0.5",
            "--warmup",
            "0",
            "--sender",
            unique("LG"),
            "--target",
            unique("FLOOR"),
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = summary["metrics"]["runs"][0]
    assert run["sent"] == run["received"] == 100 and run["p99_ns"] > 0
    assert summary["floor"]["answered"] == 100


def test_a_stalled_acceptor_cannot_hang_the_generator(floor: tuple[int, str, str]) -> None:
    port, us, them = floor
    with LoadGenerator("127.0.0.1", port, sender_comp_id=them, target_comp_id=us) as gen:
        result = gen.run(2000, 1.0, max_in_flight=0, drain_s=0.0)  # no answer can come in time
    assert result.sent < 2000 and not result.sustained()
