"""Issue 31 (paper protocol IV): docs/fidelity.md carries its own evidence -- every table row names
lossnet tests, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "fidelity.md"


def _cited_tests(text: str) -> list[tuple[str, str]]:
    """``(file, test)`` of every ``file.py::test`` citation; ``::test`` alone refers to the last file named."""
    out, current = [], None
    for m in re.finditer(r"`(?:(test_[\w]+\.py))?::(test_\w+)`", text):
        current = m.group(1) or current
        out.append((current, m.group(2)))
    return out


def test_every_row_names_tests_that_exist():
    text = DOC.read_text(encoding="utf-8")
    rows = [
        l for l in text.splitlines() if l.startswith("| ") and not l.startswith("| Aspect") and not l.startswith("|---")
    ]
    assert len(rows) > 50
    for row in rows:
        assert "::test_" in row.rstrip(" |").rsplit("|", 1)[-1], f"row without a test: {row[:60]}"
    cited = _cited_tests(text)
    assert len(cited) > 60
    for file, name in cited:
        assert file is not None and re.search(
            rf"^def {name}\b", next((ROOT / "tests").rglob(file)).read_text(), re.M
        ), f"{file}::{name}"


def test_no_meta_text_or_outside_evidence():
    text = DOC.read_text(encoding="utf-8")
    assert "<!--" not in text and "AUDIT.md" not in text and "Rows for" not in text
    assert "follow the **code** wherever a switch exists" not in text
    assert "Where the `paper` presets follow the prose rather than the code" in text
