"""The monitoring config (``configs/monitor.yaml``): how often to check, which window of the store,
the reference profile, the notification channels and the alert rules.

``load_monitor_config`` validates the whole file at startup; a bad field fails with the file, the
field's path (``rules[2].params.max_drop``) and what was expected. Secrets never live in the file:
an e-mail channel names the environment variables holding its user and password.

Rule kinds (``params`` per kind):

- ``drift``: a feature drifted against the reference (``features``: only these; default any);
- ``accuracy_drop``: the label-free accuracy estimate is more than ``max_drop`` below the
  reference's measured accuracy;
- ``error_rate``: the share of 5xx answers among the API's answers in the window is over
  ``max_rate`` (the service counts answers in memory: the store keeps only served predictions, so
  this rule is evaluated by the service's background task, not by ``maskops monitor run``);
- ``latency_p95``: the 95th percentile of the stored requests' processing latency is over ``max_ms``;
- ``compliance``: per site, the share of ``with_mask`` among classified faces is under ``min_rate``;
- ``no_traffic``: no request stored for ``minutes`` (over all traffic, or per site).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maskops.config import REPO_ROOT

DEFAULT_CONFIG = REPO_ROOT / "configs" / "monitor.yaml"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class MonitorConfigError(ValueError):
    """An invalid monitoring config; the message names the file and the field."""


def parse_duration(value: Any, *, allow_zero: bool = False) -> timedelta:
    """A duration: seconds as a number, or ``30s``, ``5m``, ``2h``, ``1d``, ``1w``.

    Raises:
        ValueError: any other form, or a duration that is not positive (zero when ``allow_zero``).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)):
        seconds = timedelta(**{_UNITS[m.group(2)]: float(m.group(1))}).total_seconds()
    else:
        raise ValueError(f"expected a duration like 30s, 5m, 2h or 1d, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"expected a {'non-negative' if allow_zero else 'positive'} duration, got {value!r}")
    return timedelta(seconds=seconds)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- window


class WindowConfig(_Strict):
    """The window of the store each check tests: by time (``since: 1h``) or by count (``last: 1000``)."""

    since: timedelta | None = Field(default=None, description="the requests of this period back")
    last: int | None = Field(default=None, ge=1, description="the latest N faces")

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, v: Any) -> timedelta | None:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _one(self) -> WindowConfig:
        if (self.since is None) == (self.last is None):
            raise ValueError("give exactly one of since (e.g. 1h) or last (e.g. 1000 faces)")
        return self


# --- channels


class LogChannelConfig(_Strict):
    """Notifications as log records of the ``maskops.monitor.alerts`` logger."""

    kind: Literal["log"]
    level: Literal["info", "warning", "error"] = "warning"


class WebhookChannelConfig(_Strict):
    """A POST of the notification as JSON (``format: json``) or as Slack's ``{"text": ...}``."""

    kind: Literal["webhook"]
    url: str | None = Field(default=None, description="http(s) URL")
    url_env: str | None = Field(
        default=None,
        description="environment variable holding the URL (a Slack webhook URL is itself a secret)",
    )
    format: Literal["json", "slack"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None:
            check_webhook_url(v)
        return v

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannelConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        return self


def check_webhook_url(v: str) -> None:
    """Raises ValueError unless ``v`` is an http(s) URL with a host."""
    if not re.match(r"^https?://[^/\s]+", v):
        raise ValueError(f"expected an http:// or https:// URL, got {v!r}")


class EmailChannelConfig(_Strict):
    """An e-mail through an SMTP server; user and password come from the named environment variables."""

    kind: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS before login")
    ca_file: Path | None = Field(
        default=None, description="CA certificates (PEM) to verify the server with (default: the system's)"
    )
    sender: str = Field(description="the From address")
    to: list[str] = Field(min_length=1, description="recipients")
    username_env: str | None = Field(default=None, description="environment variable holding the SMTP user")
    password_env: str | None = Field(
        default=None, description="environment variable holding the SMTP password"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError(f"expected an e-mail address, got {v!r}")
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "@" not in a]
        if bad:
            raise ValueError(f"expected e-mail addresses, got {bad}")
        return v

    @model_validator(mode="after")
    def _pair(self) -> EmailChannelConfig:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("give both username_env and password_env, or neither")
        return self


ChannelConfig = Annotated[
    LogChannelConfig | WebhookChannelConfig | EmailChannelConfig, Field(discriminator="kind")
]


class DeliveryConfig(_Strict):
    """Retries of a failing channel: ``retries`` more attempts, waiting ``backoff_s`` x 2^i (at most
    ``max_backoff_s``); a notification's delivery is given up after ``timeout_s`` in all."""

    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=1.0, ge=0, le=60)
    max_backoff_s: float = Field(default=30.0, ge=0, le=600)
    timeout_s: float = Field(default=60.0, gt=0, le=600)


# --- rules


class DriftParams(_Strict):
    features: list[str] | None = Field(default=None, description="only these features (default: any)")


class AccuracyDropParams(_Strict):
    max_drop: float = Field(gt=0, le=1, description="fires when reference - estimate > max_drop")


class ErrorRateParams(_Strict):
    max_rate: float = Field(gt=0, le=1, description="fires when the 5xx share is over this")
    min_requests: int = Field(default=20, ge=1, description="fewer answers in the window: no verdict")


