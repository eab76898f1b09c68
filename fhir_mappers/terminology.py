"""Code lists and unit conversions, loaded once from ``codes.toml``."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from .fhirjson import call_memo

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"
# WHO ATC and NDC, each under its canonical URI and its HL7 OID (FHIR R4 terminologies-systems)
ATC = frozenset({"http://www.whocc.no/atc", "urn:oid:2.16.840.1.113883.6.73"})
NDC = frozenset({"http://hl7.org/fhir/sid/ndc", "urn:oid:2.16.840.1.113883.6.69"})
UCUM = "http://unitsofmeasure.org"

_PATH = Path(__file__).with_name("codes.toml")
_LAB_UNITS = Path(__file__).with_name("lab_units.toml")  # laboratory-local unit strings -> UCUM, each row cited


def read_toml(path) -> dict:
    """A mapper data file, parsed; a syntax error names the file (the start then stops with that one line)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path.name}: {exc}") from None


@dataclass(frozen=True)
class Analyte:
    name: str
    loinc: frozenset[str]
    unit: str  # canonical unit
    factors: dict[str, float]  # normalised unit -> factor to canonical
    canonical: dict[str, str] | None = None  # normalised unit -> its canonical unit, when there are several
    keep_unconverted: bool = False  # keep a value in an unknown unit (unit "") for the laboratory's range
    # LOINC codes ("http://loinc.org|code") whose definition fixes the unit: a number sent under one of them
    # without any unit is in the analyte's unit (eGFR: "/1.73 sq M" codes, mL/min/{1.73_m2}; codes.toml)
    unit_by_code: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Terminology:
    version: str
    rxnorm: dict[str, str]
    unit_strength_mg: dict[str, float]
    ml_strength_mg: dict[str, float]  # RxNorm oral liquid -> mg per mL
    name_pattern: re.Pattern
    name_to_ingredient: dict[str, str]
    cvx: dict[str, dict]
    genes: dict[str, dict]
    hgnc_to_gene: dict[str, str]
    genotype_codes: frozenset[str]
    phenotype_codes: frozenset[str]
    gene_component_codes: frozenset[str]
    variant_codes: frozenset[str]
    variant_loinc: dict[str, list[str]]  # LOINC variant term -> [gene, HGVS...]
    gene_extension_url: str
    metabolizer_answers: dict[str, str]
    analytes: dict[str, Analyte]
    loinc_to_analyte: dict[str, str]
    mass_units: dict[str, float]
    unit_dose_units: frozenset[str]
    vaccine_names: dict[str, str]
    vaccine_pattern: re.Pattern
    not_vaccine_pattern: re.Pattern
    analyte_names: dict[str, str]  # lower-case observation name -> analyte
    analyte_words: dict[str, str]  # lower-case word or phrase of a judged analyte's name -> analyte (round-6 m3)
    analyte_words_exclude: frozenset[str]  # words that make a name another specimen or analyte (HbA1c, urine)
    analyte_words_qualifiers: frozenset[str]  # specimen / method words a LOINC component may carry (round-9 H3)
    status_loinc: frozenset[str]
    variants: dict[str, dict[str, str]]  # gene -> HGVS / rsID -> star allele (CPIC allele definitions)
    variant_sites: dict[str, dict[str, tuple[str, dict[str, str]]]]  # gene -> rsID -> (reference base, {variant base: allele})
    lab_units: dict[str, str]  # normalised printed unit -> UCUM code (lab_units.toml)
    # first word of each drug / vaccine name -> (place in the pattern's alternation, name): see ``_names_in``
    name_heads: dict[bytes, tuple[tuple[int, str, bytes], ...]] = field(default_factory=dict)
    vaccine_heads: dict[bytes, tuple[tuple[int, str, bytes], ...]] = field(default_factory=dict)
    atc: dict[str, str] = field(default_factory=dict)  # WHO ATC code -> ingredient
    atc_vaccines: dict[str, str] = field(default_factory=dict)  # WHO ATC code of a live vaccine -> CVX
    ndc_vaccines: dict[str, str] = field(default_factory=dict)  # NDC labeler+product as 9 digits (5-4) -> CVX
    # LOINC codes of panels sent as one Observation with the results as components (round-11 H1): asked for
    panel_loinc: frozenset[str] = frozenset()


def norm_unit(unit: str | None) -> str:
    """The form units are compared in: superscript powers as "^3", lower case, no spaces, µ/μ as "u", × as "x"."""
    if type(unit) is str:
        if unit.isascii():  # no superscript, micro sign or multiplication sign to rewrite: the same steps, directly
            return unit.strip().lower().replace(" ", "")
        return _norm_unit(unit)
    return ""  # None, or a number / list / object where a unit string belongs: no readable unit


