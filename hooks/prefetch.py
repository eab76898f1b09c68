"""Prefetch templates shared by the thiopurine services, and their rendering.

What a service does when the EHR did not prefetch a key (412, fetch, omit) is
part of its definition: see ``hooks/services.py`` and ``hooks/registry.py``.
"""
from __future__ import annotations

import re
from urllib.parse import quote

from fhir_mappers.terminology import LOINC, terminology

from .errors import BadContext


def _codes(*pairs: tuple[str, str]) -> str:
    return ",".join(f"{system}|{code}" for system, code in pairs)


def _templates() -> dict[str, str]:
    t = terminology()
    # every genotype, phenotype and TPMT activity code the mappers read (fhir_mappers/codes.toml)
    pgx_codes = [(k.partition("|")[0], k.partition("|")[2])
                 for k in sorted(t.genotype_codes | t.phenotype_codes | t.variant_codes)]
    pgx_codes += [(LOINC, c) for c in sorted(t.analytes["tpmt_activity"].loinc)]
    # body weight under every code the mappers read (29463-7, 3141-9, ...); height (body surface area) has a
    # key of its own, so that many newer weights cannot crowd it out of a query capped by _count
    weight_codes = [(LOINC, c) for c in sorted(t.analytes["weight"].loinc)]
    height_codes = [(LOINC, c) for c in sorted(t.analytes["height"].loinc)]
    # pregnancy: the status codes and the pregnancy tests (hCG, round-5 H4) in their own key, newest first
    status_codes = [(LOINC, c) for c in sorted(t.status_loinc)] + [(LOINC, c) for c in sorted(t.analytes["hcg"].loinc)]
    lab_codes = [(LOINC, c) for name, a in t.analytes.items() if name not in ("weight", "height", "tpmt_activity", "hcg")
                 for c in sorted(a.loinc)]
    # panels whose results are components (a CBC panel 58410-2): a search by code never matches a component's code
    lab_codes += [(LOINC, c) for c in sorted(t.panel_loinc)]
    patient = "{{context.patientId}}"
    return {
        "patient": f"Patient/{patient}",
        "medications": f"MedicationRequest?patient={patient}&status=active&_include=MedicationRequest:medication",
        "weight": f"Observation?patient={patient}&code={_codes(*weight_codes)}&_sort=-date&_count=10",
        "height": f"Observation?patient={patient}&code={_codes(*height_codes)}&_sort=-date&_count=5",
        "pgx": f"Observation?patient={patient}&code={_codes(*pgx_codes)}",
        "labs": f"Observation?patient={patient}&code={_codes(*lab_codes)}&_sort=-date&_count=200",
        # results the mappers recognise by name only (no LOINC code of their own is confirmed: 6-TGN, 6-MMP;
        # fhir_mappers/codes.toml names=): every laboratory result, newest first, so that they can be read at all
        "lab_results": f"Observation?patient={patient}&category=laboratory&_sort=-date&_count=200",
        "pregnancy": f"Observation?patient={patient}&code={_codes(*status_codes)}&_sort=-date&_count=10",
        "conditions": f"Condition?patient={patient}&clinical-status=active",
        # every status: a record without clinicalStatus is read as active, an inactive / resolved / refuted one
        # is weighed by rules.populations (never filtered out by the server unseen)
        "allergies": f"AllergyIntolerance?patient={patient}",
        # live vaccines in the last weeks (before a thiopurine start)
        "immunizations": f"Immunization?patient={patient}&_sort=-date&_count=50",
        # a thiopurine stopped in the last months (before a live vaccine); earlier orders (renewal evidence)
        "past_medications": f"MedicationRequest?patient={patient}&status=stopped,completed"
                            "&_include=MedicationRequest:medication&_count=100",
    }


PREFETCH = _templates()

_TOKEN = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")


def render(template: str, context: dict) -> str | None:
    """Fill ``{{context.x}}`` tokens; None when a token has no string value."""
    missing = False

    def fill(m: re.Match) -> str:
        nonlocal missing
        value = context.get(m.group(1))
        if not isinstance(value, str) or not value:
            missing = True
            return ""
        try:
            return quote(value, safe="")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON, not valid text)
            raise BadContext(f"context.{m.group(1)} is not valid Unicode text", field=f"context.{m.group(1)}") from None

    out = _TOKEN.sub(fill, template)
    return None if missing else out
