"""AllergyIntolerance → ``AllergyFact``: which thiopurine a record names, and what it says about it.

The mapper reads facts only: the drugs named (by RxNorm or SNOMED CT code, by name, by class word
such as "thiopurine analogues"), where they were named (code, substance, note, reaction text), the
record's type, criticality, clinical and verification status, and each reaction's manifestations and
severity, as written. Whether that is a contraindication or a tolerable intolerance is the rules'
decision (``rules.populations``). Records that name no drug of interest are dropped; records of any
status are kept (the rule excludes refuted and entered-in-error ones and says what it set aside).
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Iterable

from .facts import AllergyFact
from .fhirjson import as_list, codes_in, codings, concept_text, ref_of
from .medications import ingredients_of
from .terminology import SNOMED, read_toml

_PATH = Path(__file__).with_name("allergy_codes.toml")
_MAX_TEXT = 300  # a note can be megabytes: what the card quotes is cut here (the match reads all of it)


@cache
def _tables() -> tuple[dict[str, str], re.Pattern, dict[str, tuple[str, ...]]]:
    raw = read_toml(_PATH)
    words: dict[str, tuple[str, ...]] = {}
    for spec in raw["classes"].values():
        for w in spec["words"]:
            words[w.lower()] = tuple(spec["ingredients"])
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return dict(raw["snomed_ingredients"]), re.compile(rf"(?<![\w-])({alternation})(?![\w-])", re.IGNORECASE), words


def _named(concept: Any, text: str) -> tuple[set[str], set[str]]:
    """(ingredients named by code, name or class word; class words found) in a concept and/or free text."""
    snomed, class_pattern, class_words = _tables()
    found = ingredients_of(concept, text)
    found |= {snomed[c] for c in codes_in(concept, SNOMED) if c in snomed}
    classes = set()
    for m in class_pattern.findall(text):
        classes.add(m.lower())
        found |= set(class_words[m.lower()])
    return found, classes


# a note that says a drug was tolerated does not name it as the allergen ("penicillin: rash; tolerated
# azathioprine", "no reaction to 6-MP"): such sentences are not searched for drug names
_NEGATED = re.compile(r"\b(tolerat\w*|no (known )?(allergy|allergies|reaction|reactions)|not allergic|without (any )?reaction|"
                      r"negative (challenge|test))\b", re.IGNORECASE)
_SENTENCES = re.compile(r"[^.;\n]+")


def _unnegated(text: str) -> str:
    """The note without its sentences that say a drug was tolerated (see ``_NEGATED``)."""
    if not text or not _NEGATED.search(text):
        return text
    return " . ".join(part for part in _SENTENCES.findall(text) if not _NEGATED.search(part))


def _text_of(concept: Any) -> str:
    parts = [c for c in as_list(concept) if isinstance(c, str)]
    parts += [c["text"] for c in as_list(concept) if isinstance(c, dict) and isinstance(c.get("text"), str)]
    parts += [c["display"] for c in codings(concept) if isinstance(c.get("display"), str)]
    return " | ".join(parts)


def _notes(resource: dict) -> str:
    return " | ".join(n["text"] for n in as_list(resource.get("note")) if isinstance(n, dict) and isinstance(n.get("text"), str))


def _status(value: Any) -> str:
    if isinstance(value, str):  # STU3 and older wrote the code itself
        return value.strip().lower()
    codes = [str(c.get("code")).strip().lower() for c in codings(value) if c.get("code")]
    return codes[0] if codes else ""


def _word(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def allergy_fact(a: dict) -> AllergyFact | None:
    """The fact of one AllergyIntolerance, or None when it names no drug this service knows."""
    ingredients: set[str] = set()
    classes: set[str] = set()
    where: list[str] = []

    def look(label: str, concept: Any, text: str) -> None:
        if concept is None and not text:  # no note, no reaction text: nothing to read
            return
        found, cls = _named(concept, text)
        if found:
            ingredients.update(found)
            classes.update(cls)
            if label not in where:
                where.append(label)

    code = a.get("code")
    look("code", code, _text_of(code))
    note = _notes(a)
    look("note", None, _unnegated(note))
    manifestations: list[str] = []
    severities: list[str] = []
    for r in as_list(a.get("reaction")):
        if not isinstance(r, dict):
            continue
        substance = r.get("substance")
        look("substance", substance, _text_of(substance))
        described = " | ".join(x for x in (r.get("description"), _notes(r)) if isinstance(x, str) and x)
        look("reaction", None, described)
        manifestations += [t for m in as_list(r.get("manifestation")) if (t := concept_text(m))]
        if described:
            manifestations.append(described)
        if sev := _word(r.get("severity")):
            severities.append(sev)
    if not ingredients:
        return None
    types = _word(a.get("type"))
    criticality = _word(a.get("criticality"))
    return AllergyFact(
        frozenset(ingredients), concept_text(code)[:_MAX_TEXT], ref_of(a),
        classes=frozenset(classes), matched_in=tuple(where), kind=types, criticality=criticality,
        clinical_status=_status(a.get("clinicalStatus")), verification=_status(a.get("verificationStatus")),
        reactions=tuple(m[:_MAX_TEXT] for m in manifestations), severities=tuple(severities),
        note=note[:_MAX_TEXT], recorded=str(a.get("recordedDate") or a.get("onsetDateTime") or "")[:10])


def allergy_facts(allergies: Iterable[dict]) -> list[AllergyFact]:
    return [f for a in allergies if isinstance(a, dict) and (f := allergy_fact(a)) is not None]
