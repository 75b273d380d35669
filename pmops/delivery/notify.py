"""What people are told when an operation ends or a webhook is disabled, and the SMTP send.

The deliverer (`pmops.delivery.deliverer`) decides when and to whom; this module only builds
messages and
hands one email to an SMTP server. Choices made here:

- One channel-neutral `Message` (subject, plain-text summary, link) is built per event, then
  rendered per channel: `email_message` for SMTP, `slack_payload` for an incoming webhook. Email
  and Slack therefore always say the same thing.
- The builders read the event's status snapshot defensively: events written by older or newer
  versions, or for an operation that died before it started, may lack any key. A notification
  that cannot be built would be retried forever, so a missing or oddly typed field only drops
  its line from the summary.
- `send_email` is synchronous (`smtplib`); the deliverer runs it in a worker thread. Every
  failure becomes a `NotificationError` whose text goes into the delivery log as is, so it names
  the server, the step that failed and the server's answer.
- Transport security is never weakened silently: "starttls" refuses to go on when the server
  does not offer STARTTLS, and certificates are verified (the system trust store, or the
  `ssl_context` given).
- A recipient refused while others were accepted is an error (the delivery log must show it),
  although the message did reach the others; the error says which were accepted.
- Slack: incoming webhooks cannot resolve display names, so only Slack ids and the special
  mentions become real mentions; everything else is written as plain text.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from analysis.formatting import seconds_text
from pmops.settings import Settings

TERMINAL_EVENTS = (
    "operation.completed",
    "operation.failed",
    "operation.timeout",
    "operation.cancelled",
)

# event -> (status word for the subject and the Status line, how the first sentence ends)
_OUTCOMES: dict[str, tuple[str, str]] = {
    "operation.completed": ("Completed", "completed successfully"),
    "operation.failed": ("Failed", "failed"),
    "operation.timeout": ("Timed out", "timed out"),
    "operation.cancelled": ("Cancelled", "was cancelled"),
}
# a stack trace in an error message must not make a Slack message too long to post (the limit
# is 40,000 characters) or an email unreadable
_MAX_FIELD = 2000
# phase statuses meaning "the operation stopped here"
_STOPPED_PHASE = ("Running", "Failed", "Timeout", "Cancelled")


class NotificationError(Exception):
    """A notification could not be sent; the text says why, for the delivery log."""


@dataclass(frozen=True)
class Message:
    """What to tell, independent of the channel."""

    subject: str
    text: str  # plain-text summary; its last line gives the link
    link: str
    link_text: str = "View results"  # the link's label where links have labels (Slack)


# -- messages --------------------------------------------------------------------------------


def operation_message(event_type: str, data: dict[str, Any], results_url: str) -> Message:
    """The message for an operation's terminal event; `data` is the event's status snapshot."""
    snapshot = _mapping(data)
    progress = _mapping(snapshot.get("progress"))
    phases = [p for p in _list(snapshot.get("phases")) if isinstance(p, Mapping)]

    status_word, ending = _OUTCOMES.get(event_type, ("", ""))
    if not status_word:  # not a terminal event: say what the snapshot says rather than fail
        status_word = _text(snapshot.get("status")) or event_type or "Finished"
        ending = f"is {status_word.lower()}"

    name = _text(snapshot.get("operationName"))
    op_id = _text(snapshot.get("operationId"))
    op_type = _text(snapshot.get("operationType"))
    title = name or op_id or "operation"

    opening = f'Operation "{name or op_id}"' if name or op_id else "An operation"
    lines = [f"{opening} {ending}.", ""]
    if name:
        lines.append(f"Operation: {name}")
    if op_type:
        lines.append(f"Type: {op_type}")
    if op_id:
        lines.append(f"Operation ID: {op_id}")
    lines.append(f"Status: {status_word}")
    lines += _progress_lines(progress, phases, _mapping(snapshot.get("execution")))
    if event_type != "operation.completed":
        phase = _text(progress.get("currentPhase")) or next(
            (_text(p.get("phaseName")) for p in phases if p.get("status") in _STOPPED_PHASE), ""
        )
        if phase:
            lines.append(f"Stopped in phase: {phase}")
    lines += _detail_lines(snapshot.get("error"), _ERROR_LABELS, "Error")
    if event_type == "operation.cancelled":
        cancel = snapshot.get("cancellation") or snapshot.get("cancelRequest")
        lines += _detail_lines(cancel, _CANCEL_LABELS, "Reason")

    lines.append(f"Results: {results_url}")
    return Message(
        subject=f"[pmops] {status_word}: {title}",
        text="\n".join(lines),
        link=results_url,
    )


def _progress_lines(
    progress: Mapping[str, Any], phases: list[Mapping[str, Any]], execution: Mapping[str, Any]
) -> list[str]:
    """How long it ran, its phases done and its records processed."""
    lines = []
    elapsed = progress.get("elapsedTime")
    if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
        lines.append(f"Ran for: {seconds_text(float(elapsed))}")
    elif _text(elapsed):
        lines.append(f"Ran for: {_text(elapsed)}")

    done = _count(progress.get("phasesCompleted"))
    if done is None and phases:
        done = sum(1 for p in phases if p.get("status") == "Completed")
    total = _count(progress.get("totalPhases"))
    if total is None and phases:
        total = len(phases)
    if done is not None and total:
        lines.append(f"Phases completed: {done} of {total}")
    elif done is not None:
        lines.append(f"Phases completed: {done}")

    processed = _count(execution.get("processedRecords"))
    records = _count(execution.get("totalRecords"))
    if processed is not None and records:
        lines.append(f"Records processed: {processed:,} of {records:,}")
    elif processed is not None:
        lines.append(f"Records processed: {processed:,}")
    return lines


def _detail_lines(value: Any, labels: dict[str, str], plain: str) -> list[str]:
    """`label: value` for each of `labels` ({key: label}) a mapping has; a bare text as
    `plain: text`."""
    if isinstance(value, Mapping):
        found = ((label, _text(value.get(key))) for key, label in labels.items())
        return [f"{label}: {text}" for label, text in found if text]
    return [f"{plain}: {_text(value)}"] if _text(value) else []


_ERROR_LABELS = {"code": "Error code", "message": "Error"}
_CANCEL_LABELS = {"reason": "Reason", "cancelledBy": "Cancelled by"}


def webhook_disabled_message(webhook: dict[str, Any], reason: str, manage_url: str) -> Message:
    """The message to a project's owner when one of its webhooks was disabled."""
    hook = _mapping(webhook)
    name = _text(hook.get("webhookName"))
    hook_id = _text(hook.get("webhookId"))
    title = name or hook_id or "webhook"
    ident = f'"{name}" ({hook_id})' if name and hook_id else f'"{title}"'
    lines = [
        f"The webhook {ident} was disabled: it receives no events until it is re-enabled.",
        "",
    ]
    if target := _origin(_text(hook.get("webhookUrl"))):
        lines.append(f"Delivering to: {target}")
    lines.append(f"Reason: {_clip(reason) or 'not recorded'}")
    lines += [
        "",
        "To re-enable it, fix the receiver, then send PATCH to the webhook with the JSON body "
        '{"status": "Active"}:',
        f"  PATCH {manage_url}",
        "Failed deliveries can then be redelivered: list them with",
        f"  GET {manage_url}/deliveries",
        "and send each again with",
        f"  POST {manage_url}/deliveries/{{deliveryId}}/redeliver",
        "",
        f"Webhook: {manage_url}",
    ]
    return Message(
        subject=f"[pmops] Webhook disabled: {title}",
        text="\n".join(lines),
        link=manage_url,
        link_text="Manage webhook",
    )


