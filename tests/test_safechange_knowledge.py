"""Typed knowledge: a knowledge edit that the service cannot use stops the start with one line naming the file,
table and key (exit code 2, no traceback), instead of a silent wrong rule or an HTTP 500 later.

The CLI cases run ``azathioprine-cds check`` as a real process on a scratch copy of the code, so the
knowledge files of the checkout are never touched."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rules
from rules import knowledge_schema as ks
from rules.knowledge_base import load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/allopurinol-with-azathioprine.json"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    for folder in ("service", "hooks", "rules", "fhir_mappers", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def run_check(root: Path) -> subprocess.CompletedProcess:
    code = "import sys; from service.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "check", "--today", "2026-11-23", EXAMPLE], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def assert_stopped(result: subprocess.CompletedProcess, *names: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_the_scratch_copy_runs(scratch):
    result = run_check(scratch)
    assert result.returncode == 0 and "interaction-xanthine-oxidase" in result.stdout, result.stderr


def test_an_interaction_table_without_a_catalogue_entry_stops_the_start(scratch):
    append(scratch / "rules/knowledge/interactions.toml", '\n[others.methotrexate]\nname = "methotrexate"\n'
           'ingredients = ["methotrexate"]\neffect = "additive myelosuppression"\nsource = "fda_azathioprine_interactions"\n')
    line = assert_stopped(run_check(scratch), "catalogue.toml", "interaction-methotrexate", "interactions.toml",
                          "[others.methotrexate]")
    assert line.startswith("cannot start:")


def test_an_unknown_key_stops_the_start(scratch):
    path = scratch / "rules/knowledge/interactions.toml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        'name = "ribavirin"\n', 'name = "ribavirin"\nthiopurines = ["azathioprine"]\n'), encoding="utf-8")
    assert_stopped(run_check(scratch), "interactions.toml", "[others.ribavirin]", "'thiopurines'")


def test_a_toml_syntax_error_stops_the_start(scratch):
    append(scratch / "rules/knowledge/dosing.toml", "\n[general.oops\n")
    assert_stopped(run_check(scratch), "rules/knowledge/dosing.toml", "TOML syntax error")


def test_a_catalogue_syntax_error_and_an_unknown_catalogue_key_stop_the_start(scratch):
    path = scratch / "rules/knowledge/catalogue.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('[rules.elderly]\n', '[rules.elderly]\nindicatr = "info"\n'), encoding="utf-8")
    assert_stopped(run_check(scratch), "catalogue.toml", "[rules.elderly]", "'indicatr'")
    path.write_text(text + "\n[rules.broken\n", encoding="utf-8")
    assert_stopped(run_check(scratch), "catalogue.toml", "TOML syntax error")


def test_an_uncited_source_and_a_wrong_type_stop_the_start(scratch):
    path = scratch / "rules/knowledge/monitoring.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('[liver]\nsource = "bsr_2017"', '[liver]\nsource = "no_such_source"'), encoding="utf-8")
    assert_stopped(run_check(scratch), "monitoring.toml", "[liver]", "'source'", "no_such_source")
    path.write_text(text.replace("alt_ast_above = 100", 'alt_ast_above = "100"'), encoding="utf-8")
    assert_stopped(run_check(scratch), "monitoring.toml", "[liver]", "'alt_ast_above'", "a number")


def test_a_missing_key_is_named_in_process():
    with pytest.raises(ks.KnowledgeError, match=r"interactions.toml \[warfarin\]: missing key 'inr_loinc'"):
        ks.build(ks.Warfarin, {"ingredients": ["warfarin"]}, "rules/knowledge/interactions.toml", ("warfarin",))


def test_knowledge_is_frozen_and_read_by_attribute():
    import dataclasses

    kb = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        kb.dosing.general.new_start_mg = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        kb.interactions.others["x"] = kb.interactions.others["ribavirin"]  # type: ignore[index]
    assert kb.monitoring.cytopenia.wbc_below == 3.5


def test_finding_is_frozen():
    from rules.findings import Finding

    f = Finding("elderly", "MedicationRequest/x", {"age": 80})
    with pytest.raises(AttributeError):  # a frozen msgspec Struct
        f.rule_id = "other"  # type: ignore[misc]


def test_no_knowledge_key_goes_unread():
    """Every key of every knowledge table is named by code or by a template (else it is dead data)."""
    texts = [p.read_text(encoding="utf-8") for folder in ("rules", "hooks", "fhir_mappers", "service")
             for p in (ROOT / folder).rglob("*.py") if p.name != "knowledge_schema.py"]
    texts.append((ROOT / "rules/knowledge/catalogue.toml").read_text(encoding="utf-8"))
    corpus = "\n".join(texts)
    unread = set()
    seen: set[type] = set()

    def walk(cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        hints = __import__("typing").get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in ("source", "sources", "meta") or f.name.endswith(("_source", "_sources")):
                continue  # citations: read by the start-up source check
            if f.name not in corpus:
                unread.add(f"{cls.__name__}.{f.name}")
            for t in _dataclasses_in(hints[f.name]):
                walk(t)

    import dataclasses

    for cls in ks.FILES.values():
        walk(cls)
    assert unread == set()


def _dataclasses_in(tp) -> list[type]:
    import dataclasses
    import typing

    if dataclasses.is_dataclass(tp):
        return [tp]  # type: ignore[list-item]
    return [t for a in typing.get_args(tp) for t in _dataclasses_in(a)]


# the calls whose first argument (or ``rule_id=``) is a rule id: a finding, and the dose limit it carries
RULE_ID_CALLS = ("Finding", "DoseLimit")


def _literals(expr: ast.expr) -> tuple[set[str], set[str]]:
    """The string literals an expression may evaluate to (either branch of a conditional), and the names it reads;
    ``<finding>.rule_id`` is an id already written elsewhere (a dose limit copied), neither."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}, set()
    if isinstance(expr, ast.IfExp):
        (a, na), (b, nb) = _literals(expr.body), _literals(expr.orelse)
        return a | b, na | nb
    if isinstance(expr, ast.Attribute) and expr.attr == "rule_id":
        return set(), set()
    if isinstance(expr, ast.Name):
        return set(), {expr.id}
    return set(), {ast.unparse(expr)}


