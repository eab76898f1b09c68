"""Outbound HTTP has its own package below ``service`` and ``hooks`` (issue 20).

- ``outbound`` imports nothing of the project: ``service`` (the JWKS fetch) and ``hooks`` (prefetch
  gathering) import it, never the other way;
- nothing imports the old ``hooks.fhir_client`` / ``hooks.netguard`` any more.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"service", "hooks", "rules", "fhir_mappers", "outbound"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_outbound_imports_no_other_project_package():
    files = sorted((ROOT / "outbound").glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "fhir_client.py", "netguard.py"}
    for f in files:
        upward = {m for m in _imports(f) if m.split(".")[0] in PROJECT - {"outbound"}}
        assert upward == set(), f"{f.name} imports {upward}"


def test_service_and_hooks_use_outbound_and_the_old_modules_are_gone():
    assert not (ROOT / "hooks" / "fhir_client.py").exists() and not (ROOT / "hooks" / "netguard.py").exists()
    users = {p.parent.name for folder in ("service", "hooks") for p in (ROOT / folder).rglob("*.py")
             if any(m.startswith("outbound") for m in _imports(p))}
    assert users == {"service", "hooks"}
    for folder in ("service", "hooks", "fhir_mappers", "rules", "tests", "benchmarks", "scripts"):
        for p in (ROOT / folder).rglob("*.py"):
            if "node_modules" in p.parts:
                continue
            stale = {m for m in _imports(p) if m in ("hooks.fhir_client", "hooks.netguard")}
            assert stale == set(), f"{p.relative_to(ROOT)} imports {stale}"
