"""The pieces of ``make bench`` (benchmarks/run.py) that need no wrk and no valgrind: the request
builders (the other-order call concerns no rule, (a) does), the side-by-side table, the targets with
by how much each misses, the RESULTS.md writer, the instruction regression check and the A/B's
package list. Fake figures only: nothing here is timed."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from fhir_mappers.terminology import ingredients_in_text

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _load(name: str):
    """A benchmarks/ module under a private name; sys.path as it was afterwards."""
    saved = list(sys.path)
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved


run = _load("run")
cpu_per_call = _load("cpu_per_call")
ab_old_new = _load("ab_old_new")
patient = run.patient


@pytest.fixture(scope="module")
def bodies():
    from hooks.prefetch import PREFETCH

    return run.scenario_bodies(list(PREFETCH))


# ----------------------------------------------------------------------------- requests
def test_other_order_is_a_with_another_draft(bodies):
    records, reqs = bodies
    o, a = reqs["o"], reqs["a"]
    assert o["hook"] == a["hook"] == "order-sign"
    assert o["prefetch"] == a["prefetch"], "the other order carries (a)'s full prefetch"
    drafts = [e["resource"] for e in o["context"]["draftOrders"]["entry"]]
    assert [d["medicationCodeableConcept"]["coding"][0]["code"] for d in drafts] == [patient.OTHER_ORDER[0]]
    assert drafts[0]["status"] == "draft"
    size_o, size_a = (len(json.dumps(r, separators=(",", ":"))) for r in (o, a))
    assert abs(size_o - size_a) / size_a < 0.01, "the same ≈ 94 KiB body as (a)"
    assert 80 * 1024 < size_o < 110 * 1024
    assert records["o"]["medications"] == records["a"]["medications"]


def _knowledge_text() -> str:
    files = sorted((ROOT / "rules" / "knowledge").rglob("*.toml")) + sorted((ROOT / "fhir_mappers").glob("*.toml"))
    assert len(files) > 5
    return "\n".join(f.read_text(encoding="utf-8") for f in files).lower()


def test_other_order_drug_is_named_by_no_knowledge_table():
    text = _knowledge_text()
    rxnorm, display, _, _ = patient.OTHER_ORDER
    ingredient = display.split()[0].lower()
    assert ingredient == "amlodipine"
    # amlodipine is named in the knowledge only inside an ACE-inhibitor combination (amlodipine/benazepril):
    # alone it names no interacting ingredient, and its RxNorm code is in no table
    assert ingredients_in_text(display) == set()
    assert re.search(r"amlodipine.{0,3}benazepril", text)
    assert not re.search(rf"\b{rxnorm}\b", text)
    # the check can fail: the draft the brief first suggested (lisinopril) is an interacting medicine
    assert re.search(r"\blisinopril\b", text)


def test_other_order_answers_no_card_and_a_answers_cards(client, bodies):
    _, reqs = bodies
    url = "/cds-services/" + patient.SERVICE
    other = client.post(url, json=reqs["o"])
    assert other.status_code == 200, other.get_data(as_text=True)
    assert other.get_json() == {"cards": []}
    a = client.post(url, json=reqs["a"])
    assert a.status_code == 200
    assert run.rule_ids(a.data), "(a) is real work: it answers cards"


def test_reference_harness_answers_what_it_is_given(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # as when cpu_per_call.py runs: benchmarks/ on the path
    h = cpu_per_call.ReferenceHarness("o", b'{"cards":[]}')
    assert h.call() == b'{"cards":[]}'
    assert json.loads(h.body)["context"]["draftOrders"]["entry"][0]["resource"]["id"] == "mr-other-draft"


def test_instruction_scenarios_leave_out_b_and_say_why():
    assert cpu_per_call.INSTRUCTION_SCENARIOS == ("o", "a", "c")
    with pytest.raises(SystemExit, match="not for"):
        cpu_per_call._instructions("b", 1)
    assert "pool threads" in cpu_per_call.__doc__


def test_a_stage_is_counted_inside_functools_reduce_and_answers_the_same(monkeypatch):
    """``--stage``: the named function is replaced by one that runs it inside ``functools.reduce`` (the C function
    callgrind toggles on), with the same answer; the callers that look it up by that name call the wrapper."""
    import functools
    import hooks.pipeline

    calls = []
    real_reduce = functools.reduce

    def spy(*args):
        calls.append(args[0])
        return real_reduce(*args)

    monkeypatch.setattr(functools, "reduce", spy)
    monkeypatch.setattr(hooks.pipeline, "merge_cards", hooks.pipeline.merge_cards)  # restored afterwards
    cpu_per_call._count_only_inside("hooks.pipeline:merge_cards")
    assert hooks.pipeline.merge_cards([]) == []
    assert len(calls) == 1


def test_a_stage_is_only_for_the_services_instructions():
    with pytest.raises(SystemExit):
        cpu_per_call.main(["--stage", "hooks.pipeline:gather"])
    with pytest.raises(SystemExit):
        cpu_per_call.main(["--instructions", "--reference", "--stage", "hooks.pipeline:gather"])


# ------------------------------------------------------------------------ table, targets
class FakeServer:
    def __init__(self, name: str, rss: float | None = 80.0, cold: float | None = 0.5) -> None:
        self.name, self._rss, self.cold_start_s = name, rss, cold

    def peak_rss_mb(self):
        return self._rss


def _row(key: str, server, rps: float, p50: float, p99: float, *, jwt=False, reference_of=None, errors=0):
    row = run.Row(key, f"({key}) label", server, Path("/dev/null"), reference_of=reference_of, jwt=jwt)
    # two runs of 8 s each; CPU 8 s per run over rps * 8 calls
    row.runs = [run.Run(int(rps * 8), 8.0, p50, p99, p99 * 1.5, errors, cpu_s=8.0 * 0.5) for _ in range(2)]
    return row


def _fake_run():
    svc = {k: FakeServer(f"service-{k}", rss=rss, cold=cold)
           for k, rss, cold in (("o", 80, 0.6), ("a", 85, 0.7), ("b", 84, 1.3), ("c", 118, 0.8))}
    ref, ref_o = FakeServer("reference", 54, 2.0), FakeServer("reference-o", 54, 0.5)
    rows = {
        "o": _row("o", svc["o"], 380, 3.0, 9.0),
        "a": _row("a", svc["a"], 200, 30.0, 60.0),
        "jwt": _row("jwt", FakeServer("service-jwt", 90, 0.9), 150, 40.0, 80.0, jwt=True, reference_of="a"),
        "b": _row("b", svc["b"], 40, 170.0, 260.0),
        "c": _row("c", svc["c"], 30, 230.0, 350.0),
    }
    refs = {"o": _row("o", ref_o, 1000, 2.0, 8.0), "a": _row("a", ref, 2000, 2.5, 10.0),
            "b": _row("b", ref, 3000, 1.5, 6.0), "c": _row("c", ref, 600, 15.0, 30.0)}
    servers = [*svc.values(), rows["jwt"].server, ref, ref_o]
    inproc = run.InProcess(cpu={"o": 1.7, "a": 6.8, "b": 13.0, "c": 22.0}, cpu_ref={"o": 0.2, "a": 0.27, "b": 0.2, "c": 0.34},
                           instr={"o": 6.1, "a": 25.19, "c": 39.0}, instr_ref={"o": 1.1, "a": 1.1, "c": 3.2})
    return rows, refs, servers, inproc


def test_table_puts_service_and_reference_side_by_side():
    rows, refs, _, inproc = _fake_run()
    text = run.table(list(rows.values()), refs, inproc)
    lines = text.splitlines()
    assert len(lines) == 2 + 5 + 4  # header, 5 service lines, 4 reference lines (none for JWT)
    o_service, o_reference = lines[2], lines[3]
    assert o_service.startswith("| (o) label | service | 380 |") and o_service.endswith("| 1.70 | 6.10 | 38 % |")
    assert o_reference.startswith("| (o) label | reference | 1,000 |") and o_reference.endswith("| 0.20 | 1.10 | 100 % |")
    jwt = next(line for line in lines if "+ JWT" in line)
    assert jwt.endswith("| – | – | 8 % |"), "the JWT row's ratio is to (a)'s reference; no in-process figures"
    b_service = next(line for line in lines if line.startswith("| (b) label | service"))
    assert "| 13.00 | – |" in b_service, "(b) has CPU in-process but no instruction count"


def test_targets_say_whether_each_holds_and_by_how_much():
    rows, refs, servers, inproc = _fake_run()
    targets = {t.name: t for t in run.check_targets(rows, refs, servers, inproc)}
    other = targets["other order: throughput ≥ 80 % of the reference"]
    assert other.holds is False and other.measured == pytest.approx(38.0)
    assert other.by_how_much() == "misses by 42 points; needs 2.1× this throughput"
    a_ratio = targets["(a) throughput ≥ 50 % of the reference"]
    assert a_ratio.holds is False and a_ratio.by_how_much() == "misses by 40 points; needs 5.0× this throughput"
    p99 = targets["(a) p99 ≤ 10 ms at 8 connections"]
    assert p99.holds is False and p99.by_how_much() == "misses by 50.0 ms (6.0× the bound; −83 % needed)"
    a_instr = targets["(a) ≤ 8 M instructions per call"]
    assert a_instr.holds is False and a_instr.by_how_much() == "misses by 17.19 M (3.1× the bound; −68 % needed)"
    c_instr = targets["(c) ≤ 40 M instructions per call"]
    assert c_instr.holds is True and c_instr.by_how_much() == "holds with 1.00 M to spare"
    cold = targets["cold start to first answer ≤ 1 s"]
    # the slowest *service* server (1.3 s), not the reference's 2.0 s
    assert cold.measured == 1.3 and cold.holds is False and "service-b" in cold.value()
    assert cold.by_how_much().startswith("misses by 0.30 s")
    rss = targets["RSS ≤ 120 MB per worker"]
    assert rss.measured == 118 and rss.holds is True and rss.by_how_much() == "holds with 2 MB to spare"
    assert targets["zero errors"].holds is True and targets["zero errors"].by_how_much() == "holds"


def test_targets_not_measured_say_why_and_errors_count():
    rows, refs, servers, _ = _fake_run()
    rows["jwt"].runs[0].errors = 3
    targets = {t.name: t for t in run.check_targets(rows, refs, servers, run.InProcess(), "valgrind is not installed")}
    a_instr = targets["(a) ≤ 8 M instructions per call"]
    assert a_instr.holds is None and a_instr.value() == "not measured"
    assert a_instr.by_how_much() == "valgrind is not installed"
    errors = targets["zero errors"]
    assert errors.holds is False and errors.measured == 3
    table = run.targets_table(list(targets.values()))
    assert "| (a) ≤ 8 M instructions per call | – | not measured | valgrind is not installed |" in table
    assert "| zero errors | **no** | 3 | misses by 3 |" in table


def test_report_is_written_between_its_markers(tmp_path):
    rows, refs, servers, inproc = _fake_run()
    args = Namespace(rounds=1, duration=3.0, connections=8, workers=2, threads=4, fhir="stub", delay_ms=100)
    targets = run.check_targets(rows, refs, servers, inproc)
    checks = {"o": [], "a": ["pgx-reduce-dose"], "b": ["pgx-reduce-dose"], "c": ["pgx-reduce-dose"]}
    probe = {"queries": 11, "all_in_flight_together": True, "span_ms": 105.0, "unknown": 0}
    report = run.report_text(args=args, when="2026-12-07 07:00", machine_text="2 × test CPU", load_before=1.0,
                             load_after=2.0, results_table=run.table(list(rows.values()), refs, inproc),
                             checks=checks, probe=probe, colds="service-o 0.60 s", targets=targets)
    assert 'Cards answered: (o) none (`{"cards": []}`); (a) pgx-reduce-dose' in report
    assert "| other order: throughput ≥ 80 % of the reference | **no** | 38 % of the reference |" in report
    results = tmp_path / "RESULTS.md"
    results.write_text("# R\n\nprose before\n<!-- bench:table:begin -->\nOLD-BLOCK\n<!-- bench:table:end -->\nprose after\n")
    run.write_results(report, "table", results)
    run.write_results("cpu line", "cpu", results)
    text = results.read_text()
    assert "OLD-BLOCK" not in text and "prose before" in text and "prose after" in text
    assert text.count("<!-- bench:table:begin -->") == 1 and report.strip() in text
    assert text.rstrip().endswith("<!-- bench:cpu:begin -->\ncpu line\n<!-- bench:cpu:end -->")


# ------------------------------------------------------------------- regression figure
def test_instruction_regression_covers_the_other_order():
    labels = {"o": "other order", "a": "full prefetch", "c": "515 Obs"}
    first, regressions = cpu_per_call.instructions_text({"o": 6.0, "a": 25.0, "c": 116.0}, {"a": 25.0, "c": 116.0},
                                                        labels, {"o": 1.1, "a": 1.1, "c": 3.0})
    assert regressions == []
    assert "| (o) other order | 6.00 | – | – | first run | 1.10 |" in first
    previous = cpu_per_call.previous_instructions(f"<!-- bench:instructions:begin -->\n{first}\n"
                                                  "<!-- bench:instructions:end -->")
    assert previous == {"o": 6.0, "a": 25.0, "c": 116.0}
    _, regressions = cpu_per_call.instructions_text({"o": 6.25, "a": 25.5, "c": 100.0}, previous, labels)
    assert len(regressions) == 1 and regressions[0].startswith("(o) 6.25 M"), "+4.2 % on (o) fails; +2 % on (a) does not"


def test_instructions_block_says_why_when_callgrind_cannot_run(monkeypatch):
    monkeypatch.setattr(cpu_per_call, "callgrind_available", lambda: "valgrind is not installed (Debian package valgrind)")
    block, regressions, now, ref = cpu_per_call.instructions_block({"a": 20.0}, {})
    assert block == "Instructions per call: not measured, valgrind is not installed (Debian package valgrind)."
    assert (regressions, now, ref) == ([], {}, {})


# ------------------------------------------------------------------------ options, A/B
def test_quick_mode_is_a_short_smoke_run():
    quick = run.parse_args(["--quick", "--no-write"])
    assert (quick.rounds, quick.duration, quick.no_profile, quick.no_write) == (1, 3.0, True, True)
    assert quick.cpu_calls_scale < 1
    full = run.parse_args([])
    assert (full.rounds, full.duration, full.connections, full.no_profile, full.cpu_calls_scale) == (3, 8.0, 8, False, 1.0)


def test_ab_packages_are_every_project_package():
    project = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert "outbound" in project
    assert set(ab_old_new.PACKAGES) == project
    assert ab_old_new.packages_at("HEAD") == list(ab_old_new.PACKAGES)
    assert set(ab_old_new.CALLS) == set(cpu_per_call.SCENARIOS)


def test_ab_finds_modules_imported_from_another_tree(tmp_path):
    import fhir_mappers  # noqa: F401 - imported from this tree, not from tmp_path

    strays = ab_old_new.foreign_modules(tmp_path)
    assert any(s.startswith("fhir_mappers") for s in strays)
    assert ab_old_new.foreign_modules(ROOT) == []


def test_instructions_block_counts_service_and_reference(monkeypatch):
    seen = []

    def fake(scenario, calls=None, *, reference=False, answer_file="", body_file=""):
        seen.append((scenario, reference, answer_file, body_file))
        return {"o": 6e6, "a": 25e6, "c": 116e6}[scenario] / (20 if reference else 1)

    monkeypatch.setattr(cpu_per_call, "callgrind_available", lambda: None)
    monkeypatch.setattr(cpu_per_call, "instructions_per_call", fake)
    files = {s: (f"answer-{s}.json", f"body-{s}.json") for s in cpu_per_call.INSTRUCTION_SCENARIOS}
    block, regressions, now, ref = cpu_per_call.instructions_block({"a": 25.0, "c": 100.0}, {}, files)
    assert now == {"o": 6.0, "a": 25.0, "c": 116.0}
    assert ref == pytest.approx({"o": 0.3, "a": 1.25, "c": 5.8})
    assert sorted(seen) == sorted([(s, False, "", "") for s in now] + [(s, True, *files[s]) for s in now])
    assert regressions == ["(c) 116.00 M instructions per call, +16.0 % on the previous 100.00 M"]
    assert "| (c) full prefetch, 515 Obs | 116.00 | 100.00 | +16.0 % | **regression** | 5.80 |" in block


def test_cpu_per_call_leaves_out_a_run_whose_worker_was_recycled():
    # a worker recycled during a run (gunicorn's max_requests) takes its CPU time with it: that run's
    # CPU is unknown (None), not a negative or too small figure
    runs = [run.Run(1000, 8.0, 1.0, 2.0, 3.0, 0, cpu_s=0.5), run.Run(1000, 8.0, 1.0, 2.0, 3.0, 0, cpu_s=None)]
    assert run.cpu_ms_per_call(runs) == pytest.approx(0.5)
    assert run.cpu_ms_per_call(runs[1:]) is None
    row = run.Row("b", "(b) label", FakeServer("reference"), Path("/dev/null"))
    row.runs = runs
    assert row.total()["cpu_ms"] == pytest.approx(0.5) and row.total()["requests"] == 2000
