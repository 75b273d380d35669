"""pmops.delivery.notify against real SMTP servers (aiosmtpd on 127.0.0.1) and real TLS
(trustme)."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from pmops.delivery import notify
from pmops.delivery.notify import Message, NotificationError
from pmops.settings import Settings

RESULTS = "https://pmops.example.com/api/t1/p1/async/operation/op_7f3a/results"

SNAPSHOT: dict[str, Any] = {
    "operationId": "op_7f3a",
    "operationType": "ProcessMiningAnalysis",
    "operationName": "Monthly process analysis",
    "status": "Completed",
    "progress": {
        "percentage": 100,
        "currentPhase": "Report Generation",
        "phasesCompleted": 4,
        "totalPhases": 4,
        "startTime": "2024-05-01T10:00:00Z",
        "elapsedTime": "23 minutes 15 seconds",
    },
    "execution": {
        "processedRecords": 262200,
        "totalRecords": 262200,
        "processingRate": "11277 records/minute",
    },
    "phases": [
        {"phaseName": "Data Loading", "status": "Completed", "duration": "2 minutes"},
        {"phaseName": "Process Discovery", "status": "Completed", "duration": "8 minutes"},
        {"phaseName": "Machine Learning", "status": "Completed", "duration": "9 minutes"},
        {"phaseName": "Report Generation", "status": "Completed", "duration": "4 minutes"},
    ],
    "dateCreated": "2024-05-01T09:59:58Z",
    "priority": "normal",
}


def stopped(status: str, phase: str, **extra: Any) -> dict[str, Any]:
    """SNAPSHOT as an operation that stopped in `phase` (two of four phases done)."""
    phases = []
    for i, p in enumerate(SNAPSHOT["phases"]):
        state = "Completed" if i < 2 else ("Running" if p["phaseName"] == phase else "Pending")
        phases.append({"phaseName": p["phaseName"], "status": state})
    return {
        **SNAPSHOT,
        "status": status,
        "progress": {
            **SNAPSHOT["progress"],
            "percentage": 61,
            "currentPhase": phase,
            "phasesCompleted": 2,
            "elapsedTime": "1 hour 2 minutes",
        },
        "execution": {**SNAPSHOT["execution"], "processedRecords": 120000},
        "phases": phases,
        **extra,
    }


# -- SMTP servers ----------------------------------------------------------------------------


class Recorder:
    """An aiosmtpd handler keeping what it receives; refuses recipients containing "reject"."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "reject" in address:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as TEST42"

    def only(self) -> tuple[Envelope, EmailMessage]:
        assert len(self.envelopes) == 1
        envelope = self.envelopes[0]
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return envelope, parsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Server = Callable[..., tuple[int, Recorder]]


@pytest.fixture
def smtp() -> Iterator[Server]:
    """Starts aiosmtpd servers on 127.0.0.1 (keyword arguments: Controller, SMTP); stops them."""
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[int, Recorder]:
        handler = Recorder()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return port, handler

    yield start
    for controller in controllers:
        controller.stop()


def settings(port: int, **kwargs: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_sender": "pmops@test.local",
        "smtp_timeout_seconds": 5.0,
    }
    values.update(kwargs)
    return Settings(**values)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def failed_message() -> Message:
    data = stopped(
        "Failed",
        "Machine Learning",
        error={"code": "DATA_QUALITY_ERROR", "message": "column 'timestamp' has 12% nulls"},
    )
    return notify.operation_message("operation.failed", data, RESULTS)


# -- sending email ---------------------------------------------------------------------------


