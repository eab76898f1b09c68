"""FHIR R4 JSON → typed domain facts (see ``facts.py``).

``build_facts`` (``build.py``) is the one entry point the hooks use: draft orders and gathered data in,
``ClinicalFacts`` out. Mappers are lenient about shape and strict about units; they never decide what a value
means clinically.
"""
from .build import build_facts, order_facts, report_observations
from .facts import ClinicalFacts, DataGap, MedicationFact

__all__ = ["build_facts", "order_facts", "report_observations", "ClinicalFacts", "DataGap", "MedicationFact"]
