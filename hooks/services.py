"""The CDS services this package offers: one definition per hook, all with the same prefetch.

The prefetch templates (and their code lists) are built in ``hooks/prefetch.py``; here each key
gets its policy for when the EHR did not prefetch it (``OnMissing``).
"""
from __future__ import annotations

from collections.abc import Mapping

from . import medication_prescribe, order_select, order_sign
from .prefetch import PREFETCH
from .registry import OnMissing, PrefetchKey, ServiceDefinition, register

# the orders cannot be judged without the patient and their medications: 412 when they cannot be had;
# every other key is fetched when not prefetched, and a failure is a card naming the check not done
# (the immunization history for a thiopurine start after a live vaccine, stopped orders for a live
# vaccine after a thiopurine: asked for only when the orders make them matter, see rules.groups_needed)
# lab_results (every laboratory result, for the thiopurine metabolites read by name) is optional: the
# metabolite check only means something when a result exists, so a request that neither prefetches it nor
# gives a fhirServer gets no card about it (a failed fetch is a gap like any other)
POLICY = {"patient": OnMissing.FAIL, "medications": OnMissing.FAIL,
          "immunizations": OnMissing.FETCH, "past_medications": OnMissing.FETCH,
          "lab_results": OnMissing.OPTIONAL}
THIOPURINE_PREFETCH = {key: PrefetchKey(template, POLICY.get(key, OnMissing.FETCH)) for key, template in PREFETCH.items()}

DESCRIPTION = (
    "Thiopurine prescribing safety (azathioprine, mercaptopurine, thioguanine): TPMT/NUDT15 "
    "pharmacogenomics per CPIC (default) or DPWG (AZA_CDS_GUIDELINE=dpwg), dose by body weight, with "
    "suggested corrections and test orders."
)


def scopes(prefetch: Mapping[str, PrefetchKey]) -> list[str]:
    """One read scope per resource type the prefetch templates ask for, their ``_include``
    targets too (Medication), derived from the templates so that the list cannot drift from them."""
    types: set[str] = set()
    for p in prefetch.values():
        path, _, query = p.template.partition("?")
        types.add(path.split("/", 1)[0])
        for name, _, value in (part.partition("=") for part in query.split("&")):
            if name == "_include" and value.count(":") >= 1:  # Source:searchParam[:Target]
                parts = value.split(":")
                types.add(parts[2] if len(parts) > 2 else parts[1].capitalize())
    return [f"patient/{t}.read" for t in sorted(types)]


def usage_requirements(prefetch: Mapping[str, PrefetchKey]) -> str:
    required = " and ".join(f"'{k}'" for k, p in prefetch.items() if p.on_missing is OnMissing.FAIL)
    return ("Reads FHIR R4 data from prefetch or, when a key is missing, from fhirServer with the "
            f"fhirAuthorization token. Scopes: {' '.join(scopes(prefetch))}. "
            f"Keys {required} are required (412 without them and without a fhirServer).")


for module, service_id, title in (
    (medication_prescribe, "thiopurine-medication-prescribe", "Thiopurine safety check while prescribing (legacy hook)"),
    (order_select, "thiopurine-order-select", "Thiopurine safety check when an order is selected"),
    (order_sign, "thiopurine-order-sign", "Thiopurine safety check at signing"),
):
    register(ServiceDefinition(id=service_id, context=module.CONTEXT, title=title, description=DESCRIPTION,
                               usage_requirements=usage_requirements(THIOPURINE_PREFETCH), prefetch=THIOPURINE_PREFETCH))
