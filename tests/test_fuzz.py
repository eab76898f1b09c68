"""Property-based tests: generated and mutated hook requests against the app.

Properties, for every input: never a 5xx; every 200 body is valid against the CDS Hooks
response schema (and this service's card rules); and when a thiopurine is ordered and the
pharmacogenomic results are missing, unreadable or abnormal, or required data could not be
read, the answer is never an empty "all clear".

No request leaves the machine: every outgoing ``requests`` call is answered by ``responses``
(unregistered: connection refused), and sockets may only connect to loopback. Generated
requests name at most a dead loopback port as their FHIR server, and the FHIR deadline is short.

Example counts (>= 2,000 in all with tests/test_auth.py's properties) are printed at the end.
"""
from __future__ import annotations

import copy
import json
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydantic import ValidationError

from service import create_app
from service.validation import first_error
from tests.builders import (SERVICE, bundle, dosage, genotype_core, genotype_ig, hook_request, lab, med_request,
                            normal_labs, patient, phenotype_tpmt, weight)
from tests.conftest import assert_valid_response

DEAD_FHIR = "http://127.0.0.1:9/fhir"  # discard port: nothing listens, the connection is refused at once
COUNTS: Counter[str] = Counter()
STARTED = time.monotonic()
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                      HealthCheck.data_too_large, HealthCheck.large_base_example],
                print_blob=True)


# ------------------------------------------------------------------ isolation

from tests.isolation import isolated  # noqa: E402,F401  (autouse fixture)


@pytest.fixture(scope="module")
def client():
    app = create_app({"auth_required": False, "fhir_deadline": 0.3, "database_url": "sqlite://"})
    return app.test_client()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    total = sum(COUNTS.values())
    rows = ", ".join(f"{k}={v}" for k, v in sorted(COUNTS.items()))
    print(f"\nhypothesis examples in test_fuzz: {total} ({rows}) in {time.monotonic() - STARTED:.1f} s")


def _some_draft_is_invalid_fhir(req) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        ctx = req["context"]
        entries = (ctx.get("draftOrders") or ctx.get("medications"))["entry"]
    except (TypeError, KeyError, AttributeError):
        return True
    for e in entries if isinstance(entries, list) else [entries]:
        resource = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(resource, dict):
            return True
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception:
            return True
    return False


def post(client, service: str, body, *, raw: bytes | None = None, content_type: str = "application/json"):
    data = raw if raw is not None else json.dumps(body, allow_nan=True)
    return client.post(f"/cds-services/{service}", data=data, content_type=content_type)


def check(resp, req=None) -> dict | None:
    assert resp.status_code < 500, resp.get_data(as_text=True)[:2000]
    body = resp.get_json(silent=True)
    assert isinstance(body, dict), resp.get_data(as_text=True)[:500]
    if resp.status_code == 200:
        try:
            assert_valid_response(body)
        except ValidationError:
            # a suggested update copies the EHR's draft order; it can only be as valid as that draft was
            assert _some_draft_is_invalid_fhir(req), json.dumps(body)[:3000]
            assert first_error("ServiceResponse", body) is None
        return body
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    return None


# ------------------------------------------------------------------ building blocks

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0x80), max_size=20),  # any plane, combining marks, RTL ...
    st.sampled_from(["", " ", "\u0000", "\ud800", "\udfff lone", "\u202e50 mg\u202c", "ｍｇ", "mg\u00a0", "𝟓𝟎 mg",
                     "<script>alert(1)</script>", "' OR 1=1 --", "{{context.patientId}}", "Ö" * 300, "\n\r\t"]),
)
absurd_numbers = st.one_of(
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e-300, 1e300, 10**30, -1, 2**63, 0.5, 699.99, 700, 1e308]),
)
units = st.one_of(st.sampled_from(["mg", "g", "mcg", "ug", "µg", "kg", "{tbl}", "tablet", "mL", "mg/kg", "puff", "",
                                   "MG", "milligram", "10*9/L", "10*3/uL", "g/dL", "U/L", "[lb_av]", "furlongs"]), odd_text)
