"""Observation → Measurement (weight, labs) and GeneResult (TPMT / NUDT15).

Units are converted only when the unit is known (``codes.toml``); a value in
an unknown unit becomes a DataGap naming the unit, never a guess.
"""
from __future__ import annotations

import re
from typing import Iterable

from .facts import CodedObservation, DataGap, GeneResult, Measurement
from .fhirjson import as_list, code_keys, codes_in, codings, concept_text, effective_time, number, ref_of
from .terminology import LOINC, UCUM, norm_unit, terminology

_EXCLUDED_STATUS = {"entered-in-error", "cancelled", "preliminary", "registered"}


def _usable(obs: dict) -> bool:
    status = obs.get("status")
    return not (isinstance(status, str) and status in _EXCLUDED_STATUS)  # a list or object here must not raise


def _quantity_unit(q: dict) -> str:
    code = q.get("code")
    if isinstance(code, str) and code and q.get("system") in (None, UCUM):
        return code
    return q.get("unit") if isinstance(q.get("unit"), str) else (code or "")


def _interpretation(obs: dict) -> str:
    for c in codings(obs.get("interpretation")):
        if isinstance(c.get("code"), str):
            return c["code"]
    return ""


def _measure(obs: dict, analyte_name: str, gaps: list[DataGap], label: str) -> Measurement | None:
    analyte = terminology().analytes[analyte_name]
    q = obs.get("valueQuantity")
    if not isinstance(q, dict):
        if obs.get("dataAbsentReason") is None and obs.get("valueString") is not None:
            gaps.append(DataGap(label, f"a result reads '{str(obs['valueString'])[:40]}' and has no numeric value", analyte_name))
        return None
    value = number(q.get("value"))
    if value is None:
        gaps.append(DataGap(label, "a result has no readable number", analyte_name))
        return None
    comparator = q.get("comparator")
    unit = _quantity_unit(q)
    factor = analyte.factors.get(norm_unit(unit))
    if factor is None:
        why = f"a result is in the unit '{unit}', which this service does not convert" if unit else "a result has no unit"
        gaps.append(DataGap(label, why, analyte_name))
        return None
    low = high = None
    for rr in as_list(obs.get("referenceRange")):
        if not isinstance(rr, dict):
            continue
        for key in ("low", "high"):
            bound = rr.get(key)
            if isinstance(bound, dict) and number(bound.get("value")) is not None:
                bf = analyte.factors.get(norm_unit(_quantity_unit(bound) or unit))
                if bf is not None:
                    if key == "low":
                        low = number(bound["value"]) * bf
                    else:
                        high = number(bound["value"]) * bf
        break
    interpretation = _interpretation(obs)
    if comparator in ("<", "<=") and not interpretation:
        interpretation = "<"
    elif comparator in (">", ">=") and not interpretation:
        interpretation = ">"
    return Measurement(
        analyte=analyte_name,
        value=round(value * factor, 6),
        unit=analyte.unit,
        when=effective_time(obs),
        source_ref=ref_of(obs),
        ref_low=low,
        ref_high=high,
        interpretation=interpretation,
    )


ANALYTE_LABELS = {
    "weight": "body weight",
    "wbc": "white cell count",
    "neutrophils": "neutrophil count",
    "lymphocytes": "lymphocyte count",
    "platelets": "platelet count",
    "hemoglobin": "haemoglobin",
    "mcv": "MCV",
    "alt": "ALT",
    "ast": "AST",
    "alp": "alkaline phosphatase",
    "bilirubin": "bilirubin",
    "albumin": "albumin",
    "creatinine": "creatinine",
    "egfr": "eGFR",
    "tpmt_activity": "TPMT enzyme activity",
    "tgn": "6-TGN",
    "mmp": "6-MMP",
}


def measurements(observations: Iterable[dict], gaps: list[DataGap]) -> dict[str, list[Measurement]]:
    """Numeric observations by analyte, newest first (undated last)."""
    t = terminology()
    out: dict[str, list[Measurement]] = {}
    for obs in observations:
        if not _usable(obs):
            continue
        analyte = next((t.loinc_to_analyte[c] for c in codes_in(obs.get("code"), LOINC) if c in t.loinc_to_analyte), None)
        if analyte is None and t.analyte_names:
            name = concept_text(obs.get("code")).strip().lower()
            analyte = t.analyte_names.get(name) or next(
                (a for n, a in t.analyte_names.items() if n in name), None) if name else None
        if analyte:
            m = _measure(obs, analyte, gaps, ANALYTE_LABELS.get(analyte, analyte))
            if m is not None:
                out.setdefault(analyte, []).append(m)
    for values in out.values():
        values.sort(key=lambda m: (m.when is not None, m.when), reverse=True)
    return out


# ------------------------------------------------------------------ genomics

_GENE_WORD = re.compile(r"\b(TPMT|NUDT15)\b", re.IGNORECASE)
_STAR = re.compile(r"\*\s*\d+[A-Z]?", re.IGNORECASE)


