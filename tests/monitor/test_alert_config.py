"""configs/monitor.yaml and its validation: a bad field is named with the file and what was expected."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from maskops.monitor.alert_config import (
    DEFAULT_CONFIG,
    MonitorConfigError,
    load_monitor_config,
    parse_duration,
    parse_monitor_config,
    reference_path,
)
from maskops.monitor.channels import build_channels

RULE = {"name": "drop", "kind": "accuracy_drop", "params": {"max_drop": 0.05}, "channels": ["log"]}
BASE: dict[str, Any] = {"channels": {"log": {"kind": "log"}}, "rules": [RULE]}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_shipped_config_is_valid() -> None:
    cfg = load_monitor_config(DEFAULT_CONFIG)
    assert cfg.interval == timedelta(minutes=5)
    assert cfg.window.since == timedelta(hours=1) and cfg.window.last is None
    kinds = {r.kind for r in cfg.rules}
    assert kinds == {"drift", "accuracy_drop", "error_rate", "latency_p95", "compliance", "no_traffic"}
    assert all(r.channels == ["log"] for r in cfg.rules)
    assert cfg.rule("input-drift").retrain is True
    assert reference_path(cfg, Path("/m"), "facemask") == Path("/m/facemask.reference.json")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            with_(rules=[{**RULE, "params": {"max_drop": -1}}]),
            r"rules\[0\]\.params\.max_drop: .*greater than 0",
        ),
        (with_(rules=[{**RULE, "params": {}}]), r"rules\[0\]\.params\.max_drop: Field required"),
        (with_(rules=[{**RULE, "kind": "cpu"}]), r"rules\[0\]: .*'drift', 'accuracy_drop'"),
        (with_(rules=[{**RULE, "cooldown": "soon"}]), r"rules\[0\]\.cooldown: expected a duration like 30s"),
        (
            with_(rules=[{**RULE, "channels": ["pager"]}]),
            r"rules\[0\]\.channels: unknown channel\(s\) pager \(channels: log\)",
        ),
        (with_(rules=[RULE, RULE]), r"rule names must be unique; repeated: drop"),
        (
            with_(rules=[{**RULE, "severity": "huge"}]),
            r"rules\[0\]\.severity: Input should be 'info', 'warning' or 'critical'",
        ),
        (with_(rules=[{**RULE, "retrian": True}]), r"rules\[0\]\.retrian: Extra inputs are not permitted"),
        (with_(window={"since": "1h", "last": 10}), r"window: give exactly one of since"),
        (with_(window={"last": 0}), r"window\.last: .*greater than or equal to 1"),
        (with_(interval="often"), r"interval: expected a duration"),
        (
            with_(channels={"hook": {"kind": "webhook", "url": "ftp://x"}}),
            r"channels\.hook\.url: expected an http",
        ),
        (
            with_(
                channels={
                    "mail": {"kind": "email", "host": "h", "sender": "a@b", "to": ["c@d"], "password": "x"}
                }
            ),
            r"channels\.mail\.password: Extra inputs are not permitted",
        ),
        (
            with_(
                channels={
                    "mail": {
                        "kind": "email",
                        "host": "h",
                        "sender": "a@b",
                        "to": ["c@d"],
                        "username_env": "U",
                    }
                }
            ),
            r"channels\.mail: .*both username_env and password_env",
        ),
        (with_(drift_tests={"brightness": "kss"}), r"drift_tests: .*kss"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(MonitorConfigError, match=expected) as info:
        parse_monitor_config(data, "m.yaml")
    assert str(info.value).startswith("m.yaml: ")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "monitor.yaml"
    bad.write_text(yaml.safe_dump(with_(rules=[{**RULE, "params": {"max_drop": 2}}])))
    with pytest.raises(
        MonitorConfigError, match=rf"{bad}: rules\[0\]\.params\.max_drop: .*less than or equal to 1 \(got 2\)"
    ):
        load_monitor_config(bad)
    bad.write_text("rules: [")
    with pytest.raises(MonitorConfigError, match="not valid YAML"):
        load_monitor_config(bad)
    with pytest.raises(MonitorConfigError, match="cannot read"):
        load_monitor_config(tmp_path / "missing.yaml")
    bad.write_text("- a list")
    with pytest.raises(MonitorConfigError, match="expected a mapping"):
        load_monitor_config(bad)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration(2) == timedelta(seconds=2)
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    for bad in ("0s", "-1m", "5 minutes", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_email_credentials_come_from_the_environment() -> None:
    mail = {
        "kind": "email",
        "host": "h",
        "sender": "a@b",
        "to": ["c@d"],
        "username_env": "SMTP_U",
        "password_env": "SMTP_P",
    }
    cfg = parse_monitor_config(with_(channels={"log": {"kind": "log"}, "mail": mail}))
    with pytest.raises(
        MonitorConfigError, match=r"channels\.mail\.username_env: environment variable SMTP_U is not set"
    ):
        build_channels(cfg, env={})
    channels = build_channels(cfg, env={"SMTP_U": "user", "SMTP_P": "secret"})
    assert channels["mail"].username == "user" and channels["mail"].password == "secret"  # type: ignore[attr-defined]


def test_webhook_url_from_the_environment() -> None:
    hook = {"kind": "webhook", "url_env": "HOOK_URL", "format": "slack"}
    cfg = parse_monitor_config(with_(channels={"log": {"kind": "log"}, "hook": hook}))
    with pytest.raises(MonitorConfigError, match=r"channels\.hook\.url_env: environment variable HOOK_URL"):
        build_channels(cfg, env={})
    with pytest.raises(MonitorConfigError, match="does not hold an http") as bad:
        build_channels(cfg, env={"HOOK_URL": "ftp://secret-token"})
    assert "secret-token" not in str(bad.value)  # the URL is a secret: never in a message
    channels = build_channels(cfg, env={"HOOK_URL": "https://hooks.example.org/T0/B0/x"})
    assert channels["hook"].url == "https://hooks.example.org/T0/B0/x"  # type: ignore[attr-defined]
    for both_or_none in ({"kind": "webhook"}, {"kind": "webhook", "url": "https://a", "url_env": "X"}):
        with pytest.raises(MonitorConfigError, match="exactly one of url and url_env"):
            parse_monitor_config(with_(channels={"log": {"kind": "log"}, "hook": both_or_none}))
