"""The rules for the extra headers a webhook sends (`headers` of POST /async/webhooks).

One rule for both sides: the API refuses at registration (422 naming `headers.<name>`) exactly
what the sender (pmops/delivery/httpsend.py) would refuse at every delivery, so a registered
webhook never fails on its own headers.
"""

from __future__ import annotations

import re
from functools import lru_cache

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # no control character at all (CR, LF, NUL, VT, DEL, TAB)
MAX_VALUE = 4000

# framing and connection management belong to the sender; hop-by-hop headers (RFC 9110 7.6.1)
# mean nothing on a single POST and some (TE, Upgrade) would change how the answer is framed
HOP_BY_HOP = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "expect",
    }
)
# what every delivery carries from pmops itself: the body's type, the signatures, our own
DELIVERY_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-signature-256",
    }
)


def header_error(name: str, value: str) -> str | None:
    """Why the sender cannot send this header (a short message), or None when it can."""
    error = name_error(name)
    if error is not None:
        return error
    if CONTROL.search(value):
        return "control character in the value"
    return None


@lru_cache(maxsize=1024)
def name_error(name: str) -> str | None:
    """header_error's verdict on the name alone (the sender asks it for every header it sends:
    remembered)."""
    if not TOKEN.fullmatch(name):
        return "not a valid header name"
    lower = name.lower()
    if lower in HOP_BY_HOP or lower.startswith("proxy-"):
        return "a connection or framing header the sender sets itself"
    return None


def webhook_header_error(name: str, value: str) -> str | None:
    """`header_error`, plus what a webhook may not replace: the headers pmops sets on every
    delivery (signatures, Content-Type, X-Pmops-*) and over-long values."""
    error = header_error(name, value)
    if error is not None:
        return error
    lower = name.lower()
    if lower in DELIVERY_HEADERS or lower.startswith("x-pmops-"):
        return "set by pmops on every delivery"
    if len(value) > MAX_VALUE:
        return f"longer than {MAX_VALUE} characters"
    return None