def test_send_email_plain_delivers_failed_operation(smtp: Server) -> None:
    recipients = ["analyst@company.com", "manager@company.com"]
    port, server = smtp()
    answer = notify.send_email(settings(port), recipients, failed_message())
    envelope, mail = server.only()
    assert envelope.mail_from == "pmops@test.local"
    assert envelope.rcpt_tos == recipients
    assert mail["From"] == "pmops@test.local"
    assert mail["To"] == "analyst@company.com, manager@company.com"
    assert mail["Subject"] == "[pmops] Failed: Monthly process analysis"
    assert mail["Message-ID"].endswith("@test.local>")
    assert mail["Date"]
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"
    body = mail.get_content()
    assert "Monthly process analysis" in body
    assert "Status: Failed" in body
    assert "DATA_QUALITY_ERROR" in body
    assert "column 'timestamp' has 12% nulls" in body
    assert f"Results: {RESULTS}" in body
    assert answer == "250 accepted for 2 recipients (2.0.0 Ok: queued as TEST42)"


def test_send_email_non_ascii_and_header_injection(smtp: Server) -> None:
    data = {**SNAPSHOT, "operationName": "Analyse für Köln\r\nBcc: victim@evil.example"}
    message = notify.operation_message("operation.completed", data, RESULTS)
    port, server = smtp()
    notify.send_email(settings(port), ["analyst@company.com"], message)
    envelope, mail = server.only()
    assert envelope.rcpt_tos == ["analyst@company.com"]
    assert mail["Bcc"] is None
    assert mail["Subject"] == ("[pmops] Completed: Analyse für Köln Bcc: victim@evil.example")
    assert "Analyse für Köln" in mail.get_content()


def test_send_email_sender_with_display_name(smtp: Server) -> None:
    port, server = smtp()
    notify.send_email(
        settings(port, smtp_sender="pmops <noreply@pmops.example>"),
        ["analyst@company.com"],
        failed_message(),
    )
    envelope, mail = server.only()
    assert envelope.mail_from == "noreply@pmops.example"
    assert mail["From"] == "pmops <noreply@pmops.example>"


def test_some_recipients_refused_is_an_error_naming_them(smtp: Server) -> None:
    port, server = smtp()
    with pytest.raises(NotificationError) as err:
        notify.send_email(
            settings(port), ["analyst@company.com", "reject@company.com"], failed_message()
        )
    text = str(err.value)
    assert "reject@company.com" in text and "550" in text
    assert "sent to analyst@company.com" in text
    envelope, _ = server.only()
    assert envelope.rcpt_tos == ["analyst@company.com"]


def test_all_recipients_refused(smtp: Server) -> None:
    port, server = smtp()
    with pytest.raises(NotificationError, match="refused all recipients") as err:
        notify.send_email(
            settings(port), ["reject1@company.com", "reject2@company.com"], failed_message()
        )
    assert "reject1@company.com" in str(err.value) and "reject2@company.com" in str(err.value)
    assert server.envelopes == []


def test_starttls_not_offered_never_falls_back_to_plaintext(smtp: Server) -> None:
    port, server = smtp()
    with pytest.raises(NotificationError, match="does not offer STARTTLS"):
        notify.send_email(
            settings(port, smtp_security="starttls"), ["a@company.com"], failed_message()
        )
    assert server.envelopes == []


