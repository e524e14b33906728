"""Notification channels: log, webhook (plain JSON or Slack's ``{"text": ...}``) and SMTP e-mail.

``build_channels`` makes them from the config (failing at startup when an e-mail channel's credential
variables are not set); ``Dispatcher.deliver`` sends one notification to its channels in worker
threads, each retried with exponential backoff, and gives up after the delivery timeout, so a
channel that is down never holds the caller (the service's check runs off the event loop anyway).
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from maskops.monitor.alert_config import (
    DeliveryConfig,
    EmailChannelConfig,
    LogChannelConfig,
    MonitorConfig,
    MonitorConfigError,
    WebhookChannelConfig,
    check_webhook_url,
)
from maskops.monitor.alerts import Notification

logger = logging.getLogger(__name__)
alert_logger = logging.getLogger("maskops.monitor.alerts")


class Channel(Protocol):
    """Sends a notification; raises on failure (the dispatcher retries)."""

    name: str

    def send(self, note: Notification) -> None: ...


def notification_text(note: Notification) -> str:
    """The notification as one human-readable text (title, message, incident)."""
    value = "" if note.value is None else f" value {note.value:.4g}"
    threshold = "" if note.threshold is None else f", threshold {note.threshold:.4g}"
    retrain = "; retraining requested" if note.retrain and note.state == "firing" else ""
    return (
        f"{note.title}: {note.message}\n"
        f"incident {note.incident_id} at {note.created_at.isoformat(timespec='seconds')}Z{value}{threshold}{retrain}"
    )


@dataclass
class LogChannel:
    name: str
    level: int = logging.WARNING

    def send(self, note: Notification) -> None:
        alert_logger.log(
            self.level,
            "alert %s: %s",
            note.state,
            notification_text(note).replace("\n", " | "),
            extra={"alert": note.to_dict()},
        )


@dataclass
class WebhookChannel:
    name: str
    url: str
    format: str = "json"
    headers: Mapping[str, str] | None = None
    timeout_s: float = 5.0

    def body(self, note: Notification) -> dict[str, Any]:
        """The POST body: the notification, or Slack's ``{"text": ...}``."""
        return {"text": notification_text(note)} if self.format == "slack" else note.to_dict()

    def send(self, note: Notification) -> None:
        import httpx

        r = httpx.post(
            self.url, json=self.body(note), headers=dict(self.headers or {}), timeout=self.timeout_s
        )
        if r.status_code >= 300:
            raise RuntimeError(f"webhook answered {r.status_code}: {r.text[:200]}")


