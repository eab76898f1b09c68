"""The rule catalogue's metadata (``knowledge/catalogue.toml``): one entry per rule id.

Each entry: the rule module that emits it (``module``: a module's rule ids are read from here, ``rule_ids_of``),
title, trigger (for the generated rule table), default indicator, priority (among info cards,
lower first), sources (clinician-facing, primary first), supersedes (rule ids it makes redundant on the same
order), dose_reason, and override reason codes. The wording (summary, detail and label templates, the group
and FHIR-outcome labels) is read from the same file by ``hooks/wording.py``, beside the cards: rules decide,
the hooks word.

``check(emitted)`` runs at start-up: every emitted rule id has an entry, every entry key is known, every
source and override reason exists. A problem is a ``KnowledgeError``: one line naming the file, table and key.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

from .findings import Finding
from .knowledge_base import KNOWLEDGE_DIR, load, read_toml
from .knowledge_schema import RULE_MODULES, KnowledgeError, other_rule_id

CATALOGUE_FILE = KNOWLEDGE_DIR / "catalogue.toml"
FILE_LABEL = "rules/knowledge/catalogue.toml"

# the keys a [rules.<id>] entry may have (catalogue.toml's header says what each is)
RULE_KEYS = frozenset({"module", "title", "trigger", "indicator", "priority", "sources", "supersedes", "dose_reason", "summary",
                       "detail", "labels", "override_reasons", "sample", "extends", "asks_action"})
META_KEYS = frozenset({"version", "default_override_reasons", "preliminary_prefix", "same_time_conflict_line",
                       "future_prefix", "future_line",
                       "stop_supersedes", "sample_action", "sample_plan", "macros", "plan_line", "merged_summary",
                       "labels", "app_link"})
TOP_KEYS = frozenset({"meta", "override_reasons", "rules", "fhir_outcomes", "groups", "phrases"})
INDICATORS = ("info", "warning", "critical")


@dataclass(frozen=True)
class Rule:
    rule_id: str
    module: str  # the rule module that emits it (rules/<module>.py; knowledge_schema.RuleModule)
    title: str
    indicator: str
    priority: int
    sources: tuple[str, ...]
    supersedes: tuple[str, ...]
    override_reasons: tuple[str, ...]
    trigger: str = ""
    dose_reason: str = ""  # why, in the recommended-dose line (rules that change the dose)
    # the card asks the prescriber to act (check by hand, could not be checked): true, or a Jinja2 expression on the
    # finding's values (hooks/wording.py asks_action); among info cards such a note is named first (round-8 m1)
    asks_action: bool | str = False


@dataclass(frozen=True)
class Catalogue:
    version: str
    entries: Mapping[str, Rule]
    override_reasons: Mapping[str, str]  # code -> display
    override_system: str
    stop_supersedes: tuple[str, ...]
    raw: Mapping[str, Any]  # the parsed file, for the wording (hooks/wording.py)
    app_link_label: str = ""  # [meta.app_link] label: the card link to the SMART app (hooks/cards.py AppLink)

    def __getitem__(self, rule_id: str) -> Rule:
        return self.entries[rule_id]


def merged_spec(raw: Mapping[str, Any], rule_id: str) -> dict[str, Any]:
    """A [rules.<id>] entry with the entry it ``extends`` filled in."""
    rules_raw = raw["rules"]
    spec = rules_raw[rule_id]
    base = rules_raw.get(spec["extends"], {}) if "extends" in spec else {}
    return {**base, **spec}


def _unknown(keys, known: frozenset[str], table: str) -> None:
    for key in keys:
        if key not in known:
            raise KnowledgeError(f"{FILE_LABEL} [{table}]: unknown key {key!r} (known: {', '.join(sorted(known))})")


@cache
def catalogue() -> Catalogue:
    raw = read_toml(CATALOGUE_FILE)
    _unknown(raw, TOP_KEYS, "(top level)")
    for table in ("meta", "rules", "override_reasons"):
        if table not in raw:
            raise KnowledgeError(f"{FILE_LABEL}: missing table [{table}]")
    meta = raw["meta"]
    _unknown(meta, META_KEYS, "meta")
    entries = {}
    for rule_id in raw["rules"]:
        _unknown(raw["rules"][rule_id], RULE_KEYS, f"rules.{rule_id}")
        if "extends" in raw["rules"][rule_id] and raw["rules"][rule_id]["extends"] not in raw["rules"]:
            raise KnowledgeError(f"{FILE_LABEL} [rules.{rule_id}]: key 'extends' names unknown rule "
                                 f"{raw['rules'][rule_id]['extends']!r}")
        spec = merged_spec(raw, rule_id)
        for key in ("module", "title", "indicator", "sources", "summary", "detail"):
            if key not in spec:
                raise KnowledgeError(f"{FILE_LABEL} [rules.{rule_id}]: missing key {key!r}")
        if spec["module"] not in RULE_MODULES:
            raise KnowledgeError(f"{FILE_LABEL} [rules.{rule_id}]: key 'module': unknown rule module {spec['module']!r} "
                                 f"(known: {', '.join(RULE_MODULES)}: the rules/<module>.py that emits it)")
        entries[rule_id] = Rule(
            rule_id=rule_id, module=spec["module"], title=spec["title"], indicator=spec["indicator"], priority=int(spec.get("priority", 50)),
            sources=tuple(spec["sources"]), supersedes=tuple(spec.get("supersedes", [])),
            override_reasons=tuple(spec.get("override_reasons", meta["default_override_reasons"])),
            trigger=spec.get("trigger", ""), dose_reason=spec.get("dose_reason", spec["title"]),
            asks_action=_asks_action(spec.get("asks_action", False), rule_id),
        )
    reasons = raw["override_reasons"]
    return Catalogue(
        version=meta["version"], entries=MappingProxyType(entries),
        override_reasons=MappingProxyType({k: v for k, v in reasons.items() if k != "system"}),
        override_system=reasons["system"], stop_supersedes=tuple(meta["stop_supersedes"]), raw=raw,
        app_link_label=_app_link_label(meta),
    )


def _asks_action(value: Any, rule_id: str) -> bool | str:
    if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
        return value
    raise KnowledgeError(f"{FILE_LABEL} [rules.{rule_id}]: key 'asks_action' must be true, false or a Jinja2 expression")


def _app_link_label(meta: Mapping[str, Any]) -> str:
    link = meta.get("app_link", {})
    if not isinstance(link, dict):
        raise KnowledgeError(f"{FILE_LABEL} [meta.app_link]: must be a table")
    _unknown(link, frozenset({"label"}), "meta.app_link")
    label = link.get("label", "")
    if not isinstance(label, str):
        raise KnowledgeError(f"{FILE_LABEL} [meta.app_link]: key 'label' must be a string")
    return label


def rule_ids_of(module: str) -> tuple[str, ...]:
    """The rule ids catalogue.toml says ``rules/<module>.py`` emits (each entry's ``module``), in file order."""
    return tuple(rule_id for rule_id, e in catalogue().entries.items() if e.module == module)


def indicator_of(f: Finding) -> str:
    return f.indicator or catalogue()[f.rule_id].indicator


def priority_of(f: Finding) -> int:
    return catalogue()[f.rule_id].priority


def guideline_source(guideline: str) -> str:
    return load().pgx.profiles[guideline].source


def sources_of(f: Finding) -> list[str]:
    """Clinician-facing source keys of a finding, primary first (internal ones, like the product brief, stay
    in the knowledge files)."""
    kb = load()
    keys = list(dict.fromkeys([*catalogue()[f.rule_id].sources, *f.sources]))
    replaced = f.values.get("replaces_sources")
    if replaced:
        # round-19 M1: the finding's own sources are the primary ones and stand in for the catalogue's named here
        # (an IBD pregnancy card cites ECCO 2015 / AGA 2019, never the rheumatology guideline ACR 2020)
        keys = [k for k in dict.fromkeys([*f.sources, *keys]) if k not in replaced]
    keys = _own_label(f, keys)
    return [k for k in keys if not kb.source(k).internal]


_IMURAN = "fda_azathioprine"  # the azathioprine (Imuran) label and its named parts (fda_azathioprine_*)


def _label_source(drug: str) -> str:
    """pgx.toml's label source of a thiopurine ("" for anything else)."""
    spec = load().pgx.drugs.get(drug)
    return spec.label_source if spec is not None else ""


def _own_label(f: Finding, keys: list[str]) -> list[str]:
    """A card cites the label of the drug it is about: on a mercaptopurine or thioguanine card the
    azathioprine (Imuran) label gives way to that drug's own (Purixan, Tabloid); a febuxostat
    contraindication card cites the febuxostat (Uloric) label first, not the Imuran label."""
    if f.rule_id == "interaction-xanthine-oxidase" and f.values.get("contraindicated"):
        keys = [k for k in keys if not k.startswith(_IMURAN)]
        own = _label_source(f.drug)
        return list(dict.fromkeys(["fda_febuxostat", *keys, *([own] if own and f.drug != "azathioprine" else [])]))
    if f.drug in ("", "azathioprine"):
        return keys
    own = _label_source(f.drug)
    if not own:
        return keys
    return list(dict.fromkeys(own if k.startswith(_IMURAN) else k for k in keys))


# --------------------------------------------------------------- start-up check

def check(emitted: set[str]) -> None:
    """Raise KnowledgeError (one line) naming every problem of the catalogue's metadata; the first names the file,
    the table and the key."""
    cat = catalogue()
    kb = load()
    problems = []
    for rule_id in sorted(emitted - set(cat.entries)):
        problems.append(f"{FILE_LABEL}: rule id {rule_id!r} is emitted but has no catalogue entry "
                        f"(add a [rules.{rule_id}] table){_emitted_by(rule_id)}")
    for rule_id, e in cat.entries.items():
        where = f"{FILE_LABEL} [rules.{rule_id}]"
        if e.indicator not in INDICATORS:
            problems.append(f"{where}: key 'indicator': bad indicator {e.indicator!r}")
        for key in e.sources:
            if key not in kb.sources:
                problems.append(f"{where}: key 'sources': unknown source {key!r}")
        if not [k for k in e.sources if k in kb.sources and not kb.sources[k].internal]:
            problems.append(f"{where}: key 'sources': no clinician-facing source")
        for code in e.override_reasons:
            if code not in cat.override_reasons:
                problems.append(f"{where}: key 'override_reasons': unknown override reason {code!r}")
        for other in e.supersedes:
            if other not in cat.entries:
                problems.append(f"{where}: key 'supersedes': unknown rule {other!r}")
    for rule_id in cat.stop_supersedes:
        if rule_id not in cat.entries:
            problems.append(f"{FILE_LABEL} [meta]: key 'stop_supersedes': unknown rule {rule_id!r}")
    if problems:
        raise KnowledgeError("; ".join(problems))


def _emitted_by(rule_id: str) -> str:
    """Which knowledge table gives rise to a data-driven rule id (interactions.toml [others.*])."""
    for key in load().interactions.others:
        if other_rule_id(key) == rule_id:
            return f" for rules/knowledge/interactions.toml [others.{key}]"
    return ""


# --------------------------------------------------------------- rule table (docs/rules.md)

def rules_table() -> str:
    """The rule table of docs/rules.md, generated from the catalogue (a test keeps the file current)."""
    cat = catalogue()
    kb = load()
    rows = ["| rule id | title | trigger | indicator | sources (clinician-facing) | supersedes |",
            "| --- | --- | --- | --- | --- | --- |"]
    for rule_id, e in cat.entries.items():
        srcs = "; ".join(kb.source(k).label for k in e.sources if not kb.source(k).internal)
        rows.append(f"| `{rule_id}` | {e.title} | {e.trigger} | {e.indicator} | {srcs} | "
                    f"{', '.join(f'`{s}`' for s in e.supersedes) or '—'} |")
    return "\n".join(rows)


readme_table = rules_table  # the name older callers use


def main() -> None:  # python -m rules --readme: rewrite the rule table in docs/rules.md
    import sys
    from pathlib import Path

    if sys.argv[1:] != ["--readme"]:
        print(rules_table())
        return
    path = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- rule-table:start -->", "<!-- rule-table:end -->"
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + rules_table() + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
