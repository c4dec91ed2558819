"""tectra.core.config: validated TOML config; every error names its key and value."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tectra.core.config import (
    KNOWN_ROLES,
    ConfigError,
    RingConfig,
    RoleConfig,
    TectraConfig,
    config_keys,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]

VALID: dict[str, Any] = {
    "appliance": {
        "name": "tectra-test",
        "state_dir": "/tmp/tectra/state",
        "shm_root": "/dev/shm/tectra-test",
        "log_level": "debug",
    },
    "metrics": {"host": "127.0.0.1"},
    "roles": {
        "feed": {"cpus": [0, 1], "metrics_port": 9101, "watchdog_s": 10, "warmup_ticks": 5},
        "gateway": {"metrics_port": 0},
    },
    "rings": {
        "md": {"capacity": 65536, "kind": "spsc", "policy": "overwrite", "record": "RING_PROBE"},
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """VALID with the dotted key `path` set to `value`."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


def error_for(data: dict[str, Any], cpu_count: int = 4) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml", cpu_count=cpu_count)
    return info.value


def test_valid_config_parses_to_typed_values() -> None:
    cfg = parse_config(VALID, "test.toml", cpu_count=4)
    assert cfg.appliance.name == "tectra-test"
    assert cfg.appliance.state_dir == Path("/tmp/tectra/state")
    assert cfg.appliance.log_level == "debug"
    feed = cfg.role("feed")
    assert feed == RoleConfig(cpus=(0, 1), metrics_port=9101, watchdog_s=10.0, warmup_ticks=5)
    assert isinstance(feed.watchdog_s, float)
    # Unspecified fields take their documented defaults.
    assert cfg.role("gateway") == RoleConfig(metrics_port=0)
    assert cfg.ring("md") == RingConfig(
        capacity=65536, kind="spsc", policy="overwrite", record="RING_PROBE"
    )
    assert cfg.source == "test.toml"


def test_empty_config_is_all_defaults() -> None:
    cfg = parse_config({}, "empty")
    assert cfg.appliance.state_dir == Path("/var/lib/tectra")
    assert cfg.appliance.shm_root == Path("/dev/shm/tectra")
    assert cfg.metrics.host == "127.0.0.1"
    assert dict(cfg.roles) == {}
    assert dict(cfg.rings) == {}