@dataclass
class EmailChannel:
    name: str
    host: str
    port: int
    sender: str
    to: Sequence[str]
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0
    ca_file: str | None = None

    def message(self, note: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"maskops {note.title}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["X-Maskops-Incident"] = note.incident_id
        msg.set_content(notification_text(note) + "\n")
        return msg

    def send(self, note: Notification) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                smtp.ehlo()
            if self.username is not None and self.password is not None:
                smtp.login(self.username, self.password)
            smtp.send_message(self.message(note))


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def build_channel(name: str, cfg: Any, env: Mapping[str, str] | None = None) -> Channel:
    """One channel from its config.

    Raises:
        MonitorConfigError: an e-mail channel whose credential variables are not set (named).
    """
    env = os.environ if env is None else env
    if isinstance(cfg, LogChannelConfig):
        return LogChannel(name, _LEVELS[cfg.level])
    if isinstance(cfg, WebhookChannelConfig):
        url = cfg.url
        if cfg.url_env is not None:
            if cfg.url_env not in env:
                raise MonitorConfigError(
                    f"channels.{name}.url_env: environment variable {cfg.url_env} is not set "
                    "(it holds the webhook URL)"
                )
            url = env[cfg.url_env]
            try:
                check_webhook_url(url)
            except ValueError:
                raise MonitorConfigError(
                    f"channels.{name}.url_env: {cfg.url_env} does not hold an http:// or https:// URL"
                ) from None  # the URL itself is a secret: not in the message
        if url is None:  # pragma: no cover - the config model requires url or url_env
            raise MonitorConfigError(f"channels.{name}: give url or url_env")
        return WebhookChannel(name, url, cfg.format, dict(cfg.headers), cfg.timeout_s)
    if isinstance(cfg, EmailChannelConfig):
        creds: dict[str, str | None] = {"username": None, "password": None}
        for field, var in (("username", cfg.username_env), ("password", cfg.password_env)):
            if var is None:
                continue
            if var not in env:
                raise MonitorConfigError(
                    f"channels.{name}.{field}_env: environment variable {var} is not set "
                    f"(it holds the SMTP {field})"
                )
            creds[field] = env[var]
        return EmailChannel(
            name,
            cfg.host,
            cfg.port,
            cfg.sender,
            list(cfg.to),
            cfg.starttls,
            creds["username"],
            creds["password"],
            cfg.timeout_s,
            None if cfg.ca_file is None else str(cfg.ca_file),
        )
    raise MonitorConfigError(f"channels.{name}: unknown channel kind {getattr(cfg, 'kind', cfg)!r}")


def build_channels(config: MonitorConfig, env: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """Every channel of the config, by name (see ``build_channel``)."""
    return {name: build_channel(name, cfg, env) for name, cfg in config.channels.items()}


@dataclass(frozen=True)
class DeliveryOutcome:
    ok: bool
    attempts: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "attempts": self.attempts, "error": self.error}


def backoff_delays(policy: DeliveryConfig) -> list[float]:
    """The waits before each retry: ``backoff_s`` x 2^i, at most ``max_backoff_s``."""
    return [min(policy.max_backoff_s, policy.backoff_s * 2**i) for i in range(policy.retries)]


def send_with_retry(
    channel: Channel, note: Notification, policy: DeliveryConfig, stop: threading.Event | None = None
) -> DeliveryOutcome:
    """Send, retrying a failure after each of ``backoff_delays`` (an early ``stop`` ends the waits)."""
    stop = stop or threading.Event()
    delays = backoff_delays(policy)
    error = None
    for attempt in range(1, len(delays) + 2):
        try:
            channel.send(note)
            return DeliveryOutcome(True, attempt)
        except Exception as exc:  # any failure of a channel is retried, then reported
            error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("alert channel %s failed (attempt %d): %s", channel.name, attempt, error)
        if attempt > len(delays) or stop.wait(delays[attempt - 1]):
            return DeliveryOutcome(False, attempt, error)
    return DeliveryOutcome(False, len(delays) + 1, error)  # pragma: no cover - the loop returns


class Dispatcher:
    """Delivers notifications in worker threads; ``deliver`` waits at most ``policy.timeout_s``."""

    def __init__(self, policy: DeliveryConfig, max_workers: int = 4) -> None:
        self.policy = policy
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="maskops-alerts")

    def deliver(self, note: Notification, channels: Sequence[Channel]) -> dict[str, DeliveryOutcome]:
        """Send ``note`` to every channel (see ``deliver_many``)."""
        return self.deliver_many([(note, channels)])[0]

    def deliver_many(
        self, items: Sequence[tuple[Notification, Sequence[Channel]]]
    ) -> list[dict[str, DeliveryOutcome]]:
        """Send each notification to its channels, all at once; a send not done within
        ``policy.timeout_s`` is reported as not delivered (its thread ends on its own, within the
        channel's own timeout and the remaining retries, or at ``close``)."""
        futures = [
            {c.name: self._pool.submit(send_with_retry, c, note, self.policy, self._stop) for c in channels}
            for note, channels in items
        ]
        wait([f for per in futures for f in per.values()], timeout=self.policy.timeout_s)
        out = []
        for per in futures:
            outcomes = {}
            for name, fut in per.items():
                if fut.done() and not fut.cancelled():
                    outcomes[name] = fut.result()
                else:
                    fut.cancel()
                    outcomes[name] = DeliveryOutcome(
                        False, 0, f"not delivered within {self.policy.timeout_s:g} s"
                    )
                    logger.warning("alert channel %s: %s", name, outcomes[name].error)
            out.append(outcomes)
        return out

    def close(self) -> None:
        """Stop waiting between retries and release the threads (without waiting for a hung send)."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
