"""TPMT / NUDT15 genotype and phenotype text as laboratories write it, reduced
to star-allele diplotypes and CPIC phenotype terms.

Forms read (each seen in laboratory reports or the HL7 Genomics Reporting IG):
``*3A/*3C``, ``TPMT*3A/TPMT*3C``, ``TPMT *1/*3A (heterozygous)``, ``*3A/*3A
homozygous``, ``*3A/Negative`` (ARUP: no variant on the other allele),
``TPMT *3A/*3A; NUDT15 *1/*1`` (several genes in one result), ambiguous
calls ``*1/*3A or *3B/*3C``, ``No variants detected`` (= *1/*1), and variants
(``c.460G>A het, c.719A>G het``, ``rs1800462``, genomic HGVS) mapped through
CPIC's allele definitions (``codes.toml [variants]``). What this module cannot
reduce is returned as ``None`` and the result stays "unreadable": never normal.
"""
from __future__ import annotations

import re

from .terminology import terminology

_GENES = ("TPMT", "NUDT15")
_GENE_MENTION = re.compile(r"\b(TPMT|NUDT15)\b", re.IGNORECASE)
_ALLELE = r"\*\s*\d+[A-Z]?"
_DIPLO = re.compile(rf"(?<![^\W_])({_ALLELE}|negative|normal|wt|wild[- ]?type)\s*/\s*({_ALLELE}|negative|normal|wt|wild[- ]?type)", re.IGNORECASE)
_ZYG_WORD = r"homozygous|heterozygous|hemizygous|hom|het|hemi"
_SINGLE = re.compile(rf"({_ALLELE})\s*(?:\(?\s*)({_ZYG_WORD})\b", re.IGNORECASE)
# the zygosity word before the allele: "Heterozygous for TPMT*3A", "homozygous for the *3 allele" (round-5 M3)
_SINGLE_BEFORE = re.compile(rf"(?<![\w-])({_ZYG_WORD})\b\s*(?:for\s+)?(?:the\s+)?({_ALLELE})(?!\s*/)", re.IGNORECASE)
_NO_VARIANT = re.compile(r"\b(no (?:variants?|mutations?|pathogenic variants?|alleles?) (?:were )?(?:detected|identified|found)|"
                         r"negative|not detected|wild[- ]?type)\b", re.IGNORECASE)
_VARIANT = re.compile(r"(c\.\d+(?:[+-]\d+)?[ACGT]>[ACGT]|g\.\d+(?:_\d+)?(?:[ACGT]>[ACGT]|del|dup|ins[ACGT]+)|rs\d+)", re.IGNORECASE)
_WILD = {"negative", "normal", "wt", "wildtype", "wild-type", "wild type"}


def gene_segment(text: str, gene: str) -> str:
    """The part of a multi-gene text about ``gene`` ("TPMT *3A/*3A; NUDT15 *1/*1", gene NUDT15 -> "NUDT15 *1/*1").
    The whole text when it names no gene or only this one."""
    mentions = [(m.start(), m.group(1).upper()) for m in _GENE_MENTION.finditer(text or "")]
    if len({g for _, g in mentions}) < 2:
        return text or ""
    parts = []
    for i, (start, g) in enumerate(mentions):
        end = mentions[i + 1][0] if i + 1 < len(mentions) else len(text)
        if g == gene:
            parts.append(text[start:end])
    return " ".join(parts)


def _allele(token: str) -> str:
    token = token.strip()
    if token.lower().replace(" ", "") in {w.replace(" ", "") for w in _WILD}:
        return "*1"
    return "*" + token.lstrip("*").strip().upper()


def _allele_key(allele: str) -> tuple[int, str]:
    digits = "".join(ch for ch in allele if ch.isdigit())
    return (int(digits) if digits else 10**6, allele)