def rule_ids_written(path: Path) -> tuple[set[str], set[str]]:
    """The rule ids a rules module passes to ``Finding(...)`` / ``DoseLimit(...)``: a literal, or a literal the
    enclosing function assigns to the name it passes (``rule = "pgx-unavailable"``); and the names that could not be
    resolved so (bound from the data, such as interactions.py's ``rule_id`` of an [others.*] table)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def scope_of(node: ast.AST) -> ast.AST:
        while node in parent:
            node = parent[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node
        return tree

    found: set[str] = set()
    unresolved: set[str] = set()
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) in RULE_ID_CALLS):
            continue
        arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "rule_id"), None)
        if arg is None:
            continue
        literals, names = _literals(arg)
        found |= literals
        scope = scope_of(call)
        for name in names:
            bound = [_literals(a.value) for a in ast.walk(scope) if isinstance(a, ast.Assign)
                     and any(isinstance(t, ast.Name) and t.id == name for t in a.targets)]
            if bound and all(not more for _, more in bound):
                found |= {v for lits, _ in bound for v in lits}
            else:
                unresolved.add(name)
    return found, unresolved


def test_each_rule_module_emits_exactly_the_rule_ids_the_data_declares():
    """No hand-kept list of rule ids: each catalogue entry names its rule module (``module``), and the rule ids each
    ``rules/<module>.py`` writes into a ``Finding(...)`` (or its ``DoseLimit``) are exactly those the data declares
    for it (``rules.evaluate.emitted_by``): a new ``Finding("x", ...)`` needs ``module = "<that module>"`` on its
    catalogue entry, and an entry no module writes is stale. interactions.py also emits one rule id per
    interactions.toml [others.*] table, from the data (its only rule id that is not a literal)."""
    from rules.evaluate import emitted_by
    from rules.interactions import other_rule_id

    data_driven = {other_rule_id(k) for k in load().interactions.others}
    for path in sorted((ROOT / "rules").glob("*.py")):
        written, unresolved = rule_ids_written(path)
        module = path.stem
        if module not in ks.RULE_MODULES:
            assert written == unresolved == set(), (path.name, "writes findings but is not a rule module",
                                                    written, unresolved)
            continue
        declared = set(emitted_by(module))
        if module == "interactions":
            assert unresolved == {"rule_id"}, unresolved  # interaction_findings' [others.*] loop
            assert data_driven <= declared
            written |= data_driven
        else:
            assert unresolved == set(), (path.name, unresolved)
        assert written <= declared, (f"{path.name} writes rule ids whose catalogue entry does not say "
                                     f"module = {module!r}: {sorted(written - declared)}")
        assert declared <= written, (f"catalogue entries say module = {module!r}, but {path.name} never writes them: "
                                     f"{sorted(declared - written)}")
    assert rules.emitted() == {*ids_of_catalogue(), *data_driven}


def ids_of_catalogue() -> set[str]:
    from rules.catalogue import catalogue

    return set(catalogue().entries)


def test_the_rule_id_scan_sees_literals_conditionals_and_assigned_names(tmp_path: Path):
    path = tmp_path / "m.py"
    path.write_text("def f(x, key):\n"
                    "    rule = 'b' if x else 'c'\n"
                    "    out = [Finding('a', ''), Finding(rule, ''), Finding('d' if x else 'e', '', dose=DoseLimit('a'))]\n"
                    "    return out + [Finding(key, '')]\n", encoding="utf-8")
    assert rule_ids_written(path) == ({"a", "b", "c", "d", "e"}, {"key"})


def test_an_unknown_or_missing_rule_module_stops_the_start(scratch):
    path = scratch / "rules/knowledge/catalogue.toml"
    text = path.read_text(encoding="utf-8")
    assert '[rules.elderly]\nmodule = "populations"\n' in text
    path.write_text(text.replace('[rules.elderly]\nmodule = "populations"\n', '[rules.elderly]\nmodule = "ageing"\n'),
                    encoding="utf-8")
    assert_stopped(run_check(scratch), "catalogue.toml", "[rules.elderly]", "'module'", "'ageing'")
    path.write_text(text.replace('[rules.elderly]\nmodule = "populations"\n', '[rules.elderly]\n'), encoding="utf-8")
    assert_stopped(run_check(scratch), "catalogue.toml", "[rules.elderly]", "missing key 'module'")
