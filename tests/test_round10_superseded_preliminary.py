"""Round-10 review M1: a preliminary pharmacogenomic result superseded by a FINAL readable result of the same gene
(dated the same day or later) gives no phenotype. The reviewer's c91: a preliminary TPMT intermediate result
(January) and a final TPMT *1/*1 (February): the final report is the verified one (FHIR R4 ObservationStatus), so
the order is not halved on the preliminary result and no card asks for the final report already on record. A
preliminary result NEWER than the final one still counts (it may be a retest), and so does a preliminary result with
no final result of its gene."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).parent / "data" / "review10"


def _case() -> dict:
    (path,) = CASES.glob("c91-*.json")
    return json.loads(path.read_text())


def _ids(cards: list[dict]) -> set[str]:
    return {c["source"]["topic"]["code"] for c in cards}


def _tpmt_results(req: dict) -> list[dict]:
    out = []
    for key in ("pgx", "labs", "lab_results"):
        value = req["prefetch"].get(key) or {}
        for e in value.get("entry", []):
            r = e.get("resource", {})
            if r.get("resourceType") == "Observation" and "TPMT" in json.dumps(r):
                out.append(r)
    return out


def test_c91_final_normal_supersedes_the_preliminary_intermediate() -> None:
    cards = case_cards(_case())
    assert "pgx-reduce-dose" not in _ids(cards)
    assert not any("confirm with the final report" in (c["summary"] + c.get("detail", "")).lower() for c in cards)


def test_a_preliminary_result_newer_than_the_final_still_counts() -> None:
    req = _case()
    results = _tpmt_results(req)
    prelim = [r for r in results if r.get("status") == "preliminary"]
    final = [r for r in results if r.get("status") != "preliminary"]
    assert prelim and final
    later = copy.deepcopy(req)
    for r in _tpmt_results(later):  # the preliminary result is now the newer one
        if r.get("status") == "preliminary":
            r["effectiveDateTime"] = "2026-11-30"
    assert "pgx-reduce-dose" in _ids(case_cards(later))


def test_a_preliminary_result_alone_still_counts() -> None:
    req = _case()
    for key in ("pgx", "labs", "lab_results"):
        value = req["prefetch"].get(key) or {}
        value["entry"] = [e for e in value.get("entry", [])
                          if not (e.get("resource", {}).get("resourceType") == "Observation"
                                  and "TPMT" in json.dumps(e["resource"]) and e["resource"].get("status") != "preliminary")]
    assert "pgx-reduce-dose" in _ids(case_cards(req))