def diplotype(text: str, gene: str) -> tuple[str, str]:
    """(diplotype text, note) for ``gene`` in a genotype result, or ("", why).

    The diplotype is star alleles joined by "/" with ambiguous alternatives
    joined by " or " (the rules take the most severe)."""
    seg = gene_segment(text, gene)
    seg = re.sub(rf"\b{gene}\s*(?=\*)", "", seg, flags=re.IGNORECASE)  # TPMT*3A -> *3A
    seg = re.sub(rf"\b{gene}\b\s*:?", " ", seg, flags=re.IGNORECASE)
    calls = ["/".join(sorted((_allele(a), _allele(b)), key=_allele_key)) for a, b in _DIPLO.findall(seg)]
    if calls and re.search(_ALLELE, _DIPLO.sub(" ", seg)) or re.search(r"/\s*" + _ALLELE + r"\s*/", seg):
        return "", f"'{seg.strip()[:60]}' is not a diplotype of two star alleles"
    if calls:
        return " or ".join(dict.fromkeys(calls)), ("ambiguous call" if len(set(calls)) > 1 else "")
    singles = [(m.group(1), m.group(2), m.group(0)) for m in _SINGLE.finditer(seg)]
    singles += [(m.group(2), m.group(1), m.group(0)) for m in _SINGLE_BEFORE.finditer(seg)]
    if len({(_allele(a), zygosity(z)) for a, z, _ in singles}) == 1:
        token, word, shown = singles[0]
        allele = _allele(token)
        # hemizygous: the one copy present carries the variant (the other is deleted): no functional allele
        return (f"{allele}/{allele}" if zygosity(word) == "hom" else f"*1/{allele}"), f"read from '{shown.strip()}'"
    if singles:
        return "", f"'{seg.strip()[:60]}' states more than one single-allele call"
    variants = _VARIANT.findall(seg)
    if variants:
        return _from_variants(seg, gene)
    if _NO_VARIANT.search(seg) and not re.search(_ALLELE, seg):
        return "*1/*1", "no variant detected"
    return "", f"'{seg.strip()[:60]}' names no star alleles"


_ZYGOSITY = re.compile(r"(?<![\w-])(hom|het|hemi)\w*", re.IGNORECASE)


def zygosity(text: str) -> str:
    """"hom", "het" or "?" from the first zygosity word in ``text`` ("Heterozygous", "het", "homozygous for",
    "hemizygous" = no functional copy: read as "hom"). A phrase naming the reference ("homozygous wild type",
    "homozygous reference") states no variant zygosity: "?" (the caller then takes the worst case)."""
    if _REFERENCE_WORDS.search(text or ""):
        return "?"
    m = _ZYGOSITY.search(text or "")
    if not m:
        return "?"
    word = m.group(1).lower()
    return "het" if word.startswith("het") else "hom"


def variant_allele(token: str, gene: str) -> str | None:
    """The star allele one variant (HGVS c./g., rsID) or star-allele token names, per CPIC's allele definitions."""
    if token.startswith("*"):
        return token.upper()
    key = token[:2].lower() + token[2:].upper() if token[:2].lower() in ("c.", "g.") else token.lower()
    key = re.sub(r"(DEL|DUP|INS)", lambda x: x.group(1).lower(), key)
    return terminology().variants.get(gene, {}).get(key)


_BASES = re.compile(r"(?<![A-Za-z0-9])([ACGT])\s*[/|;]?\s*([ACGT])(?![A-Za-z0-9>])")
_COUNTED = re.compile(r"(?<![\w.])([01])\s*[/|]\s*([01])(?![\w.])")
_REFERENCE_WORDS = re.compile(r"\b(hom\w*\s*(?:ref\w*|wild[- ]?type|wt|normal)|wild[- ]?type|ref(?:erence)?\s*/\s*ref\w*|"
                              r"negative|not detected|absent|no variant)\b", re.IGNORECASE)
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def _site_bases(a: str, b: str, ref: str, alts: dict[str, str]) -> tuple[str, ...] | None:
    """The variant bases of a genotype "a/b" at one site (() = reference on both copies), read on the
    plus strand (dbSNP's orientation of the rsID, as in CPIC's table) and, when the plus strand cannot
    explain both bases, complemented (TPMT lies on the minus strand; some laboratories print the coding
    strand: rs1142345 A/G). At a site whose bases complement each other (C>G, A>T) both strands are
    possible readings and must agree ("C/G"); otherwise (a C>G site's "C/C") None, as when no strand
    explains both bases."""
    bases = {ref, *alts}
    readings = []
    for x, y in ((a, b), (a.translate(_COMPLEMENT), b.translate(_COMPLEMENT))):
        if {x, y} <= bases:
            readings.append(tuple(sorted(base for base in (x, y) if base != ref)))
    palindromic = ref.translate(_COMPLEMENT) in alts  # the other strand would swap reference and variant
    if not readings or (palindromic and len(set(readings)) > 1):
        return None
    return readings[0]


