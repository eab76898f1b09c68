"""Loads the knowledge files once and indexes them.

Each TOML file has a ``[meta] version``; the knowledge version that travels
with every card is the newest of them (``KNOWLEDGE.version``). Every number a
rule reads names a source key that must exist in ``sources.toml``; ``load``
refuses to start otherwise, so a rule cannot cite nothing. Each file is read into
its frozen dataclass (``rules/knowledge_schema.py``): an unknown or missing key, a
wrong type or a TOML syntax error is a ``KnowledgeError`` naming file, table and key.
"""
from __future__ import annotations

import csv
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .knowledge_schema import (FILES, DosingFile, InteractionsFile, KnowledgeError, Meta, MonitoringFile, PgxFile,
                               PopulationsFile, Source, SourceSpec, build)

KNOWLEDGE_DIR = Path(__file__).with_name("knowledge")


@dataclass(frozen=True)
class Knowledge:
    """Every knowledge file, typed (``rules/knowledge_schema.py``): ``load().dosing.general.new_start_mg``."""

    version: str
    pgx: PgxFile
    dosing: DosingFile
    interactions: InteractionsFile
    monitoring: MonitoringFile
    populations: PopulationsFile
    sources: Mapping[str, Source]
    diplotypes: Mapping[str, Mapping[str, str]]  # gene -> normalised diplotype -> phenotype
    allele_function: Mapping[str, Mapping[str, str]]  # gene -> allele -> function
    # gene -> (allele, allele) in either order -> phenotype: ``diplotypes`` looked up without normalising
    # the pair at every call (built once here, from ``diplotypes``: the same answers)
    diplotype_pairs: Mapping[str, Mapping[tuple[str, str], str]] = field(default_factory=dict)

    def source(self, key: str) -> Source:
        return self.sources[key]


def source_keys(node: Any, where: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, str]]:
    """(table, key, source key) for every value of a ``source`` / ``*_source`` / ``*sources`` key in a TOML tree."""
    found: list[tuple[tuple[str, ...], str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if (k == "source" or k.endswith("_source")) and isinstance(v, str):
                found.append((where, k, v))
            elif (k == "sources" or k.endswith("_sources")) and isinstance(v, list):
                found.extend((where, k, x) for x in v if isinstance(x, str))
            elif k.endswith("_sources") and isinstance(v, dict):  # label_sources = { drug = [...] }
                found.extend(((*where, k), d, x) for d, xs in v.items() if isinstance(xs, list) for x in xs)
            else:
                found.extend(source_keys(v, (*where, k)))
    elif isinstance(node, list):
        for v in node:
            found.extend(source_keys(v, where))
    return found


def read_toml(path: Path) -> dict[str, Any]:
    """A knowledge file parsed; a syntax error is a KnowledgeError naming the file (no traceback)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError(f"{file_label(path)}: TOML syntax error: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{file_label(path)}: cannot be read: {exc}") from None


def file_label(path: Path) -> str:
    return f"rules/knowledge/{path.name}"


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def normalise_diplotype(a: str, b: str) -> str:
    return "/".join(sorted((a, b), key=_allele_sort_key))


def _allele_sort_key(allele: str) -> tuple[int, str]:
    digits = "".join(ch for ch in allele if ch.isdigit())
    return (int(digits) if digits else 10**6, allele)


@cache
def raw_files() -> Mapping[str, Mapping[str, Any]]:
    """The knowledge files as parsed TOML (file stem -> tree), for the checks that walk every key."""
    raw: dict[str, dict[str, Any]] = {}
    for path in sorted(KNOWLEDGE_DIR.glob("*.toml")):
        if path.stem == "catalogue":
            continue  # rule metadata: rules/catalogue.py; the wording: hooks/wording.py
        if path.stem != "sources" and path.stem not in FILES:
            raise KnowledgeError(f"{file_label(path)}: no schema for this file (rules/knowledge_schema.py FILES)")
        raw[path.stem] = read_toml(path)
    return types.MappingProxyType(raw)


@cache
def load() -> Knowledge:
    """Every knowledge file, read and checked once (KnowledgeError: one line naming file, table and key)."""
    raw = raw_files()
    for stem in ("sources", *FILES):
        if stem not in raw:
            raise KnowledgeError(f"rules/knowledge/{stem}.toml: missing")
    sources_file = "rules/knowledge/sources.toml"
    meta = build(Meta, raw["sources"].get("meta"), sources_file, ("meta",))
    sources = {}
    for key, spec in raw["sources"].items():
        if key != "meta":
            s = build(SourceSpec, spec, sources_file, (key,))
            sources[key] = Source(key, s.label, s.url, s.citation, s.year, s.internal)
    typed = {stem: build(cls, raw[stem], f"rules/knowledge/{stem}.toml") for stem, cls in FILES.items()}
    for stem, tree in raw.items():
        for where, key, value in source_keys(tree):
            if value not in sources:
                at = f"[{'.'.join(where)}]" if where else "(top level)"
                raise KnowledgeError(f"rules/knowledge/{stem}.toml {at}: key {key!r} names unknown source "
                                     f"{value!r} (not in sources.toml)")
    diplotypes: dict[str, dict[str, str]] = {}
    functions: dict[str, dict[str, str]] = {}
    for gene in ("TPMT", "NUDT15"):
        table = {}
        for row in _read_tsv(KNOWLEDGE_DIR / "cpic" / f"{gene.lower()}_diplotype_phenotype.tsv"):
            a, b = row["diplotype"].split("/")
            table[normalise_diplotype(a, b)] = row["phenotype"]
        diplotypes[gene] = table
        functions[gene] = {
            row["allele"]: row["clinical_function_cpic"]
            for row in _read_tsv(KNOWLEDGE_DIR / "cpic" / f"{gene.lower()}_allele_function.tsv")
        }
    versions = [meta.version, *(t.meta.version for t in typed.values())]
    return Knowledge(max(versions, key=version_key), sources=types.MappingProxyType(sources),
                     diplotypes=types.MappingProxyType(diplotypes), allele_function=types.MappingProxyType(functions),
                     diplotype_pairs=types.MappingProxyType({g: diplotype_pairs(t) for g, t in diplotypes.items()}),
                     **typed)


def diplotype_pairs(table: Mapping[str, str]) -> Mapping[tuple[str, str], str]:
    """A gene's diplotype table (normalised "a/b" -> phenotype) keyed by the allele pair in both orders:
    ``pairs[(a, b)] == table.get(normalise_diplotype(a, b))`` for any two alleles (a normalised key is its
    two alleles sorted, so the pair in either order names exactly that key)."""
    pairs: dict[tuple[str, str], str] = {}
    for key, phenotype in table.items():
        a, b = key.split("/")
        pairs[(a, b)] = pairs[(b, a)] = phenotype
    return types.MappingProxyType(pairs)


def version_key(version: str) -> tuple[int, ...]:
    """'2026.12.0' > '2026.9.0': versions compare by their numbers, not as strings."""
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))