# superscript digits as laboratories print powers of ten ("10³/µL", "×10⁹/L"): written as a power, "10^3", first,
# before anything else touches the unit, so that "10³" can never become "103" (103 per microlitre). A printing
# that has already lost its superscript ("103/uL") stays what it says and is not read.
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


@call_memo
def _norm_unit(unit: str) -> str:
    unit = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPT_DIGITS), unit)
    # no spaces, lower case; the micro sign and the Greek mu are UCUM's "u" (µL = uL); the multiplication sign "x"
    return unit.strip().lower().replace(" ", "").replace("μ", "u").replace("µ", "u").replace("×", "x")


@cache
def terminology() -> Terminology:
    raw = read_toml(_PATH)
    names: dict[str, str] = {}
    for ingredient, words in raw["ingredient_names"].items():
        for w in words:
            names[w.lower()] = ingredient
    # longest first so "6-mercaptopurine" wins over "mercaptopurine"
    alternation = "|".join(re.escape(w) for w in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w-])({alternation})(?![\w-])", re.IGNORECASE)

    analytes: dict[str, Analyte] = {}
    loinc_to_analyte: dict[str, str] = {}
    family_units = lab_family_units()
    for name, spec in raw["analytes"].items():
        units = spec["units"]
        factors = raw["unit_families"][units] if isinstance(units, str) else units
        factors = {norm_unit(u): float(f) for u, f in factors.items()}
        if isinstance(units, str):  # printings read only for this family (lab_units.toml [[family_unit]])
            for printed, ucum in family_units.get(units, {}).items():
                factors.setdefault(printed, factors[norm_unit(ucum)])
        factors.setdefault(norm_unit(spec["unit"]), 1.0)
        canonical = {u: spec["unit"] for u in factors}
        for unit, spellings in spec.get("unit_groups", {}).items():
            for u in [unit, *spellings]:
                factors[norm_unit(u)] = 1.0
                canonical[norm_unit(u)] = unit
        unit_by_code = frozenset(f"{LOINC}|{c}" for c in spec.get("unit_by_code", []))
        if not unit_by_code <= {f"{LOINC}|{c}" for c in spec["loinc"]}:
            raise ValueError(f"codes.toml: analytes.{name}.unit_by_code names a code that is not the analyte's")
        analytes[name] = Analyte(name, frozenset(spec["loinc"]), spec["unit"], factors, canonical,
                                 bool(spec.get("keep_unconverted")), unit_by_code)
        for code in spec["loinc"]:
            loinc_to_analyte.setdefault(code, name)

    vaccine_names = {k.lower(): v for k, v in raw["vaccine_names"].items()}
    vaccine_alt = "|".join(re.escape(w) for w in sorted(vaccine_names, key=len, reverse=True))
    analyte_names = {n.lower(): name for name, spec in raw["analytes"].items() for n in spec.get("names", [])}

    hgnc_to_gene = {}
    for gene, spec in raw["genes"].items():
        for code in spec["hgnc"]:
            hgnc_to_gene[code.upper()] = gene
    g = raw["genomics"]
    return Terminology(
        version=raw["meta"]["version"],
        rxnorm=dict(raw["rxnorm"]),
        unit_strength_mg={k: float(v) for k, v in raw["rxnorm_unit_strength_mg"].items()},
        ml_strength_mg={k: float(v) for k, v in raw.get("rxnorm_ml_strength_mg", {}).items()},
        name_pattern=pattern,
        name_to_ingredient=names,
        cvx=dict(raw["cvx"]),
        genes=dict(raw["genes"]),
        hgnc_to_gene=hgnc_to_gene,
        genotype_codes=frozenset(g["genotype_codes"]),
        phenotype_codes=frozenset(g["phenotype_codes"]),
        gene_component_codes=frozenset(g["gene_component_codes"]),
        variant_codes=frozenset(g.get("variant_codes", [])),
        variant_loinc={k: list(v) for k, v in g.get("variant_loinc", {}).items()},
        gene_extension_url=g["gene_extension_url"],
        metabolizer_answers=dict(raw["metabolizer_answers"]),
        analytes=analytes,
        loinc_to_analyte=loinc_to_analyte,
        mass_units={norm_unit(k): float(v) for k, v in raw["mass_units"].items()},
        unit_dose_units=frozenset(norm_unit(u) for u in raw["unit_dose_units"]["codes"]),
        vaccine_names=vaccine_names,
        vaccine_pattern=re.compile(rf"(?<![\w-])({vaccine_alt})(?![\w-])", re.IGNORECASE),
        not_vaccine_pattern=re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in raw["not_vaccine_names"]["words"])
                                       + r")(?![\w-])", re.IGNORECASE),
        analyte_names=analyte_names,
        analyte_words={w.lower(): a for a, ws in raw["analyte_words"]["words"].items() for w in ws},
        analyte_words_exclude=frozenset(w.lower() for w in raw["analyte_words"]["exclude"]),
        analyte_words_qualifiers=frozenset(w.lower() for w in raw["analyte_words"].get("qualifiers", [])),
        status_loinc=frozenset(raw["status_observations"]["loinc"]),
        variants={gene: dict(table) for gene, table in raw.get("variants", {}).items()},
        variant_sites={gene: {rs: (site["ref"], dict(site["alt"])) for rs, site in table.items()}
                       for gene, table in raw.get("variant_sites", {}).items()},
        lab_units=lab_units(),
        name_heads=_heads(names),
        vaccine_heads=_heads(vaccine_names),
        atc={k.upper(): v for k, v in raw.get("atc", {}).items()},
        atc_vaccines={k.upper(): v for k, v in raw.get("atc_vaccines", {}).items()},
        ndc_vaccines=_ndc_table(raw.get("ndc_vaccines", {})),
        panel_loinc=frozenset(raw.get("panels", {}).get("loinc", [])),
    )


