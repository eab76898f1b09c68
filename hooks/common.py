"""What the three thiopurine services declare alike."""
from __future__ import annotations

from .prefetch import PREFETCH, REQUIRED_KEYS

def _scopes() -> str:
    """One read scope per resource type the prefetch templates ask for (Medication: their
    ``_include``), derived from the templates so that the list cannot drift from them."""
    types = {template.split("?", 1)[0].split("/", 1)[0] for template in PREFETCH.values()}
    types |= {inc.split(":", 1)[1].capitalize() for t in PREFETCH.values() for inc in t.split("_include=")[1:2] for inc in [inc.split("&", 1)[0]]}
    return " ".join(f"patient/{t}.read" for t in sorted(types))


USAGE_REQUIREMENTS = (
    "Reads FHIR R4 data from prefetch or, when a key is missing, from fhirServer with the "
    f"fhirAuthorization token. Scopes: {_scopes()}. "
    "Keys 'patient' and 'medications' are required (412 without them and without a fhirServer)."
)

DESCRIPTION = (
    "Thiopurine prescribing safety (azathioprine, mercaptopurine, thioguanine): TPMT/NUDT15 "
    "pharmacogenomics per CPIC, dose by body weight, with suggested corrections and test orders."
)

SERVICE_DEFAULTS = dict(prefetch=PREFETCH, usage_requirements=USAGE_REQUIREMENTS, required_keys=REQUIRED_KEYS)
