"""README.md is a map: one page (at most 250 lines), and every path it names exists."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Documents other branches of this round add (the map links them already); remove a line when its file lands.
EXPECTED_LATER: set[str] = set()
# Files another branch moved: either place counts (the FHIR client and egress guard went to outbound/).
MOVING = {"hooks/fhir_client.py": "outbound/fhir_client.py", "hooks/netguard.py": "outbound/netguard.py"}
_PATH = re.compile(r"^(?:\.?[\w.-]+/)+[\w.-]*$|^[\w.-]+\.(?:py|md|toml|json|sh|txt)$")


def named_paths(text: str) -> set[str]:
    """Markdown link targets and `code` spans that look like a path of this repository."""
    found = set(re.findall(r"\]\(([^)#\s]+)\)", text))
    for span in re.findall(r"`([^`\n]+)`", text):
        span = span.split()[0] if span.split() else span
        if _PATH.match(span) and not span.startswith(("http", "/", ".venv")):
            found.add(span)
    for block in re.findall(r"```\n(.*?)```", text, re.S):  # the flow diagram names files too
        found |= set(re.findall(r"\b((?:service|hooks|fhir_mappers|rules)/[\w/]+\.py)\b", block))
    return {p for p in found if not p.startswith(("http:", "https:", "mailto:"))}


def test_readme_is_one_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_every_path_the_map_names_exists():
    paths = named_paths(README.read_text(encoding="utf-8"))
    assert len(paths) > 40  # the map names the code it is a map of
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists()
                     and p not in EXPECTED_LATER and not (p in MOVING and (ROOT / MOVING[p]).exists()))
    assert missing == []


def test_every_doc_links_back_and_its_links_resolve():
    for doc in (ROOT / "docs").glob("*.md"):
        text = doc.read_text(encoding="utf-8")
        assert "(../README.md)" in text, doc.name
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if target.startswith(("http:", "https:")):
                continue
            resolved = (doc.parent / target).resolve()
            rel = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else target
            assert resolved.exists() or rel in EXPECTED_LATER, (doc.name, target)