def _ndc_table(rows: dict[str, dict]) -> dict[str, str]:
    """codes.toml [ndc_vaccines]: "labeler-product" -> its CVX, keyed by the 9-digit labeler+product (5-4)."""
    out: dict[str, str] = {}
    for product, row in rows.items():
        keys = _ndc_products(product)
        if len(keys) != 1 or row.get("cvx") is None or not row.get("source"):
            raise ValueError(f"codes.toml: ndc_vaccines {product!r} is not a labeler-product NDC with a cvx and a source")
        out[next(iter(keys))] = str(row["cvx"])
    return out


def _ndc_products(code: str) -> set[str]:
    """The labeler+product (9 digits, 5-4) an NDC as sent can stand for. Hyphenated: each segment padded (FDA's
    4-4-2, 5-3-2 and 5-4-1 formats and the 11-digit 5-4-2; a product code "0006-4681" alike). Plain digits: 11
    (5-4-2) or 9 (5-4) are one reading; 10 digits could be any of the three 10-digit formats (all are returned)."""
    c = code.strip()
    if "-" in c:
        parts = c.split("-")
        if len(parts) in (2, 3) and all(p.isdigit() for p in parts) and 1 <= len(parts[0]) <= 5 and 1 <= len(parts[1]) <= 4:
            return {parts[0].zfill(5) + parts[1].zfill(4)}
        return set()
    if not c.isdigit():
        return set()
    if len(c) == 11:
        return {c[:9]}
    if len(c) == 10:
        return {"0" + c[:8], c[:5] + "0" + c[5:8], c[:9]}
    if len(c) == 9:
        return {c}
    return set()


def ndc_vaccine(code: str) -> str | None:
    """The CVX of a live vaccine an NDC (as sent: 10/11 digits, with or without hyphens) names; None when the code
    names no vaccine of the table, or when a 10-digit code without hyphens could name two different ones."""
    table = terminology().ndc_vaccines
    found = {table[k] for k in _ndc_products(code) if k in table}
    return next(iter(found)) if len(found) == 1 else None


def cvx_code(code: str) -> str:
    """A CVX code as the table keys it: CDC publishes the one-digit codes with a leading zero ("03"); "3" and "003"
    are read as "03" (round-4 review m2). Other codes are returned stripped."""
    c = code.strip()
    return f"{int(c):02d}" if c.isdigit() else c


def lab_units() -> dict[str, str]:
    """lab_units.toml: normalised printed unit -> UCUM code. A row without a known source, or two rows that
    give one printing two meanings, stop the load (the table is a cited fact, never a guess)."""
    raw = read_toml(_LAB_UNITS)
    sources = raw["sources"]
    out: dict[str, str] = {}
    for row in raw["unit"]:
        if row.get("source") not in sources:
            raise ValueError(f"lab_units.toml: unit {row.get('printed')!r} names no known source")
        key = norm_unit(row["printed"])
        if out.get(key, row["ucum"]) != row["ucum"]:
            raise ValueError(f"lab_units.toml: unit {row['printed']!r} is given two UCUM meanings")
        out[key] = row["ucum"]
    return out