# -- email -----------------------------------------------------------------------------------


def email_message(message: Message, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The message as a UTF-8 text/plain email."""
    mail = EmailMessage(policy=email.policy.SMTP)
    # operation names are user input: a line break in a header would be rejected (or, by a
    # laxer library, let them add headers), so headers get a single line
    mail["Subject"] = " ".join(message.subject.split())
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = email.utils.formatdate(usegmt=True)
    # an explicit domain: make_msgid otherwise asks the resolver for this host's FQDN
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    mail["Message-ID"] = email.utils.make_msgid(domain=domain)
    # RFC 3834: tells vacation responders and ticket systems not to answer a robot
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text, subtype="plain", charset="utf-8")
    return mail


class _SMTP(smtplib.SMTP):
    # smtplib drops the reply to DATA, which carries the server's queue id: worth keeping in
    # the delivery log to trace a message through the relay
    data_reply: tuple[int, bytes] | None = None

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_reply = super().data(msg)
        return self.data_reply


class _SMTPSSL(_SMTP, smtplib.SMTP_SSL):
    pass


def send_email(
    settings: Settings,
    recipients: Sequence[str],
    message: Message,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> str:
    """Send `message` to `recipients` through the configured SMTP server.

    Returns a short description of the server's answer for the delivery log; raises
    NotificationError for anything that kept the message from every recipient, and when a
    recipient was refused. `ssl_context` replaces the system trust store (a private CA).
    `smtp_timeout_seconds` bounds each network step (connect, each command), not the whole send.
    """
    host = settings.smtp_host
    if not host:
        raise NotificationError("email is not configured: set PMOPS_SMTP_HOST")
    to, envelope_from = _addresses(settings, recipients)
    mail = email_message(message, settings.smtp_sender, to)
    session = _Session(settings, host, ssl_context or ssl.create_default_context(), envelope_from)
    try:
        refused = session.send(mail, to)
    except NotificationError:
        raise
    except OSError as exc:  # smtplib's errors, TLS, timeouts, DNS and sockets
        raise session.failure(exc) from exc
    finally:
        if session.client is not None:
            _close(session.client)

    accepted = [r for r in to if r not in refused]
    answer = session.client.data_reply if session.client is not None else None
    code, text = answer if answer else (250, b"")
    if refused:
        raise NotificationError(
            f"SMTP server {session.where} refused {_refusals(refused)}; "
            f"the message was sent to {', '.join(accepted)}"
        )
    detail = text.decode("utf-8", "replace").strip()
    plural = "s" if len(accepted) != 1 else ""
    return f"{code} accepted for {len(accepted)} recipient{plural}" + (
        f" ({detail})" if detail else ""
    )


def _addresses(settings: Settings, recipients: Sequence[str]) -> tuple[list[str], str]:
    """The recipients and the envelope sender, checked."""
    to = [r.strip() for r in recipients if r and r.strip()]
    if not to:
        raise NotificationError("no email recipients")
    if bad := [r for r in to if not _plausible_address(r)]:
        raise NotificationError(f"invalid email address: {', '.join(map(repr, bad))}")
    envelope_from = email.utils.parseaddr(settings.smtp_sender)[1]
    if not _plausible_address(envelope_from):
        raise NotificationError(f"invalid PMOPS_SMTP_SENDER: {settings.smtp_sender!r}")
    return to, envelope_from


class _Session:
    """One SMTP conversation; `step` names what it was doing when something failed."""

    def __init__(
        self, settings: Settings, host: str, context: ssl.SSLContext, envelope_from: str
    ) -> None:
        self.settings, self.host, self.context = settings, host, context
        self.envelope_from = envelope_from
        self.where = f"{host}:{settings.smtp_port}"
        self.timeout = settings.smtp_timeout_seconds
        self.step = "connecting to"
        self.client: _SMTP | None = None

    def send(self, mail: EmailMessage, to: list[str]) -> dict[str, tuple[int, bytes]]:
        settings, where, security = self.settings, self.where, self.settings.smtp_security
        if security == "tls":
            client: _SMTP = _SMTPSSL(
                self.host, settings.smtp_port, timeout=self.timeout, context=self.context
            )
        else:
            client = _SMTP(self.host, settings.smtp_port, timeout=self.timeout)
        self.client = client
        if security == "starttls":
            self.step = "STARTTLS with"
            client.ehlo()
            if not client.has_extn("starttls"):
                raise NotificationError(
                    f"SMTP server {where} does not offer STARTTLS; not sending in plaintext "
                    "(PMOPS_SMTP_SECURITY=tls for implicit TLS, or =none to allow plaintext)"
                )
            client.starttls(context=self.context)
        if settings.smtp_username:
            self.step = "logging in to"
            client.ehlo_or_helo_if_needed()
            if not client.has_extn("auth"):
                hint = " over plaintext" if security == "none" else ""
                raise NotificationError(
                    f"SMTP server {where} does not offer AUTH{hint} but PMOPS_SMTP_USERNAME is set"
                )
            client.login(settings.smtp_username, settings.smtp_password or "")
        self.step = "sending through"
        return client.send_message(mail, from_addr=self.envelope_from, to_addrs=to)

    def failure(self, exc: OSError) -> NotificationError:
        """What went wrong, for the delivery log."""
        step, where, timeout = self.step, self.where, self.timeout
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return NotificationError(
                f"SMTP authentication failed at {where} for user "
                f"{self.settings.smtp_username!r}: {_reply(exc.smtp_code, exc.smtp_error)}"
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return NotificationError(
                f"SMTP server {where} refused all recipients: {_refusals(exc.recipients)}"
            )
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return NotificationError(
                f"SMTP server {where} refused the sender {self.envelope_from}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return NotificationError(
                f"{step} SMTP server {where} failed: {_reply(exc.smtp_code, exc.smtp_error)}"
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # smtplib reports a read that timed out as a disconnection
            what = (
                f"no answer within {timeout:g} s"
                if isinstance(exc.__context__, TimeoutError)
                else f"the server closed the connection ({exc})"
            )
            return NotificationError(f"{step} SMTP server {where} failed: {what}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return NotificationError(
                f"{step} SMTP server {where} failed: TLS certificate not trusted "
                f"({exc.verify_message or exc.reason})"
            )
        if isinstance(exc, ssl.SSLError):
            return NotificationError(
                f"{step} SMTP server {where} failed: TLS error ({exc.reason or exc})"
            )
        if isinstance(exc, TimeoutError):
            return NotificationError(
                f"{step} SMTP server {where} failed: no answer within {timeout:g} s"
            )
        if isinstance(exc, socket.gaierror):
            return NotificationError(f"cannot resolve SMTP host {self.host!r}: {exc.strerror}")
        if isinstance(exc, ConnectionRefusedError):
            return NotificationError(f"SMTP server {where} refused the connection")
        return NotificationError(f"{step} SMTP server {where} failed: {type(exc).__name__}: {exc}")


def _close(client: smtplib.SMTP) -> None:
    # the message is already handed over: a QUIT that fails or is answered oddly must not turn
    # the send into an error, which would be retried and deliver the message twice
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{addr} ({_reply(code, text)})" for addr, (code, text) in refused.items())


def _plausible_address(address: str) -> bool:
    # not a full RFC 5322 check (the server judges); keeps line breaks and display-name forms
    # out of the envelope, where smtplib would pass them to the server verbatim
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not any(c.isspace() or c in "<>,;" for c in address)


# -- Slack -----------------------------------------------------------------------------------

# Slack member ids (U..., W... in Enterprise Grid) and user-group ids (S...): an uppercase letter
# and at least 8 uppercase letters or digits
_MEMBER_ID = re.compile(r"[UW][A-Z0-9]{8,}")
_SUBTEAM_ID = re.compile(r"S[A-Z0-9]{8,}")
_SPECIAL = ("here", "channel", "everyone")
# a mention already in Slack's syntax is passed through
_FORMATTED = re.compile(
    r"<@[UW][A-Z0-9]{8,}>|<!(?:here|channel|everyone)>|<!subteam\^S[A-Z0-9]{8,}>"
)


def slack_payload(
    message: Message, channel: str | None, mention_users: Sequence[str]
) -> dict[str, Any]:
    """The JSON body to POST to a Slack incoming webhook."""
    mentions: list[str] = []
    for raw in mention_users or ():
        mention = _slack_mention(raw)
        if mention and mention not in mentions:
            mentions.append(mention)
    body = message.text
    head, _, last = body.rpartition("\n")
    # the summary's closing "Results: <url>" line is for plain-text email; Slack shows the same
    # link once, labelled, below
    if head and message.link and last.endswith(message.link):
        body = head
    lines = [
        " ".join([*mentions, f"*{slack_escape(' '.join(message.subject.split()))}*"]),
        slack_escape(body),
    ]
    if message.link:
        lines.append(f"<{_slack_url(message.link)}|{slack_escape(message.link_text)}>")
    payload: dict[str, Any] = {"text": "\n".join(lines), "unfurl_links": False}
    if channel:
        # honoured by legacy incoming webhooks only; app webhooks post to the channel chosen
        # when the app was installed and ignore it
        payload["channel"] = channel
    return payload


def slack_escape(text: str) -> str:
    """Text safe to put in a Slack message: &, < and > are Slack's only control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_mention(raw: str) -> str:
    value = raw.strip() if isinstance(raw, str) else ""
    if not value:
        return ""
    if _FORMATTED.fullmatch(value):
        return value
    bare = value.lstrip("@!")
    if bare.lower() in _SPECIAL:
        return f"<!{bare.lower()}>"
    if _MEMBER_ID.fullmatch(bare):
        return f"<@{bare}>"
    if _SUBTEAM_ID.fullmatch(bare):
        return f"<!subteam^{bare}>"
    # A display name ("@analyst"): incoming webhooks do not resolve names to members (only
    # "<@id>" notifies anyone), so it is written as plain text for readers to see who is meant.
    return slack_escape(value if value.startswith("@") else f"@{value}")


def _slack_url(url: str) -> str:
    # "|" and ">" would end the URL part of <url|label>; Slack reads &amp; back as "&"
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


# -- reading snapshots -----------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    if value is None or isinstance(value, Mapping | list):
        return ""
    return _clip(str(value))


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 1] + "…"


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _origin(url: str) -> str:
    # webhook URLs often carry a secret in the path or query (Slack's do): show where it points,
    # not the whole URL, since notifications may be read more widely than the project's settings
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"
