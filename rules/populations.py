"""Special populations: hypersensitivity, pregnancy, breastfeeding, renal impairment, the elderly."""
from __future__ import annotations

import re
from datetime import timedelta
from functools import cache

from fhir_mappers.facts import AllergyFact, ClinicalFacts, Measurement, ResultText

from .common import (CodeMatcher, _age, above, below, is_child, is_new_start, lab_flag, plausible_height,
                     therapy_unknown)
from .context import CallContext, context_of
from .findings import Action, CancelOrder, DoseLimit, Finding
from .knowledge_base import load
from .knowledge_schema import ByIndication, Indication, Oncology, OtherDrug
from .monitoring import conflicts, latest


def weight_window_days(facts: ClinicalFacts, default_days: int) -> int:
    """How old a body weight may be for mg/kg dosing: the configured (adult) window, shorter for a child
    (populations.toml [children] weight_windows)."""
    age = _age(facts)
    if age is None:
        return default_days
    for below_years, days in load().populations.children.weight_windows:
        if age < below_years:
            return min(default_days, int(days))
    return default_days


def stale_height_check(facts: ClinicalFacts, ordered: float | None, spec: Oncology | Indication | OtherDrug | None,
                       weight: float | None) -> dict:
    """No usable recent height in oncology (mg/m²): the last height on record (however old) with the current
    weight gives the dose per m² (Mosteller), never an adult 1.0 m² reference. In a growing child an old height
    underestimates the body surface area, so the figure is an upper estimate: above the maximum it is said,
    within it the child still needs a current height. Values for height-missing: ``child``, ``age``,
    ``last_height`` / ``last_height_date``, ``last_per_m2``, ``last_max_m2``, ``last_high_m2``."""
    h = next((x for x in facts.heights if x.when is not None and plausible_height(x.value)), None)
    out: dict = {"child": is_child(facts), "age": _age(facts), "last_height": None, "last_height_date": "",
                 "last_per_m2": None, "last_max_m2": None, "last_high_m2": False}
    if h is None:
        return out
    out.update(last_height=h.value, last_height_date=h.when.date().isoformat() if h.when else "")
    if ordered is not None and weight and isinstance(spec, Oncology):
        bsa = (h.value * weight / 3600) ** 0.5  # Mosteller, as common.size_basis
        out.update(last_per_m2=ordered / bsa, last_max_m2=spec.max_mg_per_m2)
        out["last_high_m2"] = out["last_per_m2"] > spec.max_mg_per_m2 + 1e-9
    return out


def stale_weight_check(facts: ClinicalFacts, ordered: float | None, spec: Oncology | Indication | OtherDrug | None,
                       oncology: bool) -> dict:
    """No usable recent weight: what the last weight on record (however old) says about the order, and
    whether this is a child (never dosed against the adult reference weight). Values for weight-missing:
    ``child``, ``age``, ``last_weight`` / ``last_weight_date``, ``last_per_unit`` (mg/kg/day, or mg/m²/day
    from the last weight and height in oncology), ``last_max`` (the maximum per unit), ``last_high``
    (the order is above it on the last measurements: as children grow, the true figure is likely lower,
    but an old weight cannot clear a dose)."""
    low, high = load().dosing.general.weight_plausible_kg
    last = next((w for w in facts.weights if w.when is not None and low <= w.value <= high), None)
    out: dict = {"child": is_child(facts), "age": _age(facts), "last_weight": None, "last_weight_date": "",
                 "last_per_unit": None, "last_unit": "m2" if oncology else "kg", "last_max": None, "last_high": False}
    if last is None:
        return out
    out.update(last_weight=last.value, last_weight_date=last.when.date().isoformat() if last.when else "")
    if ordered is None or spec is None:
        return out
    if oncology and isinstance(spec, Oncology):
        h = next((x for x in facts.heights if x.when is not None and plausible_height(x.value)), None)
        if h is not None:
            bsa = (h.value * last.value / 3600) ** 0.5  # Mosteller, as common.size_basis
            out.update(last_per_unit=ordered / bsa, last_max=spec.max_mg_per_m2, last_height=h.value)
        elif spec.max_mg_per_kg_by_weight:
            out.update(last_unit="kg", last_per_unit=ordered / last.value, last_max=spec.max_mg_per_kg_by_weight)
    elif not isinstance(spec, Oncology):
        out.update(last_per_unit=ordered / last.value, last_max=spec.max_mg_per_kg)
    if out["last_per_unit"] is not None and out["last_max"] is not None:
        out["last_high"] = out["last_per_unit"] > out["last_max"] + 1e-9
    return out