THIOPURINES = [("197388", "azathioprine 50 MG Oral Tablet"), ("197931", "mercaptopurine 50 MG Oral Tablet"),
               ("10485", "thioguanine"), ("1256", "azathioprine")]
OTHERS = [("617993", "Amoxicillin 120 MG/ML"), ("519", "allopurinol"), ("11289", "warfarin"), ("", "")]


@st.composite
def dosages(draw):
    if draw(st.booleans()):
        return [dosage(draw(absurd_numbers), unit=draw(units), code=draw(st.one_of(st.none(), units)),
                       frequency=draw(absurd_numbers), period=draw(absurd_numbers),
                       period_unit=draw(st.sampled_from(["d", "h", "wk", "mo", "a", "s", "", "day"])),
                       system=draw(st.sampled_from([None, "http://unitsofmeasure.org", "urn:other"])))
                for _ in range(draw(st.integers(1, 3)))]
    return draw(st.sampled_from([[], None, [{}], [{"text": "as directed"}], [{"asNeededBoolean": True}],
                                 [{"doseAndRate": [{"doseRange": {"low": {"value": 50, "unit": "mg"}}}]}],
                                 [{"timing": {"code": {"coding": [{"code": "BID"}]}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "{tbl}"}}]}]]))


@st.composite
def orders(draw):
    n = draw(st.integers(1, 3))
    out = []
    for i in range(n):
        code, display = draw(st.sampled_from(THIOPURINES + OTHERS))
        if draw(st.integers(0, 4)) == 0:
            display = draw(odd_text)
        mr = med_request(code or "0", display, id=draw(st.sampled_from([f"mr-{i}", "mr-aza", "x" * 70, "é/..", ""])),
                         dosages=draw(dosages()), status=draw(st.sampled_from(["draft", "active", "bogus"])))
        if draw(st.integers(0, 5)) == 0:
            del mr["medicationCodeableConcept"]
            mr["medicationReference"] = {"reference": draw(st.sampled_from(["Medication/aza-50", "#contained",
                                                                            "Medication/../../x", "urn:uuid:1"])),
                                         **({"display": display} if draw(st.booleans()) else {})}
        out.append(mr)
    if draw(st.booleans()):
        out.append(copy.deepcopy(out[0]))  # duplicated entry
    return out


NORMAL_PGX = [genotype_ig("TPMT", "*1/*1"), genotype_ig("NUDT15", "*1/*1")]
NOT_NORMAL_PGX = st.one_of(
    st.just([]),  # not tested
    st.sampled_from([[genotype_ig("TPMT", "*3A/*3A"), genotype_ig("NUDT15", "*1/*1")],
                     [genotype_ig("TPMT", "*1/*3A"), genotype_ig("NUDT15", "*1/*1")],
                     [genotype_ig("TPMT", "*1/*99"), genotype_ig("NUDT15", "*1/*1")],
                     [genotype_core("TPMT", "*1/*1")],  # NUDT15 missing
                     [phenotype_tpmt("Poor"), genotype_ig("NUDT15", "*1/*1")],
                     [genotype_ig("TPMT", "*1/*1"), genotype_ig("NUDT15", "*3/*3")]]),
    odd_text.filter(lambda t: "*1/*1" not in t).map(lambda t: [genotype_ig("TPMT", t), genotype_ig("NUDT15", "*1/*1")]),
)


