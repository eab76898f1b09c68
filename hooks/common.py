"""What the three thiopurine services declare alike."""
from __future__ import annotations

from .prefetch import PREFETCH, REQUIRED_KEYS

USAGE_REQUIREMENTS = (
    "Reads FHIR R4 data from prefetch or, when a key is missing, from fhirServer with the "
    "fhirAuthorization token. Scopes: patient/Patient.read patient/Observation.read "
    "patient/MedicationRequest.read patient/Medication.read patient/Condition.read. "
    "Keys 'patient' and 'medications' are required (412 without them and without a fhirServer)."
)

DESCRIPTION = (
    "Thiopurine prescribing safety (azathioprine, mercaptopurine, thioguanine): TPMT/NUDT15 "
    "pharmacogenomics per CPIC, dose by body weight, with suggested corrections and test orders."
)

SERVICE_DEFAULTS = dict(prefetch=PREFETCH, usage_requirements=USAGE_REQUIREMENTS, required_keys=REQUIRED_KEYS)