@cache
def _matcher(section: str, snomed_key: str, icd10_key: str) -> CodeMatcher:
    """populations.toml's code lists of one condition, read once."""
    spec = getattr(load().populations, section)
    return CodeMatcher(frozenset(getattr(spec, snomed_key)), tuple(getattr(spec, icd10_key)))


def _condition(facts: ClinicalFacts, matcher: CodeMatcher, ctx: CallContext | None = None) -> str | None:
    """The first Condition the code list matches (its display); with the call's context, its codes read once."""
    if ctx is not None and ctx.facts is facts:
        for c, codes in ctx.condition_codes:
            if matcher.read(codes):
                return c.display or "?"
        return None
    for c in facts.conditions:
        if matcher(c.codes):
            return c.display or "?"
    return None


def _status(facts: ClinicalFacts, loinc: str):
    return next((o for o in facts.status_observations if o.loinc == loinc), None)


def _date(obs) -> str:
    return obs.when.date().isoformat() if obs.when else ""


def _hcg_words(words: tuple[str, ...]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternation})(?![\w-])", re.IGNORECASE)


def _hcg_sent(m: Measurement) -> str:
    unit = m.unit_text or m.unit or "no unit"
    return f"{m.comparator}{m.value:g} {unit}"


def read_hcg(result: Measurement | ResultText) -> tuple[str, str]:
    """(``positive`` / ``negative`` / ``unreadable``, how) of one pregnancy test (hCG), populations.toml
    [pregnancy.test]. Any sign of a positive result wins (the safe reading); negative needs a clear negative
    answer, flag or value; anything else cannot be read."""
    spec = load().populations.pregnancy.test
    assert spec is not None
    flags = {f.upper() for f in (*result.flags, result.interpretation) if f}
    flag = lab_flag(result)
    if isinstance(result, ResultText):
        text = result.text
        codes = result.value_codes
    else:
        text, codes = result.interpretation_text, frozenset()
    negative_text = _hcg_words(spec.negative_words).sub(" ", text)  # "not detected" is not "detected"
    positive = [why for ok, why in (
        (bool(codes & set(spec.positive_codes)), "coded positive"),
        (bool(flags & set(spec.positive_flags)) or flag in ("high", "critical_high", "abnormal", "critical"),
         "flagged " + ", ".join(sorted(flags)) + " by the laboratory"),
        (bool(_hcg_words(spec.positive_words).search(negative_text)), "reported positive"),
    ) if ok]
    negative = [why for ok, why in (
        (bool(codes & set(spec.negative_codes)), "coded negative"),
        (bool(flags & set(spec.negative_flags)), "flagged negative"),
        (bool(_hcg_words(spec.negative_words).search(text)), "reported negative"),
    ) if ok]
    if isinstance(result, Measurement):
        above_range = result.ref_high is not None and (result.value > result.ref_high or result.comparator in (">", ">="))
        if above_range:
            positive.append(f"above the laboratory's range (up to {result.ref_high:g})")
        if result.unit and result.value >= spec.positive_at and result.comparator not in ("<", "<="):
            positive.append(f"at or above {spec.positive_at:g} mIU/mL")
        if result.ref_high is not None and not above_range:
            negative.append(f"within the laboratory's range (up to {result.ref_high:g})")
        elif result.ref_high is None and result.unit and result.value < spec.negative_below \
                and result.comparator not in (">", ">="):
            negative.append(f"below {spec.negative_below:g} mIU/mL")
    if positive:
        return "positive", positive[0]
    if (unclear := _hcg_words(spec.unclear_words).search(text)) is not None:
        return "unreadable", "reported as " + unclear.group(1).lower()
    if negative:
        return "negative", negative[0]
    if isinstance(result, Measurement):
        if not result.unit:
            return "unreadable", f"the unit '{result.unit_text or 'none'}' is not IU/L or mIU/mL and no range or flag was sent"
        return "unreadable", (f"between {spec.negative_below:g} and {spec.positive_at:g} mIU/mL with no laboratory "
                              "range or flag: neither negative nor positive")
    return "unreadable", "neither positive nor negative could be read" + (f" ({result.why})" if result.why else "")