def test_config_is_frozen_and_picklable() -> None:
    cfg = parse_config(VALID, "test.toml", cpu_count=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.appliance.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.roles["kill"] = RoleConfig()  # type: ignore[index]
    # Roles may hand their config to child processes.
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_packaged_default_loads_and_has_every_role_and_the_demo_rings() -> None:
    cfg = load_config(None)
    assert set(cfg.roles) == set(KNOWN_ROLES)
    ports = [cfg.role(r).metrics_port for r in KNOWN_ROLES]
    assert len(set(ports)) == len(ports)
    assert all(p >= 9101 for p in ports)
    assert cfg.ring("demo") == RingConfig(
        capacity=65536, kind="spsc", policy="overwrite", record="RING_PROBE"
    )
    assert cfg.ring("orders") == RingConfig(
        capacity=4096, kind="mpmc", policy="backpressure", record="ORDER_REQUEST"
    )
    # Loads on a single-CPU host too: the default pins nothing.
    assert load_config(None, cpu_count=1).role("feed").cpus == ()


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tectra.toml"
    path.write_text('[appliance]\nname = "box1"\n[roles.kill]\nmetrics_port = 9200\n')
    cfg = load_config(path)
    assert cfg.appliance.name == "box1"
    assert cfg.role("kill").metrics_port == 9200
    assert cfg.source == str(path)


def test_load_config_reports_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[appliance\nname = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_config(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[rings.md]\ncapacity = 1000\nrecord = 'X'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: rings.md.capacity = 1000")


@pytest.mark.parametrize(
    ("path", "value", "key", "reason"),
    [
        ("rings.md.capacity", 1000, "rings.md.capacity", "power of two"),
        ("rings.md.capacity", 1, "rings.md.capacity", "out of range"),
        ("rings.md.capacity", 2**31, "rings.md.capacity", "out of range"),
        ("rings.md.capacity", "64", "rings.md.capacity", "integer"),
        ("rings.md.capacity", True, "rings.md.capacity", "integer"),
        ("rings.md.policy", "drop", "rings.md.policy", "overwrite, backpressure"),
        ("rings.md.kind", "spmc", "rings.md.kind", "spsc, mpmc"),
        ("rings.md.record", "ring-probe", "rings.md.record", "identifier"),
        ("rings.md.record", 7, "rings.md.record", "string"),
        ("roles.feed.cpus", [0, 9], "roles.feed.cpus[1]", "out of range 0..3"),
        ("roles.feed.cpus", [-1], "roles.feed.cpus[0]", "out of range"),
        ("roles.feed.cpus", [1, 1], "roles.feed.cpus[1]", "twice"),
        ("roles.feed.cpus", ["0"], "roles.feed.cpus[0]", "CPU number"),
        ("roles.feed.cpus", 1, "roles.feed.cpus", "list"),
        ("roles.feed.metrics_port", 70000, "roles.feed.metrics_port", "0..65535"),
        ("roles.feed.watchdog_s", -1.0, "roles.feed.watchdog_s", ">= 0"),
        ("roles.feed.watchdog_s", float("inf"), "roles.feed.watchdog_s", "finite"),
        ("roles.feed.warmup_ticks", -5, "roles.feed.warmup_ticks", ">= 0"),
        ("appliance.log_level", "verbose", "appliance.log_level", "debug, info"),
        ("appliance.state_dir", "var/lib/tectra", "appliance.state_dir", "absolute"),
        ("appliance.name", "has space", "appliance.name", "[A-Za-z0-9_-]"),
        ("metrics.host", "not a host!", "metrics.host", "IP address or a host name"),
    ],
)
def test_bad_values_name_key_and_value(path: str, value: Any, key: str, reason: str) -> None:
    err = error_for(with_change(path, value))
    assert err.key == key
    assert reason in err.reason
    message = str(err)
    assert message.startswith("test.toml: ")
    assert key in message
    assert repr(err.value) in message
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("path", "key", "hint"),
    [
        ("appliance.nmae", "appliance.nmae", "did you mean 'name'"),
        ("roles.feed.cpu", "roles.feed.cpu", "did you mean 'cpus'"),
        ("rings.md.capacty", "rings.md.capacty", "did you mean 'capacity'"),
        ("metricz", "metricz", "did you mean 'metrics'"),
        ("roles.fed", "roles.fed", "unknown role (did you mean 'feed'"),
    ],
)
def test_unknown_keys_are_errors_with_a_hint(path: str, key: str, hint: str) -> None:
    err = error_for(with_change(path, {} if path.startswith("roles.") else 1))
    assert err.key == key
    assert hint in err.reason


def test_required_ring_record_missing() -> None:
    data = copy.deepcopy(VALID)
    del data["rings"]["md"]["record"]
    err = error_for(data)
    assert err.key == "rings.md.record"
    assert "required" in err.reason
    assert "<missing>" in str(err)


def test_section_must_be_a_table() -> None:
    err = error_for(with_change("appliance", "x"))
    assert err.key == "appliance"
    assert "table" in err.reason
    err = error_for(with_change("rings.md", 5))
    assert err.key == "rings.md"


def test_ring_names_must_be_file_safe() -> None:
    data = copy.deepcopy(VALID)
    data["rings"]["../etc"] = data["rings"].pop("md")
    err = error_for(data)
    assert err.key == "rings.../etc"


def test_duplicate_fixed_metrics_ports_are_rejected() -> None:
    data = with_change("roles.gateway.metrics_port", 9101)
    err = error_for(data)
    assert err.key == "roles.gateway.metrics_port"
    assert err.value == 9101
    assert "roles.feed.metrics_port" in err.reason
    # Port 0 (ephemeral) may repeat.
    data = with_change("roles.feed.metrics_port", 0)
    parse_config(data, "t", cpu_count=4)


def test_role_and_ring_lookup_errors() -> None:
    cfg = parse_config(VALID, "test.toml", cpu_count=4)
    with pytest.raises(ConfigError, match="unknown role") as info:
        cfg.role("trader")
    assert info.value.key == "roles.trader"
    with pytest.raises(ConfigError, match="not configured"):
        cfg.role("kill")  # a known role without a table
    with pytest.raises(ConfigError, match="no such ring") as info:
        cfg.ring("orders")
    assert info.value.key == "rings.orders"


def test_cpu_validation_uses_the_cpu_count() -> None:
    data = with_change("roles.feed.cpus", [3])
    parse_config(data, "t", cpu_count=4)
    err = error_for(data, cpu_count=2)
    assert err.key == "roles.feed.cpus[0]"
    assert err.value == 3


@given(st.integers(1, 30))
def test_every_power_of_two_capacity_is_accepted(exp: int) -> None:
    cfg = parse_config(with_change("rings.md.capacity", 2**exp), "t", cpu_count=4)
    assert cfg.ring("md").capacity == 2**exp


@given(st.integers(3, 2**30).filter(lambda n: n & (n - 1) != 0))
def test_non_power_of_two_capacity_is_rejected(n: int) -> None:
    err = error_for(with_change("rings.md.capacity", n))
    assert err.key == "rings.md.capacity"
    assert err.value == n


def test_every_key_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    keys = config_keys()
    assert {k.key.split(".")[0] for k in keys} == {
        "appliance",
        "metrics",
        "roles",
        "rings",
        "feed",
        "journal",
        "demo",
        "kill",
        "mgmt",
        "gateway",
    }
    missing = [k.key for k in keys if f"`{k.key}`" not in doc]
    assert not missing, f"undocumented config keys: {missing}"
    assert all(k.doc for k in keys)


def test_every_schema_field_has_docs_and_a_parser() -> None:
    for section in (TectraConfig, RoleConfig, RingConfig):
        for f in dataclasses.fields(section):
            if f.name == "source":
                continue
            assert f.metadata.get("doc"), f"{section.__name__}.{f.name} undocumented"
            assert callable(f.metadata.get("parse"))
