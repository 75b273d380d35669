"""Writes the disk refused: a full, read-only or unwritable data directory, in a user's words."""

from __future__ import annotations

import errno

_REASONS = {
    errno.ENOSPC: "the storage is full (no space left on device)",
    errno.EDQUOT: "the storage quota is exhausted",
    errno.EROFS: "the storage is read-only",
    errno.EACCES: "the storage is not writable (permission denied)",
    errno.EPERM: "the storage is not writable (operation not permitted)",
}


def refusal(exc: OSError) -> str | None:
    """Why the storage refused a write, or None for an OSError of another kind. The server's
    paths are left out: they mean nothing to a tenant."""
    return _REASONS.get(exc.errno or 0)