@st.composite
def observation_lists(draw):
    obs: list[dict] = []
    for _ in range(draw(st.integers(0, 3))):
        obs.append(weight(draw(absurd_numbers), unit=draw(units), code=draw(st.one_of(st.none(), units)),
                          id=f"wt-{len(obs)}", when=draw(st.sampled_from([None, "2026-11-01", "1900-01-01", "not a date",
                                                                          "2099-12-31T23:59:59Z", "2026-13-45"]))))
    for _ in range(draw(st.integers(0, 4))):
        loinc = draw(st.sampled_from(["6690-2", "751-8", "731-0", "777-3", "718-7", "1742-6", "2160-0", "21563-2", "0-0"]))
        obs.append(lab(loinc, draw(absurd_numbers), draw(units), id=f"lab-{len(obs)}"))
    if obs and draw(st.booleans()):
        obs.append(copy.deepcopy(obs[-1]))  # duplicated entry
    return obs


def maybe_broken(value):
    """A prefetch value, or one of the ways an EHR gets it wrong."""
    return st.one_of(st.just(value), st.just(value), st.just(value),
                     st.sampled_from([None, {"resourceType": "OperationOutcome", "issue": []}, {}, {"resourceType": 5},
                                      {"resourceType": "Bundle", "entry": "nope"}, {"resourceType": "Bundle", "entry": [None, 1]}]))


@st.composite
def hook_requests(draw):
    hook = draw(st.sampled_from(list(SERVICE)))
    drafts = draw(orders())
    pgx_normal = draw(st.booleans())
    pgx = NORMAL_PGX if pgx_normal else draw(NOT_NORMAL_PGX)
    observations = draw(observation_lists())
    pre = {
        "patient": draw(maybe_broken(patient(birth_date=draw(st.sampled_from(["1980-05-01", "2025-01-01", "1890-01-01", "x"]))))),
        "medications": draw(maybe_broken(bundle(*draw(st.lists(st.sampled_from([med_request("519", "allopurinol", id="a1", status="active"),
                                                                                 med_request("11289", "warfarin", id="w1", status="active")]), max_size=2))))),
        "weight": draw(maybe_broken(bundle(*[o for o in observations if o["id"].startswith("wt")]))),
        "pgx": draw(maybe_broken(bundle(*pgx))),
        "labs": draw(maybe_broken(bundle(*[o for o in observations if o["id"].startswith("lab")], *normal_labs()))),
        "pregnancy": bundle(),
        "conditions": bundle(),
        "allergies": bundle(),
    }
    for key in draw(st.lists(st.sampled_from(sorted(pre)), max_size=3, unique=True)):
        del pre[key]  # not prefetched
    server = draw(st.sampled_from([None, DEAD_FHIR]))
    req = copy.deepcopy(hook_request(hook, orders=drafts, pre=pre, fhir_server=server, token="tok" if server else None))
    if hook == "order-select" and draw(st.booleans()):
        req["context"]["selections"] = draw(st.lists(st.sampled_from(["MedicationRequest/mr-0", "MedicationRequest/mr-1",
                                                                       "MedicationRequest/nope", "x"]), max_size=3))
    return req, pgx_normal


# ------------------------------------------------------------------ properties

@settings(FUZZ, max_examples=800)
@given(case=hook_requests())
def test_generated_requests(client, case):
    req, pgx_normal = case
    COUNTS["generated"] += 1
    resp = post(client, SERVICE[req["hook"]], req)
    body = check(resp, req)
    if body is None:
        assert resp.status_code in (400, 412), resp.get_data(as_text=True)
        return
    pre = req.get("prefetch", {})
    drafts = [e["resource"] for e in (req["context"].get("draftOrders") or req["context"].get("medications"))["entry"]]
    selections = req["context"].get("selections")
    thiopurine = any(_is_thiopurine(d) and (selections is None or (d["id"] and f"MedicationRequest/{d['id']}" in selections))
                     for d in drafts)
    pgx_value = pre.get("pgx")
    pgx_clean = pgx_normal and isinstance(pgx_value, dict) and pgx_value.get("entry") == bundle(*NORMAL_PGX)["entry"]
    lost_required = any(not _clean(pre.get(k)) for k in ("patient", "medications"))
    if thiopurine and (not pgx_clean or lost_required):
        assert body["cards"], "a thiopurine with missing, unreadable or abnormal data got no card: " + json.dumps(req)[:4000]


