"""Human-readable figures in the contract's style ("4.2 hours", "3.2 MB")."""

from __future__ import annotations

import math


def hours_text(hours: float) -> str:
    """Hours in the unit a reader expects: '45 minutes', '4.2 hours', '3.1 days'."""
    if hours is None or (isinstance(hours, float) and math.isnan(hours)):
        return "n/a"
    if hours < 1:
        minutes = hours * 60
        if minutes < 1:
            return f"{hours * 3600:.0f} seconds"
        return f"{minutes:.0f} minutes"
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:.1f} days"


def seconds_text(seconds: float) -> str:
    """An elapsed time as the seed writes it: '23 minutes 15 seconds', '2.4 seconds'."""
    if seconds < 10:
        return f"{seconds:.1f} seconds"
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    parts = []
    if h:
        parts.append(f"{h} hour{'s' if h != 1 else ''}")
    if m:
        parts.append(f"{m} minute{'s' if m != 1 else ''}")
    if s and not h:
        parts.append(f"{s} second{'s' if s != 1 else ''}")
    return " ".join(parts) or "0 seconds"


def size_text(n_bytes: int) -> str:
    """Bytes as '890 KB', '3.2 MB' (decimal units, like the seed)."""
    if n_bytes < 1000:
        return f"{n_bytes} B"
    if n_bytes < 1_000_000:
        return f"{n_bytes / 1000:.0f} KB"
    if n_bytes < 1_000_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    return f"{n_bytes / 1_000_000_000:.1f} GB"