def test_starttls_delivers(
    smtp: Server, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    port, server = smtp(tls_context=server_tls, require_starttls=True)
    answer = notify.send_email(
        settings(port, smtp_security="starttls"),
        ["analyst@company.com"],
        failed_message(),
        ssl_context=client_tls,
    )
    envelope, mail = server.only()
    assert envelope.rcpt_tos == ["analyst@company.com"]
    assert mail["Subject"] == "[pmops] Failed: Monthly process analysis"
    assert answer.startswith("250 accepted for 1 recipient ")


def test_starttls_untrusted_certificate(smtp: Server, server_tls: ssl.SSLContext) -> None:
    # the system trust store does not know the test CA
    port, server = smtp(tls_context=server_tls, require_starttls=True)
    with pytest.raises(NotificationError, match="certificate not trusted"):
        notify.send_email(
            settings(port, smtp_security="starttls"), ["a@company.com"], failed_message()
        )
    assert server.envelopes == []


def test_implicit_tls_delivers(
    smtp: Server, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    port, server = smtp(ssl_context=server_tls)
    notify.send_email(
        settings(port, smtp_security="tls"),
        ["analyst@company.com"],
        failed_message(),
        ssl_context=client_tls,
    )
    envelope, _ = server.only()
    assert envelope.rcpt_tos == ["analyst@company.com"]


def test_implicit_tls_against_plain_server(smtp: Server) -> None:
    port, server = smtp()
    with pytest.raises(NotificationError, match=r"127\.0\.0\.1"):
        notify.send_email(settings(port, smtp_security="tls"), ["a@company.com"], failed_message())
    assert server.envelopes == []


def authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"mailer"
        and auth_data.password == b"s3cret pass"
    )
    return AuthResult(success=ok, handled=False)


# aiosmtpd warns about AUTH without TLS, which these tests want
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_right_credentials_deliver(smtp: Server) -> None:
    port, server = smtp(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    notify.send_email(
        settings(port, smtp_username="mailer", smtp_password="s3cret pass"),
        ["analyst@company.com"],
        failed_message(),
    )
    envelope, _ = server.only()
    assert envelope.rcpt_tos == ["analyst@company.com"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_wrong_credentials(smtp: Server) -> None:
    port, server = smtp(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    with pytest.raises(NotificationError, match="authentication failed") as err:
        notify.send_email(
            settings(port, smtp_username="mailer", smtp_password="wrong"),
            ["analyst@company.com"],
            failed_message(),
        )
    assert "535" in str(err.value) and "'mailer'" in str(err.value)
    assert "wrong" not in str(err.value)
    assert server.envelopes == []


def test_auth_not_offered_over_plaintext(smtp: Server) -> None:
    # aiosmtpd's default: no AUTH before TLS
    port, server = smtp(authenticator=authenticator)
    with pytest.raises(NotificationError, match="does not offer AUTH"):
        notify.send_email(
            settings(port, smtp_username="mailer", smtp_password="s3cret pass"),
            ["analyst@company.com"],
            failed_message(),
        )
    assert server.envelopes == []


def test_auth_over_starttls(
    smtp: Server, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    port, server = smtp(authenticator=authenticator, tls_context=server_tls, require_starttls=True)
    notify.send_email(
        settings(
            port, smtp_security="starttls", smtp_username="mailer", smtp_password="s3cret pass"
        ),
        ["analyst@company.com"],
        failed_message(),
        ssl_context=client_tls,
    )
    envelope, _ = server.only()
    assert envelope.rcpt_tos == ["analyst@company.com"]


def test_not_configured() -> None:
    with pytest.raises(NotificationError, match="PMOPS_SMTP_HOST"):
        notify.send_email(Settings(smtp_host=None), ["a@company.com"], failed_message())


def test_connection_refused() -> None:
    with pytest.raises(NotificationError, match="refused the connection"):
        notify.send_email(settings(free_port()), ["a@company.com"], failed_message())


def test_server_that_never_greets_times_out() -> None:
    # accepted by the kernel's backlog, never answered
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(NotificationError, match=r"no answer within 0\.3 s"):
            notify.send_email(
                settings(port, smtp_timeout_seconds=0.3), ["a@company.com"], failed_message()
            )


def test_bad_recipients() -> None:
    with pytest.raises(NotificationError, match="no email recipients"):
        notify.send_email(settings(1), ["", "  "], failed_message())
    with pytest.raises(NotificationError, match="invalid email address"):
        notify.send_email(settings(1), ["a@company.com\r\nRCPT TO:<x@y>"], failed_message())


# -- operation messages ----------------------------------------------------------------------


def test_completed_message() -> None:
    m = notify.operation_message("operation.completed", SNAPSHOT, RESULTS)
    assert m.subject == "[pmops] Completed: Monthly process analysis"
    assert m.link == RESULTS
    lines = m.text.splitlines()
    assert lines[0] == 'Operation "Monthly process analysis" completed successfully.'
    for expected in (
        "Type: ProcessMiningAnalysis",
        "Operation ID: op_7f3a",
        "Status: Completed",
        "Ran for: 23 minutes 15 seconds",
        "Phases completed: 4 of 4",
        "Records processed: 262,200 of 262,200",
    ):
        assert expected in lines
    assert lines[-1] == f"Results: {RESULTS}"
    assert "Error" not in m.text and "Stopped in phase" not in m.text


def test_failed_message() -> None:
    m = failed_message()
    assert m.subject == "[pmops] Failed: Monthly process analysis"
    assert "Status: Failed" in m.text
    assert "Error code: DATA_QUALITY_ERROR" in m.text
    assert "Error: column 'timestamp' has 12% nulls" in m.text
    assert "Phases completed: 2 of 4" in m.text
    assert "Records processed: 120,000 of 262,200" in m.text


def test_timeout_message_names_the_phase() -> None:
    m = notify.operation_message(
        "operation.timeout", stopped("Timeout", "Machine Learning"), RESULTS
    )
    assert m.subject == "[pmops] Timed out: Monthly process analysis"
    assert "Status: Timed out" in m.text
    assert "Stopped in phase: Machine Learning" in m.text
    assert "Ran for: 1 hour 2 minutes" in m.text
    # without currentPhase, the phase left running says where it stopped
    data = stopped("Timeout", "Machine Learning")
    del data["progress"]["currentPhase"]
    m = notify.operation_message("operation.timeout", data, RESULTS)
    assert "Stopped in phase: Machine Learning" in m.text


def test_cancelled_message_gives_the_reason() -> None:
    cancellation = {"reason": "Wrong date range", "cancelledBy": "analyst@company.com"}
    data = stopped("Cancelled", "Process Discovery", cancellation=cancellation)
    m = notify.operation_message("operation.cancelled", data, RESULTS)
    assert m.subject == "[pmops] Cancelled: Monthly process analysis"
    assert "Status: Cancelled" in m.text
    assert "Reason: Wrong date range" in m.text
    assert "Cancelled by: analyst@company.com" in m.text
    data = stopped("Cancelled", "Process Discovery", cancelRequest={"reason": "Superseded"})
    assert (
        "Reason: Superseded" in notify.operation_message("operation.cancelled", data, RESULTS).text
    )
    data = stopped("Cancelled", "Process Discovery")
    assert "Reason" not in notify.operation_message("operation.cancelled", data, RESULTS).text


@pytest.mark.parametrize("event", notify.TERMINAL_EVENTS)
@pytest.mark.parametrize(
    "data",
    [
        {},
        {"operationId": "op_1"},
        {"progress": None, "execution": "?", "phases": [None, 3], "error": None},
        {"error": "boom", "cancellation": "user asked", "progress": {"elapsedTime": 75}},
    ],
)
def test_almost_empty_snapshot(event: str, data: dict[str, Any]) -> None:
    m = notify.operation_message(event, data, RESULTS)
    assert m.subject.startswith("[pmops] ")
    assert m.text.splitlines()[-1] == f"Results: {RESULTS}"
    assert "Status: " in m.text
    if data.get("operationId"):
        assert m.subject.endswith(": op_1")
        assert m.text.startswith('Operation "op_1" ')
    else:
        assert m.subject.endswith(": operation")
        assert m.text.startswith("An operation ")


def test_numeric_elapsed_and_long_error() -> None:
    data = {"progress": {"elapsedTime": 75}, "error": {"code": "X", "message": "e" * 10_000}}
    m = notify.operation_message("operation.failed", data, RESULTS)
    assert "Ran for: 1 minute 15 seconds" in m.text
    assert len(m.text) < 3000


def test_webhook_disabled_message() -> None:
    manage = "https://pmops.example.com/api/t1/p1/async/webhooks/wh_9"
    hook = {
        "webhookId": "wh_9",
        "webhookName": "Ops dashboard",
        "webhookUrl": "https://hooks.example.com/services/T000/B000/SECRETTOKEN?key=abc",
    }
    m = notify.webhook_disabled_message(hook, "100 failed attempts in a row over 24 hours", manage)
    assert m.subject == "[pmops] Webhook disabled: Ops dashboard"
    assert m.link == manage
    assert '"Ops dashboard" (wh_9) was disabled' in m.text
    assert "Reason: 100 failed attempts in a row over 24 hours" in m.text
    assert f"PATCH {manage}" in m.text and '{"status": "Active"}' in m.text
    assert f"POST {manage}/deliveries/{{deliveryId}}/redeliver" in m.text
    assert "https://hooks.example.com/" in m.text
    assert "SECRETTOKEN" not in m.text and "key=abc" not in m.text
    empty = notify.webhook_disabled_message({}, "", manage)
    assert empty.subject == "[pmops] Webhook disabled: webhook"
    assert "Reason: not recorded" in empty.text


# -- Slack -----------------------------------------------------------------------------------


def test_slack_payload_shape() -> None:
    m = notify.operation_message("operation.completed", SNAPSHOT, RESULTS)
    payload = notify.slack_payload(m, "#process-mining", ["@analyst", "@data-team"])
    assert payload["channel"] == "#process-mining"
    assert payload["unfurl_links"] is False
    lines = payload["text"].split("\n")
    assert lines[0] == "@analyst @data-team *[pmops] Completed: Monthly process analysis*"
    assert lines[1] == 'Operation "Monthly process analysis" completed successfully.'
    assert lines[-1] == f"<{RESULTS}|View results>"
    # the link is given once, labelled, not again as the email's "Results:" line
    assert payload["text"].count(RESULTS) == 1
    assert "Records processed: 262,200 of 262,200" in payload["text"]


def test_slack_payload_without_channel_or_mentions() -> None:
    m = Message(subject="S", text="summary", link="https://x.example/r")
    payload = notify.slack_payload(m, None, [])
    assert "channel" not in payload
    assert payload["text"] == "*S*\nsummary\n<https://x.example/r|View results>"


def test_slack_mentions() -> None:
    m = Message(subject="S", text="t", link="https://x.example/r")
    mentions = [
        "U024BE7LH",
        "@W0123ABCDE",
        "@here",
        "channel",
        "@Everyone",
        "S0614TZR7",
        "@S0614TZR7",
        "<@U024BE7LH>",
        "<!subteam^SAZ94GDB8>",
        "@analyst",
        "data-team",
        "@a<b>&c",
        "",
        "  ",
        "@U024BE7LH",
    ]
    head = notify.slack_payload(m, None, mentions)["text"].split("\n")[0]
    assert head == (
        "<@U024BE7LH> <@W0123ABCDE> <!here> <!channel> <!everyone> <!subteam^S0614TZR7> "
        "<!subteam^SAZ94GDB8> @analyst @data-team @a&lt;b&gt;&amp;c *S*"
    )


def test_slack_escaping() -> None:
    data = {
        **SNAPSHOT,
        "operationName": "Q1 <b>&</b> review",
        "error": {"code": "E", "message": "expected <date> & got <null>"},
    }
    link = "https://x.example/r?a=1&b=<2>|3"
    m = notify.operation_message("operation.failed", data, link)
    text = notify.slack_payload(m, None, [])["text"]
    assert "*[pmops] Failed: Q1 &lt;b&gt;&amp;&lt;/b&gt; review*" in text
    assert "Error: expected &lt;date&gt; &amp; got &lt;null&gt;" in text
    assert text.endswith("<https://x.example/r?a=1&amp;b=%3C2%3E%7C3|View results>")
    # no raw control characters left outside the link
    assert "<" not in text.rsplit("\n", 1)[0]


def test_slack_webhook_disabled_link_label() -> None:
    manage = "https://pmops.example.com/api/t1/p1/async/webhooks/wh_9"
    m = notify.webhook_disabled_message({"webhookId": "wh_9"}, "gone", manage)
    text = notify.slack_payload(m, None, ["@here"])["text"]
    assert text.startswith("<!here> *[pmops] Webhook disabled: wh_9*")
    assert text.endswith(f"<{manage}|Manage webhook>")