def _genes_named(obs: dict) -> set[str]:
    """Genes an Observation is about: gene-studied component, the R4-core
    geneticsGene extension, the phenotype LOINC code, or the gene's name."""
    t = terminology()
    genes: set[str] = set()
    for comp in as_list(obs.get("component")):
        if isinstance(comp, dict) and code_keys(comp.get("code")) & t.gene_component_codes:
            genes |= _genes_in_concept(comp.get("valueCodeableConcept"))
    for ext in as_list(obs.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == t.gene_extension_url:
            genes |= _genes_in_concept(ext.get("valueCodeableConcept"))
    loincs = codes_in(obs.get("code"), LOINC)
    for gene, spec in t.genes.items():
        if loincs & set(spec["phenotype_loinc"]):
            genes.add(gene)
    if not genes:
        text = " ".join([concept_text(obs.get("code")), _value_text(obs)])
        genes = {m.upper() for m in _GENE_WORD.findall(text)}
    return genes


def _genes_in_concept(concept) -> set[str]:
    t = terminology()
    genes = set()
    for c in codings(concept):
        code = str(c.get("code") or "").upper()
        if code in t.hgnc_to_gene:
            genes.add(t.hgnc_to_gene[code])
        elif isinstance(c.get("display"), str) and c["display"].upper() in t.genes:
            genes.add(c["display"].upper())
    if not genes and isinstance(concept, dict) and isinstance(concept.get("text"), str):
        genes = {m.upper() for m in _GENE_WORD.findall(concept["text"])}
    return genes


def _value_text(obs: dict) -> str:
    if isinstance(obs.get("valueString"), str):
        return obs["valueString"]
    vcc = obs.get("valueCodeableConcept")
    if vcc is not None:
        text = concept_text(vcc)
        if text:
            return text
        return next((str(c["code"]) for c in codings(vcc) if c.get("code")), "")
    return ""


def _phenotype_term(obs: dict) -> str | None:
    """A CPIC phenotype term from a LOINC answer code or the value's words."""
    t = terminology()
    for c in codings(obs.get("valueCodeableConcept")):
        if isinstance(c.get("code"), str) and c["code"] in t.metabolizer_answers:
            return t.metabolizer_answers[c["code"]]
    text = _value_text(obs).lower()
    if "possible intermediate" in text:
        return "Possible Intermediate Metabolizer"
    for word, term in (("ultrarapid", "Ultrarapid Metabolizer"), ("rapid", "Rapid Metabolizer"),
                       ("intermediate", "Intermediate Metabolizer"), ("poor", "Poor Metabolizer"),
                       ("normal", "Normal Metabolizer"), ("extensive", "Normal Metabolizer"),
                       ("indeterminate", "Indeterminate")):
        if word in text:
            return term
    return None


def gene_results(observations: Iterable[dict]) -> list[GeneResult]:
    """TPMT / NUDT15 genotype and phenotype results, as stated in the record."""
    t = terminology()
    out: list[GeneResult] = []
    for obs in observations:
        if not _usable(obs):
            continue
        keys = code_keys(obs.get("code"))
        is_genotype = bool(keys & t.genotype_codes)
        is_phenotype = bool(keys & t.phenotype_codes)
        if not (is_genotype or is_phenotype):
            continue
        genes = _genes_named(obs) & {"TPMT", "NUDT15"}
        when, ref = effective_time(obs), ref_of(obs)
        raw = _value_text(obs).strip()
        for gene in sorted(genes):
            if is_genotype:
                value = _diplotype_text(raw, gene)
                kind = "diplotype" if value else "unreadable"
                out.append(GeneResult(gene, kind, value or raw or "(no value)", when, ref))
            else:
                term = _phenotype_term(obs)
                out.append(GeneResult(gene, "phenotype" if term else "unreadable", term or raw or "(no value)", when, ref))
    return out


def _diplotype_text(raw: str, gene: str) -> str:
    """The star-allele part of a genotype value, e.g. "TPMT *1/*3A" → "*1/*3A".

    Keeps the text as written otherwise (rules decide whether they know it)."""
    text = re.sub(rf"\b{gene}\b", "", raw, flags=re.IGNORECASE).strip(" :")
    return text if _STAR.search(text) else ""


def status_observations(observations: Iterable[dict]) -> list[CodedObservation]:
    """Pregnancy / breastfeeding status observations, newest first."""
    t = terminology()
    out = []
    for obs in observations:
        if not _usable(obs):
            continue
        loinc = next((c for c in codes_in(obs.get("code"), LOINC) if c in t.status_loinc), None)
        if loinc is None:
            continue
        vcc = obs.get("valueCodeableConcept")
        flag = obs.get("valueBoolean") if isinstance(obs.get("valueBoolean"), bool) else None
        text = " ".join(filter(None, [concept_text(vcc), obs.get("valueString") if isinstance(obs.get("valueString"), str) else ""]))
        out.append(CodedObservation(loinc, frozenset(code_keys(vcc)), text.lower(), flag, effective_time(obs), ref_of(obs)))
    out.sort(key=lambda o: (o.when is not None, o.when), reverse=True)
    return out
