"""Settings: validated configs, credentials, the installed data dictionary, quickfix settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.fix.settings import (
    Credentials,
    FixAcceptorConfig,
    FixConfigError,
    FixInitiatorConfig,
    FixSessionConfig,
    acceptor_settings,
    find_data_dictionary,
    initiator_settings,
    render_ini,
)


def test_data_dictionary_comes_from_the_installed_quickfix() -> None:
    path = find_data_dictionary()
    assert path.name == "FIX44.xml" and path.is_file()
    assert "share/quickfix" in path.as_posix()
    with pytest.raises(FixConfigError, match="not found"):
        find_data_dictionary("FIX99.xml")


def test_credentials_hash_and_verify() -> None:
    creds = Credentials.from_password("trader", "pw-1", iterations=1000)
    assert "pw-1" not in creds.password_hash
    assert creds.verify("trader", "pw-1")
    assert not creds.verify("trader", "pw-2")
    assert not creds.verify("other", "pw-1")
    assert not creds.verify(None, "pw-1") and not creds.verify("trader", None)
    with pytest.raises(FixConfigError, match="password_hash"):
        Credentials("trader", "plain-text")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"session_id": 0}, "session_id"),
        ({"sender_comp_id": "bad id"}, "sender_comp_id"),
        ({"account": "A" * 17}, "account"),
        ({"account_id": -1}, "account_id"),
        ({"limits_profile": ""}, "limits_profile"),
    ],
)
def test_session_config_is_validated(kwargs: dict[str, object], words: str) -> None:
    base: dict[str, object] = {"session_id": 1, "sender_comp_id": "TECTRA", "target_comp_id": "C1"}
    base.update(kwargs)
    with pytest.raises(FixConfigError, match=words):
        FixSessionConfig(**base)  # type: ignore[arg-type]


def test_acceptor_config_from_mapping_and_settings(tmp_path: Path) -> None:
    creds = Credentials.from_password("u", "p", iterations=1000)
    config = FixAcceptorConfig.from_mapping(
        {
            "port": 9878,
            "state_dir": str(tmp_path / "fix"),
            "sessions": [
                {
                    "session_id": 1,
                    "sender_comp_id": "TECTRA",
                    "target_comp_id": "CLIENT1",
                    "account": "ACC1",
                    "limits_profile": "tight",
                    "credentials": {"username": "u", "password_hash": creds.password_hash},
                },
                {"session_id": 2, "sender_comp_id": "TECTRA", "target_comp_id": "CLIENT2"},
            ],
        }
    )
    assert config.sessions[0].credentials == creds
    assert config.sessions[0].limits_profile == "tight" and config.sessions[1].credentials is None
    settings = acceptor_settings(config)
    assert (tmp_path / "fix/store").is_dir() and (tmp_path / "fix/dedupe").is_dir()
    assert settings.get().getString("FileStorePath") == str(tmp_path / "fix/store")
    assert settings.get().getString("ResetOnLogon") == "N"
    ini = render_ini(config)
    for line in (
        "ConnectionType=acceptor",
        "SocketAcceptPort=9878",
        "UseDataDictionary=Y",
        "NonStopSession=Y",
        "PersistMessages=Y",
        "TargetCompID=CLIENT2",
    ):
        assert line in ini


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"bogus": 1}, "unknown keys"),
        ({"sessions": []}, "at least one session"),
        (
            {"sessions": [{"session_id": 1, "sender_comp_id": "T", "target_comp_id": "C", "x": 1}]},
            "unknown keys",
        ),
        (
            {
                "sessions": [
                    {"session_id": 1, "sender_comp_id": "T", "target_comp_id": "C"},
                    {"session_id": 1, "sender_comp_id": "T", "target_comp_id": "D"},
                ]
            },
            "used twice",
        ),
        ({"start_time": "08:00:00"}, "together"),
        ({"start_time": "8h", "end_time": "17:00:00"}, "HH:MM:SS"),
        ({"port": 0}, "port"),
    ],
)
def test_bad_acceptor_configs_name_the_problem(
    data: dict[str, object], words: str, tmp_path: Path
) -> None:
    base: dict[str, object] = {
        "port": 9878,
        "state_dir": str(tmp_path),
        "sessions": [{"session_id": 1, "sender_comp_id": "T", "target_comp_id": "C"}],
    }
    base.update(data)
    with pytest.raises(FixConfigError, match=words):
        FixAcceptorConfig.from_mapping(base)


def test_session_window_and_initiator_settings(tmp_path: Path) -> None:
    config = FixAcceptorConfig(
        port=1,
        state_dir=tmp_path,
        sessions=(FixSessionConfig(1, "T", "C"),),
        start_time="07:00:00",
        end_time="21:00:00",
        file_log=False,
    )
    ini = render_ini(config)
    assert "StartTime=07:00:00" in ini and "NonStopSession" not in ini and "FileLogPath" not in ini
    client = FixInitiatorConfig("127.0.0.1", 9878, "C", "T", heartbeat_s=5, reset_on_logon=True)
    settings = initiator_settings(client)
    assert settings.get().getString("HeartBtInt") == "5"
    assert settings.get().getString("ResetOnLogon") == "Y"
    assert "FileStorePath" not in render_ini(client)