def hcg_result(facts: ClinicalFacts) -> dict | None:
    """The newest pregnancy test (hCG) no older than the pregnancy window, read: ``result`` (positive / negative /
    unreadable), ``how``, ``value`` (as sent), ``date``, ``preliminary``; results of the same newest time: a positive
    one wins, then an unreadable one. None without a test in the window, or for a patient recorded as male."""
    spec = load().populations.pregnancy
    if spec.test is None or (facts.patient is not None and facts.patient.sex == "male"):
        return None
    oldest = facts.today - timedelta(days=spec.status_max_age_days)
    items: list[tuple] = []
    for m in facts.labs.get("hcg", []):
        items.append((m.when, m, _hcg_sent(m)))
    for r in facts.result_texts.get("hcg", []):
        items.append((r.when, r, r.value_text or r.text or "(no value)"))
    items = [i for i in items if i[0] is None or i[0].date() >= oldest]
    if not items:
        return None
    dated = [i for i in items if i[0] is not None]
    newest_time = max(i[0] for i in dated) if dated else None
    newest = [i for i in items if i[0] == newest_time]
    read = [(read_hcg(r), r, sent) for _, r, sent in newest]
    rank = {"positive": 0, "unreadable": 1, "negative": 2}
    (result, how), r, sent = min(read, key=lambda x: rank[x[0][0]])
    return {"result": result, "how": how, "value": sent, "date": r.when.date().isoformat() if r.when else "",
            "preliminary": r.preliminary, "ref": r.source_ref}


def _test_is_newest(facts: ClinicalFacts, test: dict) -> bool:
    """No pregnancy status (LOINC 82810-3) in the window is newer than (or as new as) the pregnancy test."""
    spec = load().populations.pregnancy
    obs = _status(facts, spec.pregnancy_status_loinc)
    if obs is None or obs.when is None or obs.when.date() < facts.today - timedelta(days=spec.status_max_age_days):
        return True
    return bool(test["date"]) and test["date"] > _date(obs)


def _test_sources(why: dict) -> tuple[str, ...]:
    """The sources of a pregnancy read from a pregnancy test: the LOINC terms, and the cut-off when it decided."""
    spec = load().populations.pregnancy.test
    if why.get("by") != "hcg" or spec is None:
        return ()
    return (spec.source, spec.positive_source) if why["test"]["how"].startswith("at or above") else (spec.source,)


def is_pregnant(facts: ClinicalFacts, ctx: CallContext | None = None) -> dict | None:
    """Pregnancy from the newest pregnancy status (LOINC 82810-3), a positive pregnancy test (hCG, round-5 H4: the
    newer of the two decides), else an active pregnancy Condition."""
    spec = load().populations.pregnancy
    obs = _status(facts, spec.pregnancy_status_loinc)
    if obs is not None and obs.when is not None and obs.when.date() < facts.today - timedelta(days=spec.status_max_age_days):
        obs = None  # a status older than the longest pregnancy (42 weeks, ACOG) cannot be current: not used
    test = hcg_result(facts)
    test_when = test["date"] if test else ""
    if obs is not None:
        status_date = _date(obs)
        if test is not None and test["result"] == "positive" and test_when and status_date and test_when > status_date:
            return {"by": "hcg", "preliminary": test["preliminary"], "test": test}  # a positive test after the status
        pregnant = any(k.split("|")[1] in spec.pregnant_snomed for k in obs.values) or obs.text.strip() == "pregnant"
        if pregnant:  # a preliminary status is used, and the card says so
            return {"by": "status", "date": status_date, "preliminary": obs.preliminary}
        return None  # the newest status says not pregnant / unknown
    if test is not None and test["result"] == "positive":
        return {"by": "hcg", "preliminary": test["preliminary"], "test": test}
    cond = _condition(facts, _matcher("pregnancy", "condition_snomed", "condition_icd10"), ctx)
    return {"by": "condition", "condition": cond, "preliminary": False} if cond else None


def is_breastfeeding(facts: ClinicalFacts, ctx: CallContext | None = None) -> dict | None:
    spec = load().populations.breastfeeding
    obs = _status(facts, spec.status_loinc)
    if obs is not None:
        yes = obs.flag is True or obs.text.strip() in ("yes", "breastfeeding", "breast feeding") or \
            any(k.endswith("|LA33-6") or k.endswith("|373066001") for k in obs.values)
        return {"by": "status", "date": _date(obs), "preliminary": obs.preliminary} if yes else None
    cond = _condition(facts, _matcher("breastfeeding", "condition_snomed", "condition_icd10"), ctx)
    return {"by": "condition", "condition": cond, "preliminary": False} if cond else None


