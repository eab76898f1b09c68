"""Loads the knowledge files once and indexes them.

Each TOML file has a ``[meta] version``; the knowledge version that travels
with every card is the newest of them (``KNOWLEDGE.version``). Every number a
rule reads names a source key that must exist in ``sources.toml``; ``load``
refuses to start otherwise, so a rule cannot cite nothing.
"""
from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

KNOWLEDGE_DIR = Path(__file__).with_name("knowledge")


@dataclass(frozen=True)
class Source:
    key: str
    label: str
    url: str
    citation: str
    year: int
    internal: bool = False  # basis of a number in the knowledge data, never a clinician-facing source


@dataclass(frozen=True)
class Knowledge:
    version: str
    files: dict[str, dict[str, Any]]  # file stem -> parsed TOML
    sources: dict[str, Source]
    diplotypes: dict[str, dict[str, str]]  # gene -> normalised diplotype -> phenotype
    allele_function: dict[str, dict[str, str]]  # gene -> allele -> function

    def source(self, key: str) -> Source:
        return self.sources[key]

    def __getitem__(self, stem: str) -> dict[str, Any]:
        return self.files[stem]


def source_keys(node: Any) -> list[str]:
    """Every value of a ``source`` / ``*_source`` key anywhere in a TOML tree."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if (k == "source" or k.endswith("_source")) and isinstance(v, str):
                found.append(v)
            elif (k == "sources") and isinstance(v, list):
                found.extend(x for x in v if isinstance(x, str))
            else:
                found.extend(source_keys(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(source_keys(v))
    return found


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def normalise_diplotype(a: str, b: str) -> str:
    return "/".join(sorted((a, b), key=_allele_sort_key))


def _allele_sort_key(allele: str) -> tuple[int, str]:
    digits = "".join(ch for ch in allele if ch.isdigit())
    return (int(digits) if digits else 10**6, allele)


@cache
def load() -> Knowledge:
    files = {}
    for path in sorted(KNOWLEDGE_DIR.glob("*.toml")):
        if path.stem == "catalogue":
            continue  # the wording: rules/catalogue.py
        files[path.stem] = tomllib.loads(path.read_text(encoding="utf-8"))
    raw_sources = files["sources"]
    sources = {
        key: Source(key, spec["label"], spec.get("url", ""), spec.get("citation", ""), int(spec.get("year", 0)),
                     bool(spec.get("internal", False)))
        for key, spec in raw_sources.items()
        if key != "meta"
    }
    for stem, tree in files.items():
        missing = [k for k in source_keys(tree) if k not in sources]
        if missing:
            raise ValueError(f"knowledge file {stem}.toml cites unknown sources: {sorted(set(missing))}")
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
    version = max((tree.get("meta", {}).get("version", "0") for tree in files.values()), key=version_key)
    return Knowledge(version, files, sources, diplotypes, functions)


def version_key(version: str) -> tuple[int, ...]:
    """'2026.12.0' > '2026.9.0': versions compare by their numbers, not as strings."""
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))

