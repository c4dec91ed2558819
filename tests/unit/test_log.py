"""tectra.core.log: JSON lines, component, fields, correlation ids, idempotent configure."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tectra.core.log import (
    configure_logging,
    correlation,
    current_correlation_id,
    get_logger,
    new_correlation_id,
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buf = io.StringIO()
    configure_logging("debug", stream=buf)
    yield buf
    for h in list(root.handlers):
        if h not in saved_handlers:
            root.removeHandler(h)
    root.setLevel(saved_level)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_one_json_object_per_line_with_core_keys(stream: io.StringIO) -> None:
    get_logger("feed").info("gap detected", missing=3, session="S1")
    (rec,) = lines(stream)
    assert list(rec)[:4] == ["ts", "level", "component", "msg"]
    assert rec["level"] == "info"
    assert rec["component"] == "feed"
    assert rec["msg"] == "gap detected"
    assert rec["missing"] == 3
    assert rec["session"] == "S1"
    assert "correlation_id" not in rec
    ts = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
    assert ts.utcoffset() is not None
    assert rec["ts"].endswith("Z")


def test_correlation_ids_follow_the_context(stream: io.StringIO) -> None:
    log = get_logger("gateway")
    assert current_correlation_id() is None
    with correlation() as outer:
        assert len(outer) == 16
        log.info("outer")
        with correlation("wire-123"):
            log.info("inner")
        log.info("outer again")
    log.info("none")
    cids = [r.get("correlation_id") for r in lines(stream)]
    assert cids == [outer, "wire-123", outer, None]
    assert current_correlation_id() is None


def test_correlation_does_not_leak_across_threads(stream: io.StringIO) -> None:
    log = get_logger("t")
    with correlation("main-thread"):
        t = threading.Thread(target=lambda: log.info("from thread"))
        t.start()
        t.join()
    (rec,) = lines(stream)
    assert "correlation_id" not in rec


def test_new_correlation_ids_are_unique() -> None:
    ids = {new_correlation_id() for _ in range(1000)}
    assert len(ids) == 1000


def test_configure_is_idempotent(stream: io.StringIO) -> None:
    configure_logging("debug", stream=stream)
    configure_logging("debug", stream=stream)
    get_logger("x").info("once")
    assert len(lines(stream)) == 1


def test_level_filters(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream)
    log = get_logger("x")
    log.info("dropped")
    log.debug("dropped")
    log.warning("kept")
    log.error("kept too")
    assert [r["level"] for r in lines(stream)] == ["warning", "error"]
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose")


def test_non_json_values_do_not_break_logging(stream: io.StringIO) -> None:
    get_logger("x").info(
        "values", n=np.int64(7), f=np.float64(0.5), p=Path("/a/b"), raw=b"\x01\x02", obj=object()
    )
    (rec,) = lines(stream)
    assert rec["n"] == 7
    assert rec["f"] == 0.5
    assert rec["p"] == "/a/b"
    assert rec["raw"] == "0102"
    assert rec["obj"].startswith("<object")


def test_reserved_names_cannot_overwrite_core_keys(stream: io.StringIO) -> None:
    # `msg` and `level` collide with the logging call's own parameters: they come via extra=.
    get_logger("x").info("real", component="fake", extra={"msg": "fake", "level": "fake"})
    (rec,) = lines(stream)
    assert (rec["msg"], rec["level"], rec["component"]) == ("real", "info", "x")
    assert rec["_msg"] == rec["_level"] == rec["_component"] == "fake"


def test_bind_and_stdlib_extra(stream: io.StringIO) -> None:
    log = get_logger("gw").bind(session="C1")
    log.info("a", extra={"order": 5})
    logging.getLogger("thirdparty").warning("b", extra={"k": "v"})
    a, b = lines(stream)
    assert a["session"] == "C1" and a["order"] == 5
    assert b["component"] == "thirdparty" and b["k"] == "v"


def test_exceptions_are_logged_as_a_field(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("x").error("failed", exc_info=True)
    (rec,) = lines(stream)
    assert "RuntimeError: boom" in rec["exc"]
    assert "\n" not in stream.getvalue().rstrip("\n")  # still one line