@cache
def _words(key: str) -> re.Pattern[str]:
    """populations.toml [hypersensitivity] word list ``key`` as one whole-word pattern."""
    words = getattr(load().populations.hypersensitivity, key)
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternation})(?![\w-])", re.IGNORECASE)


def allergy_meaning(a: AllergyFact) -> dict:
    """What one thiopurine allergy record means: its values for the card and ``level``:
    "excluded" (refuted / entered in error), "inactive" (inactive / resolved), "critical" (hypersensitivity:
    a severe or systemic reaction, high criticality, a severe reaction, or an allergy whose reaction is not
    recorded: the safe reading), "warning" (gastrointestinal intolerance only, or an intolerance of low or no
    stated criticality with no systemic reaction)."""
    spec = load().populations.hypersensitivity
    words = " | ".join((*a.reactions, a.note, a.display))
    severe = sorted({m.lower() for m in _words("severe_words").findall(words)})
    gi = sorted({m.lower() for m in _words("gi_words").findall(words)})
    values = {"allergens": sorted(a.ingredients & set(spec.ingredients)), "display": a.display,
              "classes": sorted(a.classes), "matched_in": list(a.matched_in), "type": a.kind,
              "criticality": a.criticality, "clinical_status": a.clinical_status, "verification": a.verification,
              "unconfirmed": a.verification in ("unconfirmed", "presumed"), "reactions": list(a.reactions),
              "note": a.note, "severe_signs": severe, "gi_signs": gi, "severities": list(a.severities),
              "recorded": a.recorded, "ref": a.source_ref}
    if a.verification in spec.excluded_verification:
        level = "excluded"
    elif a.clinical_status in spec.inactive_status:
        level = "inactive"
    elif severe or "severe" in a.severities or a.criticality == "high":
        level = "critical"
    elif gi:
        level = "warning"  # nausea, vomiting, dyspepsia: BSG 2019 / label advice, never a contraindication
    elif a.kind == "intolerance" and a.criticality in ("low", ""):
        level = "warning"  # an intolerance without a systemic reaction: check what happened
    else:
        level = "critical"  # an allergy whose reaction is not recorded (or not recognised): the safe reading
    values["level"] = level
    return values


def allergy_findings(facts: ClinicalFacts, orders) -> list[Finding]:
    """One finding for the thiopurine orders from the patient's allergy records, the most severe meaning
    first: hypersensitivity (critical, stop), intolerance (warning, advice), a record marked inactive (info)."""
    order, drug = orders[0]
    spec = load().populations.hypersensitivity
    records = [allergy_meaning(a) for a in facts.allergies if a.ingredients & set(spec.ingredients)]
    if not records:
        return []
    by_level = {lvl: [r for r in records if r["level"] == lvl] for lvl in ("critical", "warning", "inactive", "excluded")}
    ordered = sorted({d for _, d in orders})
    common = {"ordered_drugs": ordered, "set_aside": by_level["excluded"]}
    if by_level["critical"]:
        first = by_level["critical"][0]
        cancels: list[Action] = [CancelOrder(o.ref, d) for o, d in orders if o.ref]
        values = {**first, **common, "records": by_level["critical"], "others": by_level["warning"],
                  "same_drug": bool(set(first["allergens"]) & set(ordered))}
        return [Finding("hypersensitivity", order.ref, values, cancels[:1], stops_order=True, drug=drug)]
    if by_level["warning"]:
        first = by_level["warning"][0]
        return [Finding("thiopurine-intolerance", order.ref,
                        {**first, **common, "records": by_level["warning"],
                         "same_drug": bool(set(first["allergens"]) & set(ordered))}, drug=drug)]
    if by_level["inactive"]:
        first = by_level["inactive"][0]
        return [Finding("allergy-inactive", order.ref, {**first, **common, "records": by_level["inactive"]}, drug=drug)]
    return []


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def ckd_epi_2021(facts: ClinicalFacts, creatinine: Measurement) -> tuple[Measurement | None, dict]:
    """eGFR (mL/min/1.73 m²) from a serum creatinine by the CKD-EPI 2021 equation (Inker, NEJM 2021), or
    (None, why) when it cannot be computed: a child, no birth date, sex not recorded as female or male.
    A creatinine limit result ("> 15 mg/dL") gives an eGFR limit the other way ("< 3")."""
    k = load().populations.renal.ckd_epi_2021
    age, sex = _age(facts), (facts.patient.sex if facts.patient else "")
    scr = creatinine.value / k.umol_per_mg_dl
    values = {"creatinine": creatinine.value, "creatinine_mg_dl": scr, "creatinine_comparator": creatinine.comparator,
              "creatinine_unit": creatinine.unit_text or "umol/L",
              "date": creatinine.when.date().isoformat() if creatinine.when else "", "age": age, "sex": sex}
    if age is None:
        return None, {**values, "why": "no_age"}
    if age < k.adult_age:
        return None, {**values, "why": "child"}
    if sex not in ("female", "male"):
        return None, {**values, "why": "no_sex"}
    ratio = scr / getattr(k.kappa, sex)
    egfr = (k.scale * min(ratio, 1.0) ** getattr(k.alpha, sex) * max(ratio, 1.0) ** k.upper_exponent
            * k.age_factor ** age * (k.female_factor if sex == "female" else 1.0))
    egfr = float(round(egfr))  # whole mL/min/1.73 m², as laboratories report it
    return (Measurement("egfr", egfr, "mL/min/{1.73_m2}", creatinine.when, creatinine.source_ref,
                        preliminary=creatinine.preliminary, comparator=_FLIP.get(creatinine.comparator, "")),
            values)


