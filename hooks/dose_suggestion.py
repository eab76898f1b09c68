"""A changed dose as the prescriber wrote the order: same form (mL of suspension, tablets) and schedule.

The dose plan (``rules.doseplan``) gives a regimen in mg per day (or alternate days, or three times a
week). The suggested ``dosageInstruction`` keeps how the draft was written where it can:

- a draft given several times a day (TID) stays so, with the amount per dose recomputed, when that
  amount is one the tablets (tablet step) or the syringe (mL step) can give; otherwise once daily;
- a draft written in mL of an oral suspension stays in mL; one written in tablets stays in tablets
  when the product's strength is known and the count is whole or half tablets; otherwise mg;
- an alternate-day or three-times-a-week regimen changes the schedule because the schedule is the
  advice (no daily amount of a tablet can give the dose).

Two Dosages given on alternate days share one ``sequence`` (R4: same sequence = concurrent; a second
sequence would mean "then, afterwards"), and three times a week is ``frequency 3 per 1 wk`` on Monday,
Wednesday and Friday, so that reading the suggestion back gives the advised daily average.
"""
from __future__ import annotations

import msgspec

import copy
from typing import Any

from fhir_mappers.medications import Strength, medication_concept, quantity_form, strength_of
from rules.doseplan import tablet_step
from rules.findings import Regimen
from rules.knowledge_base import load

from .wording import fmt_mg, regimen_text

UCUM = "http://unitsofmeasure.org"
EPS = 1e-6
_TIMES = {2: "twice daily", 3: "three times daily", 4: "four times daily"}


class DoseShape(msgspec.Struct, frozen=True):
    dosages: list[dict]
    words: str  # the regimen as it will be ordered, for the label and Dosage.text
    # the dose needs a product other than the one ordered (the oral suspension for a tablet order): an update of
    # the draft would keep the tablet product with a dose its tablets cannot give, so no one-click update is offered
    other_product: bool = False


def _first_dosage(draft: dict) -> dict:
    return next((d for d in draft.get("dosageInstruction") or [] if isinstance(d, dict)), {})


def _old_quantity(dosage: dict) -> dict | None:
    for dr in dosage.get("doseAndRate") or []:
        if isinstance(dr, dict) and isinstance(dr.get("doseQuantity"), dict):
            return dr["doseQuantity"]
    q = dosage.get("doseQuantity")  # STU3 shape
    return q if isinstance(q, dict) else None


def _times_a_day(dosage: dict) -> tuple[int, dict | None]:
    """(administrations a day, the draft's repeat) for a plain "N times every 1 day" schedule, else (1, None)."""
    timing: dict = t if isinstance(t := dosage.get("timing"), dict) else {}
    repeat: dict = r if isinstance(r := timing.get("repeat"), dict) else {}
    freq = repeat.get("frequency")
    if isinstance(freq, int) and not isinstance(freq, bool) and 2 <= freq <= 4 and repeat.get("period") in (1, 1.0) \
            and repeat.get("periodUnit") == "d" and not repeat.get("dayOfWeek"):
        return freq, repeat
    return 1, None


def _multiple(x: float, step: float) -> bool:
    return step > 0 and abs(x / step - round(x / step)) < 1e-6 and x > EPS


def _mg(mg: float) -> dict:
    value = int(mg) if float(mg).is_integer() else round(mg, 2)
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _ml(ml: float) -> dict:
    value = int(ml) if float(ml).is_integer() else round(ml, 3)
    return {"value": value, "unit": "mL", "system": UCUM, "code": "mL"}


def _tablets(mg: float, old: dict | None, per_unit: float | None) -> dict | None:
    if old is None or per_unit is None or per_unit <= 0:
        return None
    n = mg / per_unit
    if not _multiple(n, 0.5):
        return None
    out: dict[str, Any] = {"value": int(n) if float(n).is_integer() else n}
    for key in ("unit", "system", "code"):
        if isinstance(old.get(key), str):
            out[key] = old[key]
    return out


def shape(regimen: Regimen, draft: dict, drug: str, route: dict | None = None) -> DoseShape:
    """The suggested Dosage(s) for ``regimen`` in the draft's own form and schedule (see the module doc).

    Round-17 H3: whatever the schedule (daily, alternate days, three times a week), a Dosage the draft's product cannot
    give (mL or a suspension dose on a product that is not a liquid; a mg dose that is not a whole or half tablet of the
    product's known strength) makes the shape ``other_product``: no update of the draft is offered."""
    strength = strength_of(medication_concept(draft, {}), None)
    shaped = _shape(regimen, draft, drug, route, strength)
    if not shaped.other_product and not _product_gives(shaped.dosages, regimen, strength):
        return msgspec.structs.replace(shaped, other_product=True)
    return shaped