def _is_thiopurine(resource: dict) -> bool:
    concept = resource.get("medicationCodeableConcept") or {}
    coding = (concept.get("coding") or [{}])[0]
    if coding.get("code") in ("197388", "197931", "10485", "1256"):
        return True
    return False  # a display-only name may or may not be recognised: no claim either way


def _clean(value) -> bool:
    return isinstance(value, dict) and value.get("resourceType") in ("Patient", "Bundle") and \
        (value.get("resourceType") != "Bundle" or isinstance(value.get("entry"), list))


json_values = st.recursive(
    st.none() | st.booleans() | absurd_numbers | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_requests(draw):
    req, _ = draw(hook_requests())
    req = copy.deepcopy(req)  # mutate a copy: shared example objects must stay as they are
    for _ in range(draw(st.integers(1, 5))):
        paths = [p for p in _paths(req) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = req
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = draw(st.sampled_from(["delete", "replace", "wrap", "duplicate", "number", "text", "empty"]))
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(json_values)
        elif op == "wrap":
            parent[last] = [parent[last]]
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif op == "number":
            parent[last] = draw(absurd_numbers)
        elif op == "text":
            parent[last] = draw(odd_text)
        else:
            parent[last] = draw(st.sampled_from([{}, [], "", None]))
    # never a FHIR server other than the dead loopback port
    if isinstance(req, dict) and "fhirServer" in req:
        req["fhirServer"] = DEAD_FHIR
    return req


@settings(FUZZ, max_examples=800)
@given(req=mutated_requests(), service=st.sampled_from(list(SERVICE.values())))
def test_mutated_requests(client, req, service):
    COUNTS["mutated"] += 1
    check(post(client, service, req), req)


@settings(FUZZ, max_examples=250)
@given(body=json_values, service=st.sampled_from(list(SERVICE.values()) + ["nope"]),
       ctype=st.sampled_from(["application/json", "application/fhir+json", "text/plain", "application/json; charset=latin-1"]))
def test_arbitrary_json_bodies(client, body, service, ctype):
    COUNTS["arbitrary-json"] += 1
    resp = post(client, service, body, content_type=ctype)
    check(resp)
    assert resp.status_code in (400, 404, 412, 415), resp.status_code


@settings(FUZZ, max_examples=150)
@given(raw=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes(client, raw):
    COUNTS["bytes"] += 1
    resp = post(client, "thiopurine-order-sign", None, raw=raw)
    check(resp)
    assert resp.status_code == 400


@settings(FUZZ, max_examples=200)
@given(items=st.lists(st.fixed_dictionaries(
    {"card": odd_text, "outcome": st.sampled_from(["accepted", "overridden", "maybe"]) | odd_text},
    optional={"outcomeTimestamp": st.sampled_from(["2026-01-01T10:00:00Z", "2026-13-01T00:00:00Z", "yesterday", ""]) | odd_text,
              "acceptedSuggestions": st.lists(st.fixed_dictionaries({"id": odd_text}), max_size=3) | json_values,
              "overrideReason": json_values}), max_size=4) | json_values)
def test_feedback_bodies(client, items):
    COUNTS["feedback"] += 1
    body = {"feedback": items} if isinstance(items, list) else items
    resp = client.post("/cds-services/thiopurine-order-sign/feedback", data=json.dumps(body), content_type="application/json")
    assert resp.status_code < 500 or resp.status_code == 503, resp.get_data(as_text=True)[:1000]
    assert isinstance(resp.get_json(silent=True), dict)


def test_nan_and_infinity_in_json_are_refused_with_an_operation_outcome(client):
    """NaN and Infinity are not JSON (RFC 8259): a 400, never a dose or weight of NaN in a rule."""
    req = hook_request(orders=[med_request(dosages=[dosage(float("nan"))])],
                       pre={"patient": patient(), "medications": bundle(), "weight": bundle(weight(float("inf")))})
    resp = post(client, "thiopurine-order-sign", req)
    assert resp.status_code == 400
    assert check(resp) is None  # an OperationOutcome with diagnostics


def _numbers(node):
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _numbers(v)
    elif isinstance(node, list):
        for v in node:
            yield from _numbers(v)


def test_examples_add_up_to_the_issue_budget():
    """After the property tests above: at least 2,000 examples with tests/test_auth.py's 600."""
    if sum(COUNTS.values()) == 0:
        pytest.skip("the property tests of this module were not run")
    assert sum(COUNTS.values()) + 600 >= 2000, COUNTS


# ------------------------------------------------------------------ clinical safety under bad data

def _cards(client, req) -> list[dict]:
    body = check(post(client, SERVICE[req["hook"]], req), req)
    assert body is not None
    return body["cards"]


def _full_prefetch(**kw) -> dict:
    from tests.builders import prefetch

    return prefetch(**kw)


@pytest.mark.parametrize("genotype", ["*1/*99", "*1/*3Z", "TPMT *1", "positive", "*1/*1/*3A", "Ｔ*1/*3A"])
def test_unknown_genotype_is_reported_not_passed(client, genotype):
    pre = _full_prefetch(pgx=[genotype_ig("TPMT", genotype), genotype_ig("NUDT15", "*1/*1")])
    cards = _cards(client, hook_request(pre=pre))
    uninterpretable = [c for c in cards if c["source"]["topic"]["code"] in ("pgx-uninterpretable", "pgx-test-missing")]
    assert uninterpretable, [c["source"]["topic"]["code"] for c in cards]
    assert uninterpretable[0]["indicator"] == "warning"
    assert "TPMT" in uninterpretable[0]["summary"]


@pytest.mark.parametrize("unit, code", [("", None), (None, None), ("puff", "puff"), ("mL", "mL")])
def test_dose_without_a_mass_unit_is_reported(client, unit, code):
    dose = dosage(150, unit=unit, code=code, system=None)
    if unit is None:
        dose["doseAndRate"][0]["doseQuantity"].pop("unit")
    cards = _cards(client, hook_request(orders=[med_request(dosages=[dose])], pre=_full_prefetch()))
    text = "\n".join(c["summary"] + "\n" + c["detail"] for c in cards)
    assert cards and "dose" in text.lower()
    assert any(w in text for w in ("no unit", "not a mass unit", "could not be read", "unreadable")), text[:2000]


@pytest.mark.parametrize("unit", ["furlongs", "mmol/L", "10*12/L?", "%"])
def test_lab_in_an_unexpected_unit_is_reported(client, unit):
    labs = [lab("6690-2", 5.5, unit, id="wbc-odd"), lab("751-8", 3.0, unit, id="anc-odd")]
    cards = _cards(client, hook_request(pre=_full_prefetch(labs=labs)))
    incomplete = [c for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]
    assert incomplete, [c["source"]["topic"]["code"] for c in cards]
    assert unit in incomplete[0]["detail"] and "white cell count" in incomplete[0]["detail"]


@pytest.mark.parametrize("kg", [0, 700])
def test_implausible_weight_is_reported(client, kg):
    """Weight plausibility is a rule of its own (rules/); here: the card must mention the weight."""
    pre = _full_prefetch(pgx=[genotype_ig("TPMT", "*1/*3A"), genotype_ig("NUDT15", "*1/*1")], weights=[weight(kg)])
    cards = _cards(client, hook_request(pre=pre))
    mentions = [c for c in cards if "weight" in (c["summary"] + c["detail"]).lower()
                and f"{kg} kg" in (c["summary"] + c["detail"])]
    assert mentions, [(c["source"]["topic"]["code"], c["summary"]) for c in cards]
