"""Bounded answers: an operation's status (GET /async/operation/{id}, and the `data` of every
event it sends) stays under MAX_STATUS_BYTES of JSON, whatever the log held.

A phase's figures come from the log: one 200,000-event case made a 1,000,000-character variant
string, and every status and event carried it (808 KB each). A status past the bound is cut, in
steps, until it fits: long strings end with a marker saying how much was cut, then long lists and
objects inside the phases' figures keep their first items, then the figures give way to a marker.
The full data stays in the results document (GET .../results), which this never touches.
"""

from __future__ import annotations

import json
from typing import Any

# the whole answer (or event) a client gets: the status plus the event's envelope and links
MAX_ANSWER_BYTES = 64 * 1024
MAX_STATUS_BYTES = MAX_ANSWER_BYTES - 4 * 1024
# the free-form parts (the phases' figures and the like): there a cut list is no schema breach
FREE_FORM = frozenset({"results", "validationResults", "resourceUsage", "cancellation"})
# (characters a string keeps, items a free-form list or object keeps), tried in turn: each pass
# walks only what it keeps, so even a status with 100,000 figures is cut in milliseconds
STEPS = ((4096, 1000), (1024, 100), (256, 20), (64, 5))


def cut_string(value: str, keep: int) -> str:
    more = len(value) - keep
    return f"{value[:keep]}… [truncated, {more:,} more characters; full data in results]"


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _cut(value: Any, chars: int, items: int, free: bool = False) -> Any:
    if isinstance(value, str):
        return cut_string(value, chars) if len(value) > chars else value
    if isinstance(value, dict):
        pairs = list(value.items())
        shown = pairs[:items] if free else pairs
        out_map = {k: _cut(v, chars, items, free or k in FREE_FORM) for k, v in shown}
        if len(shown) < len(pairs):
            more = len(pairs) - len(shown)
            out_map["…"] = f"[truncated, {more:,} more entries; full data in results]"
        return out_map
    if isinstance(value, list):
        shown = value[:items] if free else value
        out = [_cut(v, chars, items, free) for v in shown]
        if len(shown) < len(value):
            more = len(value) - len(shown)
            out.append(f"… [truncated, {more:,} more items; full data in results]")
        return out
    return value


def _without_figures(view: dict[str, Any]) -> dict[str, Any]:
    out = dict(view)
    marker = "… [truncated: too large for a status; full data in results]"
    phases = []
    for phase in view.get("phases") or []:
        phase = dict(phase)
        if phase.get("results"):
            phase["results"] = {"truncated": marker}
        phases.append(phase)
    out["phases"] = phases
    return out


def bounded(view: dict[str, Any], limit: int = MAX_STATUS_BYTES) -> dict[str, Any]:
    """`view` if its JSON fits in `limit` bytes, else a copy cut until it does (see above)."""
    if json_size(view) <= limit:
        return view
    cut: dict[str, Any] = view
    for chars, items in STEPS:
        cut = _cut(cut, chars, items)
        if json_size(cut) <= limit:
            return cut
    cut = _without_figures(cut)
    return cut