def _product_gives(dosages: list[dict], regimen: Regimen, strength: Strength) -> bool:
    """Whether the draft's product (``strength``) can give every dose of ``dosages`` as written."""
    for d in dosages:
        q = _old_quantity(d) or {}
        value = q.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        unit = str(q.get("code") or q.get("unit") or "").strip().lower()
        if unit == "ml" or regimen.form == "suspension":
            if strength.per_ml_mg is None:  # the oral suspension's dose on a tablet (or unknown) product
                return False
        elif unit == "mg" and strength.per_ml_mg is None and strength.per_unit_mg is not None:
            if not _multiple(value / strength.per_unit_mg, 0.5):  # 50 mg of a 75 mg tablet; 7 mg of a 50 mg tablet
                return False
    return True


def _shape(regimen: Regimen, draft: dict, drug: str, route: dict | None, strength: Strength) -> DoseShape:
    old = _first_dosage(draft)
    old_q = _old_quantity(old)
    written = quantity_form(old_q) if old_q is not None else ""
    form = load().dosing.forms.get(drug)

    def quantity(mg: float, ml: float | None) -> tuple[dict, str]:
        if regimen.form == "suspension" and ml is not None and written == "suspension":
            # mL only where the prescriber wrote mL (an order in mg stays in mg; a tablet product never gets mL)
            return _ml(ml), f"{fmt_mg(mg)} mg ({fmt_mg(ml)} mL)"
        if written == "tablet" and (q := _tablets(mg, old_q, strength.per_unit_mg)) is not None:
            unit = q.get("unit") or "tablet"
            return q, f"{fmt_mg(mg)} mg ({q['value']:g} {unit})"
        return _mg(mg), f"{fmt_mg(mg)} mg"

    if regimen.kind == "daily" and regimen.every_days == 1 and not regimen.days_per_week:
        n, repeat = _times_a_day(old)
        per = regimen.per_dose_mg / n
        ml = regimen.ml / n if regimen.ml is not None else None
        ml_step = form.suspension_ml_step if form is not None and form.suspension_ml_step is not None else 0.05
        practical = _multiple(ml, float(ml_step)) if ml is not None \
            else _multiple(per, tablet_step(drug, strength.per_unit_mg if strength.per_ml_mg is None else None))
        if n > 1 and repeat is not None and practical:
            q, said = quantity(per, ml)
            words = f"{said} {_TIMES[n]} ({fmt_mg(regimen.per_dose_mg)} mg/day)"
            keep = {k: copy.deepcopy(v) for k, v in repeat.items() if k in ("frequency", "period", "periodUnit", "when",
                                                                               "timeOfDay")}
            return DoseShape(_with_route([{"text": words, "timing": {"repeat": keep},
                                            "doseAndRate": [{"doseQuantity": q}]}], route), words)
        q, said = quantity(regimen.per_dose_mg, regimen.ml)
        words = regimen_text(regimen) if said == f"{fmt_mg(regimen.per_dose_mg)} mg" and regimen.form != "suspension" \
            else f"{said} once daily"
        other = False
        if regimen.form == "suspension" and written != "suspension" and regimen.ml is not None and form is not None \
                and form.suspension_mg_per_ml:
            # the tablets cannot give this dose (round-6 M2): say which product can
            words = f"{words} as the {fmt_mg(float(form.suspension_mg_per_ml))} mg/mL oral suspension " \
                    f"({fmt_mg(regimen.ml)} mL)"
            other = strength.per_ml_mg is None  # the ordered product is not a suspension (tablets, or not known)
        return DoseShape(_with_route([{"text": words, "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                             "periodUnit": "d"}},
                                       "doseAndRate": [{"doseQuantity": q}]}], route), words, other)
    words = regimen_text(regimen)
    if regimen.days_per_week:
        q, _ = quantity(regimen.per_dose_mg, regimen.ml)
        weekly: dict[str, Any] = {"frequency": regimen.days_per_week, "period": 1, "periodUnit": "wk",
                  "dayOfWeek": ["mon", "wed", "fri"][:regimen.days_per_week]}
        out: list[dict[str, Any]] = [{"text": words, "timing": {"repeat": weekly}, "doseAndRate": [{"doseQuantity": q}]}]
    elif regimen.alt_mg is not None:
        out = []
        for day, dose in ((1, regimen.per_dose_mg), (2, regimen.alt_mg)):
            q, _ = quantity(dose, None)
            out.append({"sequence": 1, "text": f"{words}: {fmt_mg(dose)} mg every other day, starting on day {day}",
                        "timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}},
                        "doseAndRate": [{"doseQuantity": q}]})
    else:
        q, _ = quantity(regimen.per_dose_mg, regimen.ml)
        out = [{"text": words, "timing": {"repeat": {"frequency": 1, "period": regimen.every_days, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": q}]}]
    return DoseShape(_with_route(out, route), words)


def _with_route(dosages: list[dict], route: dict | None) -> list[dict]:
    if isinstance(route, dict) and route:
        for d in dosages:
            d["route"] = route
    return dosages