_SYSTEM_LABEL = (("http://snomed.info/sct", "SNOMED CT"), ("http://hl7.org/fhir/sid/icd-10-cm", "ICD-10-CM"),
                 ("http://hl7.org/fhir/sid/icd-10", "ICD-10"))


def _coded_as(codes: frozenset[str], matcher: CodeMatcher) -> str:
    """The code of a Condition that a code list matched, as recorded ("SNOMED CT 236435004", "ICD-10-CM N18.6")."""
    for key in sorted(codes):
        if matcher(frozenset((key,))):
            system, _, code = key.partition("|")
            label = next((name for prefix, name in _SYSTEM_LABEL if system.startswith(prefix)), system)
            return f"{label} {code}"
    return ""


def renal_conditions(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[dict]:
    """Every active Condition that says the kidneys fail, as recorded: kidney failure, CKD stage 4-5 or
    dependence on dialysis (``kind`` "kidney_failure", populations.toml [renal] kidney_failure_*), or acute
    kidney injury / oliguria (``kind`` "aki"); each with its display and the code that matched."""
    lists = (("kidney_failure", _matcher("renal", "kidney_failure_snomed", "kidney_failure_icd10")),
             ("aki", _matcher("renal", "aki_snomed", "aki_icd10")))
    read = ctx.condition_codes if ctx is not None and ctx.facts is facts else None
    out = []
    for i, c in enumerate(facts.conditions):
        for kind, matcher in lists:
            if matcher.read(read[i][1]) if read is not None else matcher(c.codes):
                coded = _coded_as(c.codes, matcher)
                out.append({"kind": kind, "display": c.display or coded or "?", "code": coded, "ref": c.source_ref})
                break
    return out


def _last_renal_value(facts: ClinicalFacts) -> tuple[Measurement | None, dict | None]:
    """The newest eGFR on record however old, or the eGFR computed from a newer creatinine (CKD-EPI 2021):
    (eGFR, the computation's inputs or None for a reported eGFR). (None, None) when neither gives an eGFR."""
    egfr, creatinine = latest(facts, "egfr"), latest(facts, "creatinine")
    if creatinine is not None and creatinine.when is not None and (
            egfr is None or egfr.when is None or creatinine.when > egfr.when):
        computed_egfr, computed = ckd_epi_2021(facts, creatinine)
        if computed_egfr is not None:
            return computed_egfr, computed
    return (egfr, None) if egfr is not None and egfr.when is not None else (None, None)


def renal_cutoff(drug: str) -> float:
    """The eGFR below which ``drug`` is dosed for renal impairment: its own label's figure (round-17 H2:
    mercaptopurine, CLcr < 50 mL/min, populations.toml [renal.drugs]) else the general [renal] egfr_below."""
    spec = load().populations.renal
    own = spec.drugs.get(drug)
    return float(own.egfr_below if own is not None else spec.egfr_below)


def _lowest_start(facts: ClinicalFacts, order, drug: str, ctx: CallContext | None,
                  weight_days: int | None) -> dict:
    """Round-17 H2: the label's lowest recommended starting dose of ``drug`` for this patient, for a new start in
    renal impairment (mercaptopurine: 50 mg/m2 with a body surface area, 1.5 mg/kg with a weight only; ALL, the
    label's range): ``lowest_mg`` (None when the drug has no such figure, the indication has no label range, or no
    size is known), ``lowest_per`` / ``lowest_unit``, ``bsa``, ``weight``, ``range_text``, ``new_start``,
    ``therapy_unknown``."""
    own = load().populations.renal.drugs.get(drug)
    new = order is not None and is_new_start(facts, order, drug)
    unknown = order is not None and therapy_unknown(facts, order)
    out: dict = {"lowest_mg": None, "lowest_per": None, "lowest_unit": "", "bsa": None, "weight": None,
                 "range_text": "", "new_start": new and not unknown, "therapy_unknown": unknown,
                 "label_lowest": own is not None and (own.lowest_start_mg_per_m2 is not None
                                                     or own.lowest_start_mg_per_kg is not None)}
    if own is None or order is None or not out["label_lowest"]:
        return out
    days = weight_days if weight_days is not None else weight_window_days(
        facts, load().dosing.general.weight_max_age_days)
    basis = context_of(facts, ctx).size_basis(order, drug, days)
    if not basis["oncology"]:
        return out  # no label range for this indication (mercaptopurine in IBD is off-label): the advice, no figure
    out["range_text"] = load().dosing.oncology[drug].range_text
    if basis["bsa"] and own.lowest_start_mg_per_m2 is not None:
        out.update(lowest_mg=own.lowest_start_mg_per_m2 * basis["bsa"], lowest_per=own.lowest_start_mg_per_m2,
                   lowest_unit="m2", bsa=basis["bsa"])
        if basis["weight"] and own.lowest_start_mg_per_kg is not None:
            # round-19 M2: the label gives its lowest start in both forms, "1.5 mg/kg to 2.5 mg/kg (50 mg/m2 to
            # 75 mg/m2)" (2.1); each is the lowest start (as either form is the start, round-7 M1): the dose aims
            # between the two (1.84 m2, 70 kg: 92-105 mg), never under both
            out.update(lowest_kg_mg=own.lowest_start_mg_per_kg * basis["weight"],
                       lowest_per_kg=own.lowest_start_mg_per_kg, weight=basis["weight"])
    elif basis["weight"] and own.lowest_start_mg_per_kg is not None:
        out.update(lowest_mg=own.lowest_start_mg_per_kg * basis["weight"], lowest_per=own.lowest_start_mg_per_kg,
                   lowest_unit="kg", weight=basis["weight"])
    if out["lowest_mg"] is not None:
        figures = [out["lowest_mg"], *([out["lowest_kg_mg"]] if out.get("lowest_kg_mg") is not None else [])]
        out.update(lowest_low_mg=min(figures), lowest_high_mg=max(figures))
    return out


def renal_findings(facts: ClinicalFacts, ref: str, drug: str, ctx: CallContext | None = None, order=None,
                   weight_days: int | None = None) -> list[Finding]:
    """Renal impairment from a reported eGFR, an eGFR computed from creatinine (CKD-EPI 2021) when none was
    reported, a diagnosis on record (kidney failure, CKD stage 4-5, dialysis; acute kidney injury / oliguria),
    or, with no eGFR or creatinine within the result window, the last one on record when it is low (the card
    says its date: an old value is never dropped unseen). A creatinine from which no eGFR could be computed is
    said (renal-egfr-not-computed), never dropped.

    Round-17 H2: the eGFR cut-off is the drug's own (``renal_cutoff``: mercaptopurine 50, from its label). Its
    label's "lowest recommended starting dose" is a figure for a new start (``_lowest_start``): the finding doses
    the order to it; an established order gets review advice (``established``), no figure and no cut (m3)."""
    spec = load().populations.renal
    cutoff = renal_cutoff(drug)
    own = spec.drugs.get(drug)
    window = load().monitoring.cbc.result_max_age_days
    egfr = latest(facts, "egfr", window)
    computed: dict | None = None
    out: list[Finding] = []
    creatinine = latest(facts, "creatinine", window) if egfr is None else None
    if creatinine is not None:
        egfr, computed = ckd_epi_2021(facts, creatinine)
        if egfr is None:
            lab_normal = creatinine.ref_high is not None and not above(creatinine, creatinine.ref_high)
            out.append(Finding("renal-egfr-not-computed", ref, {**computed, "ref_high": creatinine.ref_high,
                                                                "lab_normal": lab_normal},
                               indicator="info" if lab_normal else None, drug=drug))
    stale = False
    if egfr is None and creatinine is None:
        # nothing within the window: the last eGFR (or creatinine) on record, however old, when it is low
        old, old_computed = _last_renal_value(facts)
        if old is not None and below(old, cutoff):
            egfr, computed, stale = old, old_computed, True
    conditions = renal_conditions(facts, ctx)
    failure = [c for c in conditions if c["kind"] == "kidney_failure"]
    first: dict | None = (failure or conditions)[0] if conditions else None  # kidney failure first
    low_egfr = egfr is not None and below(egfr, cutoff)
    if low_egfr or first:
        values: dict = {"egfr": egfr.value if low_egfr and egfr else None,
                        "egfr_comparator": egfr.comparator if low_egfr and egfr else "",  # "<15", never "15"
                        # a reported eGFR sent without a unit, read by its LOINC code (never a computed one)
                        "egfr_no_unit": bool(low_egfr and egfr and computed is None and not egfr.unit_text),
                        "date": egfr.when.date().isoformat() if low_egfr and egfr and egfr.when else "",
                        "condition": first["display"] if first else None,
                        "condition_code": first["code"] if first else "",
                        "condition_kind": first["kind"] if first else "",
                        "conditions": conditions,
                        "other_conditions": [f"{x['display']} ({x['code']})" if x["code"] else x["display"]
                                             for x in conditions if x is not first],
                        "computed": computed if low_egfr else None,
                        # the eGFR is older than the result window and nothing newer is on record (round-5 H2)
                        "stale": stale and low_egfr, "window_days": window,
                        # a current eGFR that is not low beside a diagnosis: said, the prescriber judges
                        "egfr_not_low": (egfr.value if egfr is not None and not low_egfr else None),
                        "egfr_not_low_computed": bool(egfr is not None and not low_egfr and computed),
                        "egfr_not_low_date": (egfr.when.date().isoformat()
                                              if egfr is not None and not low_egfr and egfr.when else "")}
        if low_egfr and egfr and computed is None:
            values["same_time_conflicts"] = conflicts(facts, [egfr])
        lowest = _lowest_start(facts, order, drug, ctx, weight_days)
        new_start = lowest["new_start"]
        values.update(lowest, egfr_below=cutoff, own_cutoff=own is not None,
                      # m3: established therapy (a renewal, an active order) is reviewed, never told to "start"
                      established=order is not None and not new_start and not lowest["therapy_unknown"])
        sources: tuple[str, ...] = (spec.ckd_epi_2021.source,) if low_egfr and computed else ()
        if first and first["kind"] == "kidney_failure":
            sources += (spec.kidney_failure_source,)
        if own is not None:
            sources += (own.source, *own.sources)
        limit = DoseLimit("renal-impairment", qualitative=True)
        if new_start and lowest["lowest_mg"] is not None:
            # a new start: the label's lowest starting dose, with the per-m2 start margin (body-surface rounding).
            # Round-19 M2: it is the dose to give, not a ceiling to round under: the suggestion lies between its two
            # forms (per m2 and per kg; one figure with a weight only, rounded as any point figure: the nearest regimen
            # not above it, at least point_dose_min_fraction of it, else the oral suspension), never 75 mg for 92 mg
            margin = 1.0 + load().dosing.general.start_dose_margin
            # Round-20 m3: the oral suspension is measured to the per-m2 figure, whichever end of the range it is
            # (docs/dose-advice.md): the low end in an adult (1.84 m2, 70 kg: 92 of 92-105 mg), the high end in a child
            # (0.80 m2, 20 kg: 40 of 30-40 mg; paediatric ALL is dosed per m2, Purixan 2.1: 50-75 mg/m2), where
            # aiming at the low end gave the per-kg 30 mg (37.5 mg/m2). Tablets: the simplest regimen inside the range.
            per_m2_low = lowest["lowest_unit"] != "m2" or lowest["lowest_mg"] <= lowest["lowest_low_mg"] + 1e-9
            limit = DoseLimit("renal-impairment", high_mg=lowest["lowest_high_mg"], low_mg=lowest["lowest_low_mg"],
                              accept_high_mg=lowest["lowest_high_mg"] * margin, aim_low=per_m2_low)
        out.append(Finding("renal-impairment", ref, values, drug=drug, sources=sources, dose=limit))
    return out


def _by_indication(spec: ByIndication | None, ind: str, drug: str) -> ByIndication | None:
    """Round-19 M1: the specialty's own pregnancy / breastfeeding advice when the order's indication and drug are its
    (populations.toml [pregnancy.ibd], [breastfeeding.ibd]), else None (ACR 2020 and the labels, as before)."""
    return spec if spec is not None and ind in spec.indications and drug in spec.drugs else None


def _ibd_values(spec: ByIndication) -> dict:
    """What an IBD pregnancy / breastfeeding card reads: the drugs the guidelines treat alike, and ACR 2020 given way
    to (``replaces_sources``: rules.catalogue.sources_of lists the finding's own sources first, without it)."""
    return {"ibd": True, "ibd_drugs": list(spec.drugs), "replaces_sources": ["acr_reproductive_2020"]}


def population_findings(facts: ClinicalFacts, ctx: CallContext | None = None,
                        weight_days: int | None = None) -> list[Finding]:
    ctx = context_of(facts, ctx)
    orders = ctx.thiopurine_orders
    if not orders:
        return []
    kb = load().populations
    order, drug = orders[0]
    out: list[Finding] = []

    out += allergy_findings(facts, orders)
    new_start = is_new_start(facts, order, drug)
    ind = ctx.indication(order)[0]
    why = is_pregnant(facts, ctx)
    ibd = _by_indication(kb.pregnancy.ibd, ind, drug)
    if why and ibd is not None:
        # round-19 M1: IBD: ECCO 2015 / AGA 2019, one message for azathioprine and mercaptopurine (continue a thiopurine
        # taken; a new start stays a warning), each label's fetal-harm statement named; ACR 2020 is not the source here
        out.append(Finding("pregnancy", order.ref, {**why, "compatible": not new_start, "new_start": new_start,
                                                    **_ibd_values(ibd)}, drug=drug,
                           indicator=ibd.new_start_indicator if new_start else ibd.established_indicator,
                           sources=(ibd.source, *ibd.sources, *kb.pregnancy.label_sources.get(drug, ()))
                           + _test_sources(why)))
    elif why:
        # worded per drug (round-4 M2): ACR 2020 names azathioprine compatible with pregnancy; the mercaptopurine and
        # thioguanine labels warn of fetal harm (a warning, as the breastfeeding card), a new start said as such
        compatible = drug in kb.pregnancy.compatible_drugs
        out.append(Finding("pregnancy", order.ref, {**why, "compatible": compatible,
                                                    "new_start": new_start}, drug=drug,
                           indicator=None if compatible else kb.pregnancy.not_compatible_indicator,
                           sources=(() if compatible else kb.pregnancy.label_sources.get(drug, ()))
                           + _test_sources(why)))
    elif (test := hcg_result(facts)) is not None and test["result"] == "unreadable" \
            and _test_is_newest(facts, test):
        # round-5 H4: a pregnancy test that cannot be read is said, quoting what was sent (never "not pregnant");
        # round-19 M1: in IBD with the IBD guidelines' advice (a thiopurine taken is continued if she is pregnant)
        compatible = drug in kb.pregnancy.compatible_drugs if ibd is None else not new_start
        out.append(Finding("pregnancy-test-unreadable", order.ref,
                           {"test": test, "compatible": compatible, "new_start": new_start,
                            **(_ibd_values(ibd) if ibd is not None else {})},
                           drug=drug, indicator="info" if compatible else None,
                           sources=(ibd.source, *ibd.sources) if ibd is not None else ()))
    why = is_breastfeeding(facts, ctx)
    if why:
        spec = kb.breastfeeding
        ibd = _by_indication(spec.ibd, ind, drug)
        if ibd is not None:
            # round-19 M1: IBD: ECCO 2015 / AGA 2019 consider both thiopurines compatible with breastfeeding
            out.append(Finding("breastfeeding", order.ref, {**why, "compatible": True, **_ibd_values(ibd)}, drug=drug,
                               indicator=ibd.new_start_indicator if new_start else ibd.established_indicator,
                               sources=(ibd.source, *ibd.sources)))
        else:
            compatible = drug in spec.compatible_drugs
            out.append(Finding("breastfeeding", order.ref, {**why, "compatible": compatible}, drug=drug,
                               indicator=spec.compatible_indicator if compatible else None))
    out += renal_findings(facts, order.ref, drug, ctx, order=order, weight_days=weight_days)
    age = _age(facts)
    if age is not None and age >= kb.elderly.age_at_least:
        # round-19 m4 (as round-17 m3 for the renal card): established therapy (a renewal, an active order) is reviewed,
        # never told to "start at the low end of the range"
        unknown = therapy_unknown(facts, order)
        out.append(Finding("elderly", order.ref, {"age": age, "established": not new_start and not unknown,
                                                  "therapy_unknown": unknown}, drug=drug))
    return out
