"""Round-3 audit: haemoglobin in mmol/L, counts per mm3, a critical flag written only as text, and the
unit a case-insensitive match must never take (G/L would read as grams per litre)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.terminology import lab_units, norm_unit
from hooks.pipeline import HookEnv, run
from hooks.registry import SERVICES
from outbound.fhir_client import FhirClient

CASES = Path(__file__).resolve().parent / "data" / "review3"


def _cards(name: str) -> list[dict]:
    request = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    service = SERVICES[{"order-sign": "thiopurine-order-sign", "order-select": "thiopurine-order-select"}
                          .get(request["hook"], "thiopurine-medication-prescribe")]
    env = HookEnv(client=FhirClient(), today=lambda: date(2026, 12, 7))
    return run(service, request, env).response["cards"]


@pytest.mark.parametrize("name, quoted", [
    ("hb-mmol-per-L-4-5-dutch", "haemoglobin 72.5"),           # 4.5 mmol/L x 16.114 = 72.5 g/L < 80
    ("hb-g-per-L-75", "haemoglobin 75 g/L"),
    ("anc-x10-3-mm3-0-8", "neutrophils 0.8"),
    ("wbc-x10-3-mm3-1-5-and-anc-ok", "white cells 1.5"),
    ("neutrophils-LL-text-only-no-value", "critical value phoned"),
])
def test_a_severe_count_in_these_shapes_gives_the_critical_card(name, quoted):
    cards = _cards(name)
    severe = [c for c in cards if c["source"]["topic"]["code"] == "cytopenia-severe"]
    assert severe and severe[0]["indicator"] == "critical", [c["summary"] for c in cards]
    assert quoted in severe[0]["summary"]


def test_mm3_printings_are_microlitres_and_giga_per_litre_is_not_guessed():
    for printed in ("x10^3/mm3", "10^3/mm3", "x10E3/mm3"):
        assert lab_units()[norm_unit(printed)] == "10*3/uL"
    assert lab_units().get(norm_unit("G/L")) != "10*9/L"  # case-insensitive matching: G/L is indistinguishable from g/L


def test_a_pgx_report_with_only_a_conclusion_is_read_not_called_missing():
    """Round-3 D3: a DiagnosticReport (93193-1) whose result is only its conclusion text was "no result on record"."""
    cards = _cards("tpmt-3a-3c-diagnosticreport-conclusion-only")
    codes = {c["source"]["topic"]["code"] for c in cards}
    assert "pgx-test-missing" not in codes
    pm = next(c for c in cards if c["source"]["topic"]["code"] == "pgx-poor-metabolizer")
    assert pm["indicator"] == "critical" and "TPMT poor metabolizer" in pm["summary"]
