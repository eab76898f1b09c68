"""What recording cards costs a hook call: ``.venv/bin/python benchmarks/storage_cost.py [--database-url URL]``.

Three numbers per back end (SQLite in a temporary directory, plus ``--database-url`` if given):

* ``record_cards``   the hot-path call itself (queue append; the INSERT runs on the writer thread)
* ``sync insert``    what one INSERT + COMMIT per hook call would cost instead (the design not taken)
* ``hook endpoint``  POST /cds-services/thiopurine-order-sign (one card) through the WSGI app, with
                     the store off and on; the difference is what a prescriber could notice

``benchmarks/run.py`` can import :func:`run` and report the dict it returns.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CARD = {"uuid": "", "indicator": "warning",
        "source": {"topic": {"code": "pgx-reduce-dose", "display": "TPMT/NUDT15 intermediate metabolizer"}},
        "extension": {"azathioprine-cds": {"knowledgeVersion": "2026.11.0"}}}


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def bench_record_cards(store, calls: int) -> float:
    cards = [dict(CARD, uuid=f"bench-{i}") for i in range(calls)]
    started = time.perf_counter()
    for i, card in enumerate(cards):
        store.record_cards(service_id="thiopurine-order-sign", hook="order-sign", hook_instance=f"h{i}", cards=[card])
    per_call = (time.perf_counter() - started) / calls
    store.flush()
    return _us(per_call)


def bench_sync_insert(store, calls: int) -> float:
    import sqlalchemy as sa

    from service.storage.models import cards
    from service.storage.store import card_row

    times = []
    for i in range(calls):
        row = card_row(dict(CARD, uuid=f"sync-{i}"), service_id="thiopurine-order-sign", hook="order-sign",
                       hook_instance=f"s{i}", issued_at=datetime.now(timezone.utc))
        started = time.perf_counter()
        with store.write() as conn:
            conn.execute(sa.insert(cards), [row])
        times.append(time.perf_counter() - started)
    return _us(statistics.median(times))


def _poor_metabolizer_request() -> dict:
    """An order-sign call that always yields a card: azathioprine for a TPMT poor metabolizer."""
    today = date.today().isoformat()
    subject = {"reference": "Patient/bench"}

    def bundle(*resources):
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}

    order = {"resourceType": "MedicationRequest", "id": "mr-aza", "status": "draft", "intent": "order",
             "subject": subject, "authoredOn": today,
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "197388", "display": "azathioprine 50 MG Oral Tablet"}]},
             "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                    "doseAndRate": [{"doseQuantity": {"value": 100, "unit": "mg", "code": "mg",
                                                                      "system": "http://unitsofmeasure.org"}}]}]}
    weight = {"resourceType": "Observation", "id": "wt", "status": "final", "subject": subject,
              "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}, "effectiveDateTime": today,
              "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    tpmt = {"resourceType": "Observation", "id": "tpmt", "status": "final", "subject": subject,
            "code": {"coding": [{"system": "http://loinc.org", "code": "79713-4"}]}, "effectiveDateTime": "2024-06-01",
            "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA9657-3",
                                                 "display": "Poor metabolizer"}]}}
    return {"hook": "order-sign", "hookInstance": "bench",
            "context": {"userId": "Practitioner/bench", "patientId": "bench",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": order}]}},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "bench", "birthDate": "1980-05-01"},
                         "medications": bundle(), "weight": bundle(weight), "pgx": bundle(tpmt), "labs": bundle(),
                         "pregnancy": bundle(), "conditions": bundle()}}


def bench_endpoint(url: str, calls: int) -> dict[str, float]:
    from rules.knowledge_base import load  # noqa: F401 - warm imports outside the timing

    from service import create_app

    app = create_app({"auth_required": False, "database_url": url})
    store = app.extensions["aza_feedback_store"]
    client = app.test_client()
    import logging

    logging.getLogger("aza_cds").disabled = True  # the access log line is not what is measured
    body = _poor_metabolizer_request()
    out: dict[str, float] = {}
    try:
        for label, active in (("store off", None), ("store on", store), ("store off ", None), ("store on ", store)):
            app.extensions["aza_feedback_store"] = active
            for _ in range(20):
                client.post("/cds-services/thiopurine-order-sign", json=body)
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                resp = client.post("/cds-services/thiopurine-order-sign", json=body)
                times.append(time.perf_counter() - started)
                assert resp.status_code == 200 and resp.get_json()["cards"]
            out[label.strip()] = min(out.get(label.strip(), 1e9), _us(statistics.median(times)))
        store.flush()
    finally:
        logging.getLogger("aza_cds").disabled = False
        store.close()
    out["difference"] = round(out["store on"] - out["store off"], 1)
    return out


def run(database_urls: list[str], calls: int = 2000) -> dict[str, dict]:
    from service.storage import FeedbackStore

    results: dict[str, dict[str, Any]] = {}
    for url in database_urls:
        store = FeedbackStore.open(url)
        try:
            name = store.dialect
            results[name] = {"record_cards µs/call": bench_record_cards(store, calls),
                             "sync insert+commit µs/call (median)": bench_sync_insert(store, min(calls, 500))}
        finally:
            store.close()
        results[name]["hook endpoint µs (median)"] = bench_endpoint(url, min(calls, 500))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", action="append", default=[], help="also measure this store (repeatable)")
    p.add_argument("--calls", type=int, default=2000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for backend, numbers in run([f"sqlite:///{tmp}/bench.sqlite3", *args.database_url], args.calls).items():
            print(f"{backend}:")
            for key, value in numbers.items():
                print(f"  {key:38s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
