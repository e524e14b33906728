"""Alert channels against real local receivers: an HTTP server and an aiosmtpd SMTP server; retries
with backoff, and a channel that is down or hangs never holds the delivery past its timeout."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime
from pathlib import Path

import pytest
from alert_receivers import free_port, http_receiver, self_signed_cert, smtp_receiver

from maskops.monitor.alert_config import DeliveryConfig
from maskops.monitor.alerts import Notification
from maskops.monitor.channels import (
    Dispatcher,
    EmailChannel,
    LogChannel,
    WebhookChannel,
    backoff_delays,
    send_with_retry,
)

NOTE = Notification(
    rule="input-drift",
    key="",
    state="firing",
    incident_id="abc123",
    severity="warning",
    value=2.0,
    threshold=0.0,
    message="drift in 2 feature(s)",
    created_at=datetime(2026, 12, 3, 9, 0),
    retrain=True,
)
FAST = DeliveryConfig(retries=2, backoff_s=0.01, max_backoff_s=0.02, timeout_s=30)


def test_webhook_plain_json_and_slack() -> None:
    with http_receiver() as rx:
        WebhookChannel("hook", rx.url, "json", {"X-Token": "t"}).send(NOTE)
        WebhookChannel("slack", rx.url, "slack").send(NOTE)
    plain, slack = rx.bodies
    assert plain == {
        "rule": "input-drift",
        "key": "",
        "state": "firing",
        "incident_id": "abc123",
        "severity": "warning",
        "value": 2.0,
        "threshold": 0.0,
        "message": "drift in 2 feature(s)",
        "created_at": "2026-12-03T09:00:00Z",
        "retrain": True,
    }
    assert rx.headers[0]["X-Token"] == "t"
    assert list(slack) == ["text"]
    assert slack["text"].startswith("[FIRING] input-drift (warning): drift in 2 feature(s)")
    assert "incident abc123" in slack["text"] and "retraining requested" in slack["text"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_with_credentials() -> None:
    with smtp_receiver(credentials=("alerts", "s3cret")) as rx:
        EmailChannel(
            "mail",
            "127.0.0.1",
            rx.port,
            "maskops@example.org",
            ["ops@example.org"],
            False,
            "alerts",
            "s3cret",
        ).send(NOTE)
    (msg,) = rx.messages
    assert rx.logins == [("alerts", "s3cret")]
    assert rx.envelopes == [("maskops@example.org", ["ops@example.org"])]
    assert msg["Subject"] == "maskops [FIRING] input-drift (warning)"
    assert msg["X-Maskops-Incident"] == "abc123"
    assert "drift in 2 feature(s)" in msg.get_payload()


def test_email_over_starttls_with_login(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="makes the test certificate")
    cert, key = self_signed_cert(tmp_path)
    with smtp_receiver(credentials=("alerts", "s3cret"), tls=(cert, key)) as rx:
        channel = EmailChannel(
            "mail", "127.0.0.1", rx.port, "a@b.org", ["c@d.org"], True, "alerts", "s3cret", ca_file=str(cert)
        )
        channel.send(NOTE)
        # without trusting the certificate the upgrade fails, and nothing is sent
        untrusted = dataclasses.replace(channel, ca_file=None)
        outcome = send_with_retry(untrusted, NOTE, DeliveryConfig(retries=0))
    assert len(rx.messages) == 1 and rx.logins == [("alerts", "s3cret")]
    assert not outcome.ok and "CERTIFICATE_VERIFY_FAILED" in (outcome.error or "")


def test_email_starttls_required_but_not_offered_fails_clearly() -> None:
    with smtp_receiver() as rx:
        channel = EmailChannel("mail", "127.0.0.1", rx.port, "a@b.org", ["c@d.org"], starttls=True)
        outcome = send_with_retry(channel, NOTE, DeliveryConfig(retries=0))
    assert not outcome.ok and "STARTTLS" in (outcome.error or "")
    assert rx.messages == []


def test_log_channel(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="maskops.monitor.alerts"):
        LogChannel("log").send(NOTE)
    (rec,) = [r for r in caplog.records if r.name == "maskops.monitor.alerts"]
    assert rec.levelno == logging.WARNING and "alert firing: [FIRING] input-drift" in rec.getMessage()
    assert rec.alert["incident_id"] == "abc123"  # type: ignore[attr-defined]


def test_backoff_is_bounded() -> None:
    assert backoff_delays(DeliveryConfig(retries=5, backoff_s=1, max_backoff_s=5)) == [1, 2, 4, 5, 5]


def test_a_failing_channel_is_retried() -> None:
    with http_receiver(fail_first=2) as rx:
        outcome = send_with_retry(WebhookChannel("hook", rx.url), NOTE, FAST)
    assert (outcome.ok, outcome.attempts) == (True, 3)
    assert len(rx.bodies) == 1


def test_a_channel_that_is_down_does_not_hold_the_others() -> None:
    down = WebhookChannel("down", f"http://127.0.0.1:{free_port()}/hook", timeout_s=1)
    with http_receiver() as rx, Dispatcher(FAST) as d:
        out = d.deliver(NOTE, [down, WebhookChannel("up", rx.url)])
    assert out["up"].ok and out["up"].attempts == 1
    assert not out["down"].ok and out["down"].attempts == 3 and "ConnectError" in (out["down"].error or "")
    assert len(rx.bodies) == 1


@dataclasses.dataclass
class FakeChannel:
    """In memory: records what it got; with ``hold`` set, blocks in send until it is released."""

    name: str
    hold: threading.Event | None = None
    got: list[Notification] = dataclasses.field(default_factory=list)

    def send(self, note: Notification) -> None:
        if self.hold is not None:
            self.hold.wait()
        self.got.append(note)


def test_a_hanging_channel_is_given_up_at_the_timeout() -> None:
    release = threading.Event()
    stuck, up = FakeChannel("stuck", hold=release), FakeChannel("up")
    with Dispatcher(DeliveryConfig(retries=3, backoff_s=0.01, timeout_s=2)) as d:
        out = d.deliver(NOTE, [stuck, up])
        release.set()
    assert out["up"].ok and up.got == [NOTE]
    assert not out["stuck"].ok and out["stuck"].error == "not delivered within 2 s"
