"""What one ``evaluate()`` call derives from its facts, each computed once for that call.

Several rules need the same derived values (the thiopurine orders, each order's body-size basis, the
TPMT activity readings); a ``CallContext`` is made by ``rules.evaluate`` for one call and handed to
each rule, so that each is computed once per call instead of once per rule. It lives only as long as
the call: nothing derived from a patient's facts is kept across calls. A rule called on its own
(tests, the command line) makes its own.
"""
from __future__ import annotations

from functools import cached_property

from fhir_mappers.facts import ClinicalFacts, ConditionFact, MedicationFact

from . import common
from .knowledge_base import load
from .start import start_basis
from .tpmt_activity import ActivityReading, activity_readings


class CallContext:
    def __init__(self, facts: ClinicalFacts) -> None:
        self.facts = facts
        self._basis: dict[tuple[int, str, int], dict] = {}
        self._indication: dict[int, tuple[str, str]] = {}

    @cached_property
    def thiopurine_orders(self) -> list[tuple[MedicationFact, str]]:
        return common.thiopurine_orders(self.facts)

    @cached_property
    def condition_codes(self) -> list[tuple[ConditionFact, common.ConditionCodes]]:
        """Every Condition with its codes read once (``common.condition_codes``), for every code list matched."""
        return [(c, common.condition_codes(c.codes)) for c in self.facts.conditions]

    @cached_property
    def condition_indication(self) -> str | None:
        # round-11 M1: and the Procedures that name an indication (a kidney transplant), ``indication_records``
        procedures = [common.condition_codes(p.codes) for p in common.indication_records(self.facts)[
            len(self.facts.conditions):]]
        return common.read_condition_indication([*(codes for _, codes in self.condition_codes), *procedures])

    def indication(self, order: MedicationFact) -> tuple[str, str]:
        """``common.indication`` of the order, computed once per call."""
        found = self._indication.get(id(order))
        if found is None:
            found = self._indication[id(order)] = common.indication_from(
                common.reason_indication(order), lambda: self.condition_indication,
                bool(order.reason_codes or common.indication_records(self.facts)))
        return found

    def size_basis(self, order: MedicationFact, drug: str, weight_days: int) -> dict:
        """``common.size_basis`` of the order, computed once per call (each caller gets its own copy)."""
        key = (id(order), drug, weight_days)
        basis = self._basis.get(key)
        if basis is None:
            basis = common.size_basis(self.facts, order, drug, weight_days, self.indication(order))
            self._basis[key] = basis = _with_start_basis(self.facts, order, drug, basis)
        return dict(basis)

    @cached_property
    def activity_readings(self) -> list[ActivityReading]:
        return activity_readings(self.facts)

    @cached_property
    def latest_activity(self) -> ActivityReading | None:
        readings = self.activity_readings
        return readings[0] if readings else None

    @cached_property
    def latest_judged(self) -> ActivityReading | None:
        return next((r for r in self.activity_readings if r.reading), None)


def _with_start_basis(facts: ClinicalFacts, order: MedicationFact, drug: str, basis: dict) -> dict:
    """Round-15 M1: for a new start where a start regimen applies (``rules.dose.start_basis``), the usual dose every
    fraction and band is taken of is the label's starting dose and the top an order following that advice may reach is the starting
    dose itself: one basis, whatever dose was ordered above it."""
    if order.established_dose is not None:
        return basis  # a dose taken before (an ended or replaced order): established therapy keeps its basis (round-9 M2)
    start = start_basis(facts, order, drug, basis)
    if start is None or order.daily_dose is None or basis["kind"] in ("ordered", "no_size"):
        return basis
    # the starting dose itself also for an order below it: that order may already be reduced (the fraction of it
    # would cut an order that follows the advice again), and the answer stays one figure whatever was ordered
    return {**basis, "maintenance_basis": basis, "reference_mg": start, "normal_mg": start, "top_mg": start, "start_basis": True,
            "start_mg": start, "start_from_order": False, "from_order": False, "usual_start": False,
            "taken": False, "usual_name": basis.get("usual_name") or load().dosing.indications[basis["indication"]].name,
            # where the start figure comes from (the indication's own start source, else the label's)
            "start_source": getattr(load().dosing.indications.get(basis["indication"]), "start_source", "")
            or load().dosing.general.new_start_source,
            # round-19 m2: the indication has no start of its own (the label's indications are renal homotransplantation
            # and rheumatoid arthritis): the general start, the label's RA figure, is applied to it
            "general_start": not getattr(load().dosing.indications.get(basis["indication"]), "start_source", "")}


def context_of(facts: ClinicalFacts, ctx: CallContext | None) -> CallContext:
    """The call's context, or a new one for a rule called on its own."""
    return ctx if ctx is not None and ctx.facts is facts else CallContext(facts)