def lab_family_units() -> dict[str, dict[str, str]]:
    """lab_units.toml [[family_unit]]: unit family -> {normalised printed unit: UCUM code}. Rows whose meaning
    depends on what is measured ("G/L": 10^9/L for a cell count, never grams per litre there), read only for the
    analytes of that family. Each row must name a known source and a UCUM code the family converts."""
    raw = read_toml(_LAB_UNITS)
    families = read_toml(_PATH)["unit_families"]
    out: dict[str, dict[str, str]] = {}
    for row in raw.get("family_unit", []):
        if row.get("source") not in raw["sources"]:
            raise ValueError(f"lab_units.toml: family unit {row.get('printed')!r} names no known source")
        family = families.get(row.get("family"))
        if family is None or norm_unit(row["ucum"]) not in {norm_unit(u) for u in family}:
            raise ValueError(f"lab_units.toml: family unit {row['printed']!r}: {row['ucum']!r} is not a unit of "
                             f"family {row.get('family')!r}")
        out.setdefault(row["family"], {})[norm_unit(row["printed"])] = row["ucum"]
    return out


# A name is searched for only where it can be found. For a text in ASCII, the case-insensitive pattern can
# match a name only where the lower-case text contains it (every name is lower-case ASCII): a text that
# contains none has no match (most drug names of a call name no drug this service knows), and one that
# contains a few is searched with the pattern of just those names, in the full pattern's order (the same
# matches: the other alternatives can match nowhere in it). Other text is searched with the full pattern.
# Memoised for one call only (``call_memo``). Both return a new set each call.
def ingredients_in_text(text: str) -> set[str]:
    return set(_ingredients_in_text(text or ""))


def vaccines_in_text(text: str) -> set[str]:
    """CVX codes of vaccines named in free text."""
    return set(_vaccines_in_text(text or ""))