def _site_call(token: str, window: str, gene: str) -> tuple[list[tuple[str, str]], str] | None:
    """((allele, zygosity) found, note) for an rsID printed with its genotype at that one site
    ("rs116855232 C/T", "CC", "0/1", "homozygous reference"), per the reference and variant bases of
    CPIC's allele definition table; ([], note) when both copies carry the reference base; None when the
    window states no genotype the site table can read (the caller falls back to het/hom words)."""
    site = terminology().variant_sites.get(gene, {}).get(token.lower())
    if site is None:
        return None
    ref, alts = site
    bases = _BASES.search(window)
    counted = _COUNTED.search(window)
    reference = _REFERENCE_WORDS.search(window)
    if bases:
        found = _site_bases(bases.group(1), bases.group(2), ref, alts)
        if found is None:
            return [("?", "?")], f"{token} {bases.group(0).strip()}: bases not read at this site (reference {ref}, variant {'/'.join(alts)})"
        shown = f"{token} {bases.group(1)}/{bases.group(2)}"
    elif counted:
        copies = int(counted.group(1)) + int(counted.group(2))
        if copies and len(alts) > 1:
            return [("?", "?")], f"{token} {counted.group(0)}: the site has more than one variant base"
        found = tuple(next(iter(alts)) for _ in range(copies))
        shown = f"{token} {counted.group(0)}"
    elif reference:
        found, shown = (), f"{token} {reference.group(0)}"
    else:
        return None
    if not found:
        return [], f"{shown}: reference at this site, no variant"
    if len(found) == 2 and found[0] == found[1]:
        return [(alts[found[0]], "hom")], shown
    return [(alts[b], "het") for b in found], shown


def _from_variants(seg: str, gene: str) -> tuple[str, str]:
    found: list[tuple[str, str]] = []  # (allele, zygosity)
    matches = list(_VARIANT.finditer(seg))
    shown: list[str] = []
    # a zygosity word before the first variant applies to the variants that state none of their own:
    # "Heterozygous NUDT15 c.415C>T (p.Arg139Cys)", "homozygous for c.719A>G" (round-5 M3)
    lead = zygosity(seg[: matches[0].start()]) if matches else "?"
    for i, m in enumerate(matches):
        window = seg[m.end(): matches[i + 1].start() if i + 1 < len(matches) else len(seg)]
        site = _site_call(m.group(1), window, gene)
        if site is not None:
            calls, what = site
            if any(a == "?" for a, _ in calls):
                return "", what
            found += calls
            shown.append(what)
            continue
        allele = variant_allele(m.group(1), gene)
        sites = terminology().variant_sites.get(gene, {}).get(m.group(1).lower())
        if allele is None and sites is not None and len(sites[1]) == 1:  # rs1800460 = *3B when read alone
            allele = next(iter(sites[1].values()))
        if allele is None:
            return "", f"variant {m.group(1)} is not a single-variant {gene} allele in CPIC's allele definitions"
        zyg = zygosity(window)
        found.append((allele, lead if zyg == "?" else zyg))
        shown.append(m.group(1) if zyg != "?" or lead == "?" else f"{m.group(1)} ({'heterozygous' if lead == 'het' else 'homozygous'})")
    note = "read from " + ", ".join(shown)
    if not found:  # every site tested carries the reference bases
        tested = ", ".join(m.group(1) for m in matches)
        return "*1/*1", (f"{note}; only {'this site was' if len(matches) == 1 else 'these sites were'} tested ({tested}): "
                         f"{gene} alleles defined elsewhere are not excluded")
    return combine_alleles(found, gene, note)