class LatencyParams(_Strict):
    max_ms: float = Field(gt=0, description="fires when the window's p95 latency is over this")
    min_requests: int = Field(default=20, ge=1, description="fewer requests in the window: no verdict")


class ComplianceParams(_Strict):
    min_rate: float = Field(ge=0, le=1, description="fires for a site whose compliance rate is under this")
    min_faces: int = Field(default=20, ge=1, description="sites with fewer classified faces: no verdict")
    sites: list[str] | None = Field(default=None, description="only these sites (default: every site)")


class NoTrafficParams(_Strict):
    minutes: float = Field(gt=0, description="fires when nothing was stored for this long")
    per_site: bool = Field(default=False, description="one alert per silent site instead of overall")


class _Rule(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    severity: Literal["info", "warning", "critical"] = "warning"
    channels: list[str] = Field(default_factory=list, description="names under channels:")
    cooldown: timedelta = Field(
        default=timedelta(minutes=30), description="notifications of a rule are at least this far apart"
    )
    retrain: bool = Field(default=False, description="a firing alert asks for retraining (read by flows)")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> timedelta:
        return parse_duration(v, allow_zero=True)


class DriftRule(_Rule):
    kind: Literal["drift"]
    params: DriftParams = Field(default_factory=DriftParams)


class AccuracyDropRule(_Rule):
    kind: Literal["accuracy_drop"]
    params: AccuracyDropParams


class ErrorRateRule(_Rule):
    kind: Literal["error_rate"]
    params: ErrorRateParams


class LatencyRule(_Rule):
    kind: Literal["latency_p95"]
    params: LatencyParams


class ComplianceRule(_Rule):
    kind: Literal["compliance"]
    params: ComplianceParams


class NoTrafficRule(_Rule):
    kind: Literal["no_traffic"]
    params: NoTrafficParams


RuleConfig = Annotated[
    DriftRule | AccuracyDropRule | ErrorRateRule | LatencyRule | ComplianceRule | NoTrafficRule,
    Field(discriminator="kind"),
]
RULE_KINDS = ("drift", "accuracy_drop", "error_rate", "latency_p95", "compliance", "no_traffic")
CHANNEL_KINDS = ("log", "webhook", "email")


class MonitorConfig(_Strict):
    """The whole ``configs/monitor.yaml``."""

    interval: timedelta = Field(default=timedelta(minutes=5), description="time between checks")
    window: WindowConfig = Field(default_factory=lambda: WindowConfig(since=timedelta(hours=1)))
    reference: Path | None = Field(
        default=None,
        description="reference profile (default: <models_dir>/<face_model>.reference.json, the shipped "
        "model's); relative paths are read from the working directory",
    )
    drift_tests: dict[str, str] = Field(
        default_factory=dict, description="feature -> drift test, overriding the default per kind"
    )
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> timedelta:
        return parse_duration(v)

    @field_validator("drift_tests")
    @classmethod
    def _tests(cls, v: dict[str, str]) -> dict[str, str]:
        from maskops.monitor.drift import get_drift_test

        return {feature: get_drift_test(test).name for feature, test in v.items()}

    @model_validator(mode="after")
    def _links(self) -> MonitorConfig:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        for i, rule in enumerate(self.rules):
            unknown = [c for c in rule.channels if c not in self.channels]
            if unknown:
                known = ", ".join(sorted(self.channels)) or "none defined"
                raise ValueError(
                    f"rules[{i}].channels: unknown channel(s) {', '.join(unknown)} (channels: {known})"
                )
        return self

    def rule(self, name: str) -> RuleConfig:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)


def _loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as ``rules[2].params.max_drop`` (the union's tag left out)."""
    parts = list(loc)
    tags = {"rules": RULE_KINDS, "channels": CHANNEL_KINDS}
    if len(parts) >= 3 and parts[0] in tags and parts[2] in tags[str(parts[0])]:
        del parts[2]  # rules[i].<kind>... / channels.<name>.<kind>...
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per error: ``<source>: <field path>: <what was expected> (got <value>)``."""
    lines = []
    for err in exc.errors():
        where = _loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        plain = isinstance(got, dict | list) or err["type"] in ("missing", "value_error")
        shown = "" if plain else f" (got {got!r})"
        lines.append(f"{source}: {where}: {msg}{shown}")
    return "\n".join(lines)


def parse_monitor_config(data: Any, source: str = "monitor config") -> MonitorConfig:
    """Validate already-read config data.

    Raises:
        MonitorConfigError: the data is not a valid config; the message names ``source`` and the field.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MonitorConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        raise MonitorConfigError(format_validation_error(exc, source)) from None


def load_monitor_config(path: Path | str = DEFAULT_CONFIG) -> MonitorConfig:
    """Read and validate a monitoring config file.

    Raises:
        MonitorConfigError: a missing or unreadable file, bad YAML, or an invalid field (named).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MonitorConfigError(f"{path}: cannot read the monitoring config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MonitorConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_monitor_config(data, str(path))


def reference_path(config: MonitorConfig, models_dir: Path, face_model: str = "facemask") -> Path:
    """The reference profile a config points at: its ``reference``, else the shipped model's
    ``<models_dir>/<face_model>.reference.json``."""
    return config.reference if config.reference is not None else models_dir / f"{face_model}.reference.json"