@call_memo  # an order's drug text: read once per call for drug names and vaccine names together
def names_in_text(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(``ingredients_in_text``, ``vaccines_in_text``) of one text, its words read once (a medication order is
    searched for both). Memoised for one call only; the sets are the memo's: never changed by the caller."""
    read = _words_of(text)
    return _ingredients_found(text, read), _vaccines_found(text, read)


def vaccine_family(name: str) -> str:
    """The vaccine a CVX name is a formulation of: "rotavirus, pentavalent, live (RV5)" -> "rotavirus";
    a comma inside parentheses does not end it: "MMR (measles, mumps, rubella), live" -> "MMR (measles, mumps,
    rubella)" (round-5 m3: never "MMR (measles")."""
    depth = 0
    for i, ch in enumerate(name):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth <= 0:
            return name[:i].strip()
    return name.strip()


def text_vaccines_beside(coded: set[str], from_text: set[str]) -> set[str]:
    """The vaccines named in a concept's words that its codes do not already name (round-8 m4: CVX 111, LAIV3,
    with the text "FluMist", read as LAIV4 by name, named two products for one order): a name is dropped when a
    code names the same vaccine (family, e.g. "influenza") with the same live / non-live reading; a name that reads
    live beside a non-live code of its family is kept (the live reading is the safe one)."""
    cvx = terminology().cvx
    seen = {(vaccine_family(cvx[c]["name"]).lower(), bool(cvx[c].get("live"))) for c in coded if c in cvx}
    return {c for c in from_text - coded
            if c not in cvx or (vaccine_family(cvx[c]["name"]).lower(), bool(cvx[c].get("live"))) not in seen}


# a word as the patterns' boundaries see it: the name patterns match only between characters that are not [\w-]
_WORD = re.compile(r"[\w-]+")
# every ASCII byte that is not [\w-] (letters, digits, "_", "-") -> a space: lower-case ASCII text split into such words
_NOT_WORD = bytes.maketrans(bytes(c for c in range(128) if not (chr(c).isalnum() or chr(c) in "_-")),
                            b" " * sum(1 for c in range(128) if not (chr(c).isalnum() or chr(c) in "_-")))

Heads = dict[bytes, tuple[tuple[int, str, bytes], ...]]


def _heads(names: dict[str, str]) -> Heads:
    r"""Each name under its first word (the longest [\w-] run it starts with; b"" when it starts with another
    character), with its place in the pattern's alternation (longest first, as ``terminology`` sorts them)."""
    heads: dict[bytes, list[tuple[int, str, bytes]]] = {}
    for rank, name in enumerate(sorted(names, key=len, reverse=True)):
        first = m.group() if (m := _WORD.match(name)) else ""
        heads.setdefault(first.encode(), []).append((rank, name, name.encode()))
    return {k: tuple(v) for k, v in heads.items()}


def _words_of(text: str) -> tuple[bytes, frozenset[bytes]] | None:
    """(the text in lower case, its words) for ASCII text; None for other text. Not memoised: a few C calls, less
    than a look-up in the call's memo (``names_in_text`` reads a text's words once for both kinds of name)."""
    if not text.isascii():
        return None
    low = text.encode("ascii").lower()
    return low, frozenset(low.translate(_NOT_WORD).split())


def _names_in(read: tuple[bytes, frozenset[bytes]] | None, heads: Heads) -> tuple[str, ...] | None:
    r"""The names that can match in ``text``, in the pattern's order; None when the text is not ASCII (then only
    the full pattern can say). In ASCII text a match of a name starts after a character that is not [\w-] and
    its first word is followed by one (or the name ends there, followed by one): the text has that first word
    as a whole word, and the lower-case text contains the name (every name is lower-case ASCII). ``read``:
    ``_words_of(text)``."""
    if read is None:
        return None
    low, words = read
    found = [entry for word in heads.keys() & words for entry in heads[word] if entry[2] in low]
    if b"" in heads:
        found += [entry for entry in heads[b""] if entry[2] in low]
    if not found:  # the usual answer: no name of the kind
        return ()
    if len(found) > 1:
        found.sort()
    return tuple([entry[1] for entry in found])


@lru_cache(maxsize=256)  # keyed by names from the knowledge data only (never by a patient's text)
def _pattern_of(names: tuple[str, ...]) -> re.Pattern:
    """The pattern of ``terminology`` (name_pattern, vaccine_pattern) restricted to ``names``: an alternative
    whose name the text does not contain can match nowhere in it, so the matches are the full pattern's."""
    return re.compile(rf"(?<![\w-])({'|'.join(re.escape(w) for w in names)})(?![\w-])", re.IGNORECASE)


def _named(match: str, names: dict[str, str]) -> str:
    """What the name a pattern matched stands for. The patterns match case-insensitively as ``re`` folds case, which
    is not always ``str.lower`` ("AZATHİOPRINE": the dotted capital I lowers to two characters): such a match is
    looked up by the name it matched, never a KeyError (an HTTP 500)."""
    found = names.get(match.lower())
    if found is None:
        found = next(v for k, v in names.items() if re.fullmatch(re.escape(k), match, re.IGNORECASE))
    return found


# A hyphen between two letters joins two drug names in the usual EHR display of a combination
# ("sulfamethoxazole-trimethoprim", "lisinopril-hydrochlorothiazide", "amlodipine-benazepril"; round-4 review H5).
# The names are searched in the text as sent (so that "6-MP", "co-trimoxazole" and "SMX-TMP" keep matching as
# the names they are) and again with such hyphens read as spaces, which finds each joined name. A hyphen beside a
# digit ("6-MP", "800-160") is never read as a space.
_JOINING_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")


@call_memo
def _ingredients_in_text(text: str) -> frozenset[str]:
    return _ingredients_found(text, _words_of(text))


def _ingredients_found(text: str, read: tuple[bytes, frozenset[bytes]] | None) -> frozenset[str]:
    """``_ingredients_in_text`` of ``text`` whose words (``_words_of``) are ``read``."""
    found = _names_found(text, read)
    if "-" in text:
        split = _JOINING_HYPHEN.sub(" ", text)
        if split != text:
            found |= _names_found(split, _words_of(split))
    return found


def _names_found(text: str, read: tuple[bytes, frozenset[bytes]] | None) -> frozenset[str]:
    t = terminology()
    names = _names_in(read, t.name_heads)
    if names == ():
        return frozenset()
    pattern = t.name_pattern if names is None else _pattern_of(names)
    return frozenset(_named(m, t.name_to_ingredient) for m in pattern.findall(text))


@call_memo
def _vaccines_in_text(text: str) -> frozenset[str]:
    return _vaccines_found(text, _words_of(text))


def _vaccines_found(text: str, read: tuple[bytes, frozenset[bytes]] | None) -> frozenset[str]:
    """``_vaccines_in_text`` of ``text`` whose words (``_words_of``) are ``read``."""
    t = terminology()
    names = _names_in(read, t.vaccine_heads)
    if names == ():  # no vaccine named: none, whether or not an immune globulin is
        return frozenset()
    if t.not_vaccine_pattern.search(text):  # VariZIG, HBIG, IVIG: immune globulins, not vaccines
        return frozenset()
    pattern = t.vaccine_pattern if names is None else _pattern_of(names)
    return frozenset(_named(m, t.vaccine_names) for m in pattern.findall(text))