def combine_alleles(found: list[tuple[str, str]], gene: str, note: str) -> tuple[str, str]:
    """A diplotype from variant alleles with zygosity ("het", "hom", "?"); phase is unknown, so
    ambiguous combinations are returned as alternatives (the rules take the most severe)."""
    alleles = {a for a, _ in found}
    if gene == "TPMT" and alleles == {"*3B", "*3C"}:  # c.460G>A + c.719A>G: phase unknown
        zygs = {z for _, z in found}
        if zygs == {"hom"}:
            return "*3A/*3A", note
        if zygs == {"het"}:
            return "*1/*3A or *3B/*3C", note + " (phase unknown)"
        return "*1/*3A or *3A/*3A or *3B/*3C or *3A/*3B or *3A/*3C", note + " (zygosity not stated)"
    if len(found) == 1:
        allele, zyg = found[0]
        if zyg == "hom":
            return f"{allele}/{allele}", note
        if zyg == "het":
            return f"*1/{allele}", note
        return f"*1/{allele} or {allele}/{allele}", note + " (zygosity not stated)"
    if len(found) == 2 and all(z == "het" for _, z in found):
        (a, _), (b, _) = found
        return "/".join(sorted((a, b), key=_allele_key)), note + " (two heterozygous variants; phase unknown, read in trans: the more severe)"
    return "", f"{note}: this combination cannot be reduced to one diplotype"


# ------------------------------------------------------------------ phenotype words

_NEGATED = re.compile(r"\b(?:no|not|without|negative for)\b[^.;,]*", re.IGNORECASE)
_PHENOTYPE_WORDS = (
    ("possible intermediate", "Possible Intermediate Metabolizer"),
    ("ultrarapid", "Ultrarapid Metabolizer"),
    ("poor", "Poor Metabolizer"), ("deficient", "Poor Metabolizer"), ("deficiency", "Poor Metabolizer"),
    ("absent", "Poor Metabolizer"), ("low activity", "Poor Metabolizer"), ("no activity", "Poor Metabolizer"),
    ("homozygous variant", "Poor Metabolizer"), ("homozygous deficient", "Poor Metabolizer"),
    ("compound heterozygous", "Poor Metabolizer"),
    ("intermediate", "Intermediate Metabolizer"), ("heterozygous", "Intermediate Metabolizer"),
    ("reduced activity", "Intermediate Metabolizer"), ("decreased activity", "Intermediate Metabolizer"),
    ("rapid", "Rapid Metabolizer"),
    ("indeterminate", "Indeterminate"),
    ("normal", "Normal Metabolizer"), ("extensive", "Normal Metabolizer"), ("wild type", "Normal Metabolizer"),
    ("wild-type", "Normal Metabolizer"), ("homozygous wild", "Normal Metabolizer"),
)
_RANK = {"Poor Metabolizer": 4, "Intermediate Metabolizer": 3, "Possible Intermediate Metabolizer": 3,
         "Indeterminate": 2, "Normal Metabolizer": 1, "Rapid Metabolizer": 1, "Ultrarapid Metabolizer": 1}


def phenotype_words(text: str, gene: str) -> str | None:
    """A CPIC phenotype term from a phenotype result's words for ``gene``.

    Negated phrases do not count ("Normal metabolizer; no poor metabolizer
    alleles detected" is normal); "no variant detected" alone is normal;
    several terms -> the most severe."""
    seg = gene_segment(text, gene).lower()
    if not seg.strip():
        return None
    if _NO_VARIANT.search(seg) and not any(w in _NEGATED.sub(" ", seg) for w, _ in _PHENOTYPE_WORDS):
        return "Normal Metabolizer"
    positive = _NEGATED.sub(" ", seg)
    found = []
    for word, term in _PHENOTYPE_WORDS:
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", positive):
            found.append(term)
            positive = positive.replace(word, " ")  # "possible intermediate" is not also "intermediate"
    if not found:
        return None
    return max(found, key=lambda t: _RANK[t])


__all__ = ["combine_alleles", "diplotype", "gene_segment", "phenotype_words", "variant_allele", "zygosity"]
