"""The README's configuration table lists every setting the service reads."""

from __future__ import annotations

from pathlib import Path

from pmops.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    missing = [n for n in Settings.model_fields if f"`PMOPS_{n.upper()}`" not in text]
    assert missing == [], f"add these to README's configuration table: {missing}"
