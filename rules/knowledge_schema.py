"""The shape of every knowledge file (``rules/knowledge/*.toml``): one frozen dataclass per table.

``rules.knowledge_base.load`` reads each file into its dataclass with ``build``. A key the dataclass
does not name, a key it needs that the file lacks, or a value of the wrong type stops the start with
one line naming the file, the table and the key (``KnowledgeError``), so a typo (``thiopurines = [...]``)
cannot silently switch a rule off.

To add a key: add a field to the table's dataclass below (with a default if older files may lack it),
then read it as an attribute (``load().interactions.warfarin.inr_within_days``). To add a table to a
``Mapping`` (a new ``[others.*]`` interaction, a new ``[indications.*]``): only the TOML changes, and
the catalogue needs an entry for any rule id the table gives rise to (the start-up check says which).
"""
from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cached_property
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


Level = Literal["info", "warning", "critical"]  # a card's indicator (rules.findings.Indicator)
# The rule modules that emit findings (rules/<module>.py). Every [rules.<id>] entry of catalogue.toml names the one
# that emits it (key `module`): a module's rule ids are read from the catalogue, never kept in a Python list
# (rules.catalogue.rule_ids_of); tests/test_safechange_knowledge.py checks each module's Finding(...) ids against it.
RuleModule = Literal["pgx", "dose", "interactions", "monitoring", "populations", "gaps"]
RULE_MODULES: tuple[str, ...] = get_args(RuleModule)


class KnowledgeError(ValueError):
    """A knowledge file that cannot be used: one line naming the file, the table and the key."""


# ------------------------------------------------------------------ shared

@dataclass(frozen=True)
class Meta:
    version: str
    tables: str = ""  # pgx.toml: where the CPIC tables come from


@dataclass(frozen=True)
class TestOrder:
    """A test the cards offer to order (LOINC)."""

    loinc: str
    display: str
    reason: str
    source: str


# ------------------------------------------------------------------ sources.toml

@dataclass(frozen=True)
class Source:
    key: str
    label: str
    url: str = ""
    citation: str = ""
    year: int = 0
    internal: bool = False  # basis of a number in the knowledge data, never a clinician-facing source


@dataclass(frozen=True)
class SourceSpec:  # one [<key>] table of sources.toml
    label: str
    url: str = ""
    citation: str = ""
    year: int = 0
    internal: bool = False


# ------------------------------------------------------------------ pgx.toml

@dataclass(frozen=True)
class Cpic2026:
    source: str
    aliases: Mapping[str, Mapping[str, str]]
    unconfirmed: Mapping[str, tuple[str, ...]]
    new_alleles: Mapping[str, tuple[str, ...]]
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubAlleles:
    """Sub-alleles a report may print that are read as their parent allele (round-6 M5: TPMT *1S = *1)."""

    source: str
    alleles: Mapping[str, Mapping[str, str]]
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Band:
    """A dose band or action for a phenotype category, as fractions of the normal dose."""

    source: str
    low: float | None = None
    high: float | None = None
    action: str = ""  # poor metabolizer: "avoid", "avoid_or_reduce"
    fraction: float | None = None
    malignant: str = ""  # the action in malignancy ("reduce")
    malignant_fraction: float | None = None
    malignant_days_per_week: int | None = None
    malignant_source: str = ""
    malignant_mg_per_m2: float | None = None  # malignancy: an absolute starting dose per m² (CPIC 2018 Table 3)
    # malignancy, a regimen that cuts the dose per dose and the schedule (TPMT poor metabolizer: one tenth, three times
    # a week): an order at or under this per m² per dose follows it (CPIC's worked example, 10 mg/m2/day on 3 days a
    # week; round-9 M3), even when one tenth of the normal dose is less
    malignant_accept_mg_per_m2: float | None = None


@dataclass(frozen=True)
class DrugBands:
    """A thiopurine's bands; ``<gene>_im`` / ``<gene>_poor`` apply when only that gene is affected."""

    one_im: Band | None = None
    both_im: Band | None = None
    cap: Band | None = None
    poor: Band | None = None
    tpmt_im: Band | None = None
    nudt15_im: Band | None = None
    tpmt_poor: Band | None = None
    nudt15_poor: Band | None = None


@dataclass(frozen=True)
class PgxDrug(DrugBands):
    label_source: str = ""
    standard_mg_per_kg_day: float | None = None
    standard_source: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    drugs: Mapping[str, DrugBands] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True)
class EstablishedDose:
    """When an intermediate metabolizer's order is an unchanged renewal of an established, tolerated dose (round-5 M4):
    the guidelines' bands are starting doses, adjusted afterwards to myelosuppression."""

    min_days_on_dose: int  # the dose has been taken at least this long
    steady_state_days: int  # the counts were taken at least this long after the dose began
    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class PgxFile:
    meta: Meta
    cpic_2026: Cpic2026
    sub_alleles: SubAlleles
    tests: Mapping[str, TestOrder]
    drugs: Mapping[str, PgxDrug]
    profiles: Mapping[str, Profile]
    established_dose: EstablishedDose


# ------------------------------------------------------------------ dosing.toml

@dataclass(frozen=True)
class DosingGeneral:
    weight_max_age_days: int
    weight_max_age_source: str
    critical_factor: float
    critical_factor_source: str
    weight_plausible_kg: tuple[float, float]
    weight_plausible_source: str
    implausible_daily_mg: float
    implausible_daily_source: str
    new_start_mg: float
    new_start_mg_per_kg: float
    new_start_source: str
    height_max_age_days: int
    height_max_age_source: str
    size_missing_reference_kg: float
    size_missing_reference_m2: float
    size_missing_source: str
    # practical tolerances around a guideline's figure (product policy; docs/dose-advice.md)
    point_dose_tolerance_tablet_steps: float = 0.5
    point_dose_min_fraction: float = 0.9
    per_m2_start_accept_fraction: float = 1.1
    start_dose_margin: float = 0.05
    tolerance_source: str = ""
    height_plausible_cm: tuple[float, float] = (20.0, 275.0)  # outside: a recording error, never a BSA
    height_plausible_source: str = ""


@dataclass(frozen=True)
class Form:
    source: str
    tablet_step_mg: float = 25
    suspension_mg_per_ml: float | None = None
    suspension_ml_step: float | None = None


@dataclass(frozen=True)
class Oncology:
    name: str
    standard_mg_per_m2: float
    max_mg_per_m2: float
    range_text: str
    source: str
    max_mg_per_kg_by_weight: float | None = None
    sources: tuple[str, ...] = ()
    starting_dose: bool = False  # the label's figure is the start, not a ceiling in maintenance


@dataclass(frozen=True)
class Cited:
    """A table that only names its sources (dosing.toml [schedule], interactions.toml [duplicate],
    populations.toml [intolerance] and [inactive])."""

    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Indication:
    name: str
    range_text: str
    source: str
    # None: a recognised indication without a cited dose range (round-6 m6: liver and heart transplant, off-label for
    # the Imuran label): no dose range, start regimen or maximum is applied to it
    max_mg_per_kg: float | None = None
    snomed: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()  # ICD-10 code prefixes
    oncology: bool = False  # dosed per m2 (see [oncology])
    malignancy_drugs: tuple[str, ...] = ()  # thiopurines CPIC's malignancy advice applies to
    drugs: tuple[str, ...] = ()  # whose range this is (empty: every thiopurine)
    new_start_max_mg_per_kg: float | None = None
    # the lowest usual starting dose of a new start (round-8 H4: renal homotransplantation 3 mg/kg/day, label): the
    # normal dose a PGx band or allopurinol's fraction applies to is never below it
    new_start_min_mg_per_kg: float | None = None
    # round-9 M2: the lowest usual dose of the indication per kg (the range_text's low end, same source): a dose the
    # patient took before (``MedicationFact.established_dose``) at or above it is a usual dose, and allopurinol's
    # one-third to one-quarter applies to it when it is under the normal dose; None: the normal dose (2 mg/kg/day)
    usual_min_mg_per_kg: float | None = None
    # round-10 H2: the new start's range (new_start_min/max_mg_per_kg: renal homotransplantation 3-5 mg/kg/day
    # "initially", at the time of transplant) applies only to an induction: a Condition (or, round-11 M1, a
    # Procedure done) of this indication coded as the transplant event (none of the status codes below) with an
    # onset (else recordedDate; a Procedure's performed date) within this many days before today. Otherwise (an
    # older or undated transplant, a "transplant status" code) the maintenance range applies; an earlier course
    # does not (round-11 m1). None: every new start
    induction_window_days: int | None = None
    induction_window_source: str = ""
    # codes (SNOMED CT concept ids; ICD-10 code prefixes) of this indication that record an established graft
    # ("kidney transplant status", "transplanted kidney present"): never evidence of an induction
    status_snomed: tuple[str, ...] = ()
    status_icd10: tuple[str, ...] = ()
    # round-8 M2: a child's range as printed (per kg only, no adult fixed mg start) and a child's start ceiling per kg
    child_range_text: str = ""
    child_start_max_mg_per_kg: float | None = None
    start_mg: float | None = None
    start_mg_per_kg: float | None = None
    start_source: str = ""
    no_start_titration: bool = False
    # round-15 M2: recognised without a dose range of its own (max_mg_per_kg unset), yet a new start takes the general
    # start regimen (the label's about 1 mg/kg/day, 50-100 mg, then titration), as an unknown indication does
    general_start: bool = False
    sources: tuple[str, ...] = ()
    # the normal dose per kg of the indication's ``drugs`` (round-4 M1: thioguanine in AML, the Tabloid label's
    # about 2 mg/kg/day), where pgx.toml sets none: the reference a PGx fraction applies to
    standard_mg_per_kg_day: float | None = None


@dataclass(frozen=True)
class OtherDrug:
    max_mg_per_kg: float
    source: str


@dataclass(frozen=True)
class DosingFile:
    meta: Meta
    general: DosingGeneral
    tests: Mapping[str, TestOrder]
    forms: Mapping[str, Form]
    oncology: Mapping[str, Oncology]
    schedule: Cited
    indications: Mapping[str, Indication]
    other_drugs: Mapping[str, OtherDrug]


# ------------------------------------------------------------------ interactions.toml

@dataclass(frozen=True)
class XanthineOxidase:
    ingredients: tuple[str, ...]
    factor_low: float
    factor_high: float
    factor_source: str
    not_inactivated: tuple[str, ...]
    not_inactivated_source: str
    contraindicated: Mapping[str, tuple[str, ...]]
    contraindicated_sources: tuple[str, ...]
    label_sources: Mapping[str, tuple[str, ...]]
    source: str
    sources: tuple[str, ...] = ()
    # round-17 M6: the weekly CBC after the combination is started (Imuran label, Laboratory Tests: weekly in the
    # first month); a renewal of a combination taken together longer than this is not told to check it weekly
    weekly_cbc_days: int = 30
    weekly_cbc_source: str = "fda_azathioprine_monitoring"


@dataclass(frozen=True)
class Warfarin:
    ingredients: tuple[str, ...]
    inr_loinc: str
    inr_display: str
    inr_within_days: int
    reason: str
    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class LowLevelImmunosuppression:
    """Live vaccines that low-level immunosuppression allows (IDSA 2013 / ACIP 2008): the thiopurine's dose
    per kg at or under which the card is a warning (``indicator``), not a contraindication."""

    azathioprine_mg_per_kg: float
    mercaptopurine_mg_per_kg: float
    vaccines: tuple[str, ...]  # CVX codes
    indicator: Level
    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveVaccines:
    source: str
    after_stop_days: int
    after_stop_source: str
    before_start_days: int
    before_start_source: str
    alternatives: Mapping[str, str]  # CVX code of the live vaccine -> a non-live alternative
    sources: tuple[str, ...] = ()
    low_level: LowLevelImmunosuppression | None = None


@dataclass(frozen=True)
class OtherInteraction:
    """``[others.<key>]``: rule id ``interaction-<key>`` (underscores as hyphens); its catalogue entry words it."""

    name: str
    ingredients: tuple[str, ...]
    effect: str
    source: str
    sources: tuple[str, ...] = ()
    # a routine combination (aminosalicylate + thiopurine in IBD, BSG 2019): an info note at a new start of either
    # drug, nothing on a renewal of a combination already taken together (audit round 2, M4)
    routine_combination: bool = False
    # round-14 m4: indications (dosing.toml [indications] keys) in which the combination is standard practice
    # (co-trimoxazole Pneumocystis prophylaxis in acute lymphoblastic leukaemia, ECIL-5 2016): there, as a routine
    # combination, an info note at a new start of either drug and nothing on a renewal; elsewhere the warning
    routine_in: tuple[str, ...] = ()
    routine_in_source: str = ""
    # round-15 M5: the routine_in note applies only to a prophylactic order of the other drug: its daily amount
    # (co-trimoxazole: trimethoprim, fhir_mappers/codes.toml strengths) at or below routine_max_mg_per_day and, for a
    # child, at or below routine_max_mg_per_m2_day of body surface area; a higher, unreadable or (child) not
    # comparable dose keeps the warning. None: no dose condition.
    routine_max_mg_per_day: float | None = None
    routine_max_mg_per_m2_day: float | None = None
    # the child's per-m2 ceiling rounded up to whole multiples of this (mg; co-trimoxazole: one SS tablet's 80 mg
    # trimethoprim), as a tablet order must round it; None: not rounded
    routine_round_up_mg: float | None = None
    routine_dose_source: str = ""


@dataclass(frozen=True)
class InteractionsFile:
    meta: Meta
    xanthine_oxidase_inhibitors: XanthineOxidase
    warfarin: Warfarin
    live_vaccines: LiveVaccines
    others: Mapping[str, OtherInteraction]
    duplicate: Cited


# ------------------------------------------------------------------ monitoring.toml

@dataclass(frozen=True)
class Cbc:
    weekly_window_days: int
    early_phase_days: int
    routine_window_days: int
    lft_early_window_days: int
    lft_early_source: str
    reason: str
    source: str
    cbc_loinc: str
    cbc_display: str
    lft_loinc: str
    lft_display: str
    result_max_age_days: int
    result_max_age_source: str
    # round-8 H2: a CBC date counts only when one analyte of each group was read on it (white cells AND platelets)
    complete_count: tuple[tuple[str, ...], ...]
    complete_count_source: str
    count_analytes: tuple[str, ...]
    absent_gap_analytes: tuple[str, ...]
    absent_gap_source: str
    complete_count_sources: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    # round-20 M2: an ended (completed or stopped) order whose recorded end is more than this many days before a
    # draft is not therapy taken now: the draft is a restart, a new start for every rule
    restart_after_days: int = 28
    restart_after_source: str = "cpic_2018"


@dataclass(frozen=True)
class Cytopenia:
    source: str
    wbc_below: float
    neutrophils_below: float
    platelets_below: float
    lymphocytes_below: float
    mcv_above: float
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class SevereCytopenia:
    source: str
    neutrophils_below: float
    wbc_below: float
    platelets_below: float
    hemoglobin_below: float  # g/L (fhir_mappers/codes.toml canonical unit): CTCAE v5 grade 3 anaemia
    # leukaemia maintenance (ALL, AML): counts are titrated into a target band (mercaptopurine label 2.1), so
    # neutrophils and white cells count as severe only at CTCAE v5 grade 4; platelets and haemoglobin as above
    leukaemia_neutrophils_below: float
    leukaemia_wbc_below: float
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Liver:
    """Liver tests: ALT/AST (BSR 2017), total bilirubin and ALP (CTCAE v5 multiples of the upper limit), the
    Hy's law pattern (FDA DILI guidance 2009) and default upper limits when the laboratory sends none."""

    source: str
    alt_ast_above: float
    uln_multiple_above: float
    bilirubin_uln_multiple_above: float
    alp_uln_multiple_above: float
    uln_multiples_source: str
    hys_transaminase_uln_multiple: float
    hys_bilirubin_uln_multiple: float
    hys_source: str
    bilirubin_default_uln: float
    alp_default_uln: float
    alp_default_uln_child: float
    alp_child_below_years: int
    default_uln_source: str
    transaminase_default_uln: float
    transaminase_default_uln_source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metabolites:
    source: str
    tgn_above: float
    mmp_above: float
    tgn_below: float
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActivityUnit:
    source: str
    bands: tuple[tuple[float, str, str], ...]  # (upper limit, exclusive; reading; label)
    high_above: float | None = None
    sources: tuple[str, ...] = ()
    lab: str = ""  # the laboratory whose cut-offs these are
    normal: tuple[float, float] | None = None  # its normal band: another range sent means another assay


@dataclass(frozen=True)
class ActivityInterpretation:
    source: str
    codes: Mapping[str, str]
    poor_words: tuple[str, ...]
    intermediate_words: tuple[str, ...]
    normal_words: tuple[str, ...]
    high_words: tuple[str, ...]
    sources: tuple[str, ...] = ()
    # words that place a result as intermediate in so many words (round-4 H7): "low" / "reduced" / flag L do not
    explicit_intermediate_words: tuple[str, ...] = ()
    # labels that name the laboratory's normal range in a range sent as text ("Reference range: 30-50") (round-15 H2)
    range_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Transfusion:
    """Round-17 M7: a red-cell transfusion recorded as a Procedure done (these codes, by system) makes a TPMT
    red-cell activity measured within ``window_days`` after it unreliable (donor cells: falsely normal)."""

    window_days: int
    window_source: str
    snomed: tuple[str, ...]
    source: str
    cpt: tuple[str, ...] = ()
    # round-19 H2: ICD-10-PCS codes (table 302, nonautologous red cells / whole blood), under these system identifiers
    icd10pcs: tuple[str, ...] = ()
    icd10pcs_source: str = ""
    icd10pcs_systems: tuple[str, ...] = ()
    icd10pcs_systems_source: str = ""
    # round-19 H2: a Procedure with no listed code and no ICD-10-PCS code counts when its text or coding displays
    # name a transfusion (``words``) and not only another component (``other_component_words``, no ``red_cell_words``)
    words: tuple[str, ...] = ()
    red_cell_words: tuple[str, ...] = ()
    other_component_words: tuple[str, ...] = ()
    # round-20 H2: a text naming a red-cell product counts on its own; one naming red cells, with a word of giving
    red_cell_product_words: tuple[str, ...] = ()
    # round-20 H2: generic SNOMED CT transfusion concepts: count unless the words name only another component
    snomed_generic: tuple[str, ...] = ()
    given_words: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class TpmtActivity:
    source: str
    units: Mapping[str, ActivityUnit]
    interpretation: ActivityInterpretation
    sources: tuple[str, ...] = ()
    transfusion: Transfusion | None = None


@dataclass(frozen=True)
class Aih:
    """Autoimmune hepatitis: the bilirubin start condition (EASL 2015, AASLD 2019)."""

    source: str
    bilirubin_below_umol: float
    bilirubin_below_mg_dl: float
    bilirubin_loinc: str
    bilirubin_display: str
    bilirubin_max_age_days: int
    bilirubin_max_age_source: str
    reason: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ThioguanineLiver:
    """Thioguanine long term: falling platelets and diagnoses of liver toxicity (Tabloid label, WARNINGS)."""

    source: str
    platelet_fall_fraction: float
    platelet_fall_source: str
    platelet_window_days: int
    toxicity_snomed: tuple[str, ...]
    toxicity_icd10: tuple[str, ...]
    sign_snomed: tuple[str, ...]
    sign_icd10: tuple[str, ...]
    toxicity_source: str
    sources: tuple[str, ...] = ()
    # indications (dosing.toml keys) where a first thioguanine order with no duration gets an info note that the
    # label does not recommend long-term continuous use (round-8 m5: ALL, where the label reports liver toxicity in
    # children on maintenance); open_course_source names the primary source
    open_course_indications: tuple[str, ...] = ()
    open_course_source: str = ""


@dataclass(frozen=True)
class LabFlags:
    """The laboratory's own flags (HL7 v2-0078 codes, and words in its interpretation text) by kind."""

    source: str
    critical_low: tuple[str, ...]
    critical_high: tuple[str, ...]
    critical: tuple[str, ...]
    low: tuple[str, ...]
    high: tuple[str, ...]
    abnormal: tuple[str, ...]
    critical_words: tuple[str, ...]
    low_words: tuple[str, ...]
    high_words: tuple[str, ...]
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoldReasons:
    """Round-20 m1: which statusReason of an order on hold names a toxicity (``rules.common.dose_not_tolerated``).
    Matched case-insensitively as word starts in the reason as sent; a reason with no letters (a code only) cannot
    be read and counts as one that may name a toxicity, as does a hold with no reason."""

    source: str
    toxic_words: tuple[str, ...]
    sources: tuple[str, ...] = ()
    # round-21 H1: only a reason naming one of these (and no toxic word) is a hold for another reason; any other text
    # ("ANC 0.6 - held", "per haematology", "unwell") may be a toxicity
    benign_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plausible:
    """Per analyte (canonical units of ``fhir_mappers/codes.toml``), the range outside which a laboratory
    value is a recording error (``rules/plausibility.py``); an analyte not named is not checked."""

    source: str
    wbc: tuple[float, float] | None = None
    neutrophils: tuple[float, float] | None = None
    neutrophils_percent: tuple[float, float] | None = None
    lymphocytes: tuple[float, float] | None = None
    platelets: tuple[float, float] | None = None
    hemoglobin: tuple[float, float] | None = None
    mcv: tuple[float, float] | None = None
    alt: tuple[float, float] | None = None
    ast: tuple[float, float] | None = None
    alp: tuple[float, float] | None = None
    bilirubin: tuple[float, float] | None = None
    albumin: tuple[float, float] | None = None
    creatinine: tuple[float, float] | None = None

    def limits(self) -> Mapping[str, tuple[float, float]]:
        """analyte -> (low, high) for every analyte named (built once: the knowledge does not change)."""
        return self._limits

    @cached_property
    def _limits(self) -> Mapping[str, tuple[float, float]]:
        return types.MappingProxyType({f.name: (float(v[0]), float(v[1])) for f in fields(self)
                                       if f.name != "source" and (v := getattr(self, f.name)) is not None})


@dataclass(frozen=True)
class MonitoringFile:
    meta: Meta
    cbc: Cbc
    cytopenia: Cytopenia
    severe_cytopenia: SevereCytopenia
    liver: Liver
    metabolites: Metabolites
    tpmt_activity: TpmtActivity
    aih: Aih
    thioguanine_liver: ThioguanineLiver
    lab_flags: LabFlags
    plausible: Plausible | None = None
    hold: HoldReasons | None = None  # None: every hold reads as one that may name a toxicity (never tolerated)


# ------------------------------------------------------------------ populations.toml

@dataclass(frozen=True)
class PregnancyTest:
    """round-5 H4: how a pregnancy test (hCG, fhir_mappers analyte ``hcg``) is read: positive / negative by its coded
    answer, words or the laboratory's flag; a number by the laboratory's range, else the cited cut-offs (mIU/mL =
    IU/L); anything else cannot be read and is reported."""

    source: str
    positive_at: float  # a value at or above it is positive (mIU/mL), without a positive flag or range
    positive_source: str
    negative_below: float  # a value below it is negative (mIU/mL), when the laboratory sent no range
    negative_source: str
    positive_codes: tuple[str, ...]  # "system|code" of coded answers / interpretations that mean positive
    negative_codes: tuple[str, ...]
    codes_source: str
    positive_flags: tuple[str, ...]  # interpretation codes (beyond H / HH / A / AA, rules.common.lab_flag)
    negative_flags: tuple[str, ...]
    positive_words: tuple[str, ...]
    negative_words: tuple[str, ...]
    unclear_words: tuple[str, ...]  # "equivocal", "indeterminate", "invalid": reported, never read
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ByIndication:
    """Round-19 M1: a specialty's own advice on pregnancy or breastfeeding for the thiopurines it names, by indication
    (IBD: ECCO 2015, AGA 2019 treat azathioprine and mercaptopurine alike), in place of ACR 2020 (rheumatology)."""

    indications: tuple[str, ...]  # dosing.toml [indications.<key>]
    drugs: tuple[str, ...]
    source: str
    sources: tuple[str, ...] = ()
    established_indicator: Level = "info"  # a thiopurine the patient takes (renewal, active order)
    new_start_indicator: Level = "warning"  # a thiopurine newly started


@dataclass(frozen=True)
class Pregnancy:
    pregnancy_status_loinc: str
    pregnant_snomed: tuple[str, ...]
    condition_snomed: tuple[str, ...]
    condition_icd10: tuple[str, ...]
    condition_icd10_source: str
    source: str
    status_max_age_days: int  # an older "pregnant" status cannot be current (longest pregnancy ~42 weeks)
    status_max_age_source: str
    sources: tuple[str, ...] = ()
    # round-4 M2: the drugs ACR 2020 names compatible with pregnancy (info card); the others' labels warn of fetal harm
    compatible_drugs: tuple[str, ...] = ("azathioprine",)
    not_compatible_indicator: Level = "warning"
    label_sources: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: types.MappingProxyType({}))
    test: PregnancyTest | None = None  # round-5 H4: a positive hCG is pregnancy
    ibd: ByIndication | None = None  # round-19 M1: inflammatory bowel disease, the IBD guidelines' advice


@dataclass(frozen=True)
class Breastfeeding:
    status_loinc: str
    condition_snomed: tuple[str, ...]
    condition_icd10: tuple[str, ...]
    source: str
    sources: tuple[str, ...] = ()
    compatible_drugs: tuple[str, ...] = ()  # ACR 2020: compatible with breastfeeding (card: compatible_indicator)
    compatible_indicator: Level = "info"
    ibd: ByIndication | None = None  # round-19 M1: inflammatory bowel disease, the IBD guidelines' advice


@dataclass(frozen=True)
class BySex:
    female: float
    male: float
    source: str


@dataclass(frozen=True)
class CkdEpi2021:
    """The CKD-EPI 2021 creatinine equation (race-free): eGFR when only a creatinine is reported."""

    source: str
    scale: float
    age_factor: float
    female_factor: float
    upper_exponent: float
    kappa: BySex
    alpha: BySex
    adult_age: int
    umol_per_mg_dl: float


@dataclass(frozen=True)
class RenalDrug:
    """Round-17 H2: one thiopurine's own renal cut-off and advice, from its label (populations.toml
    [renal.drugs.<drug>]); a drug not listed keeps [renal] egfr_below and the qualitative advice."""
    egfr_below: float
    source: str
    lowest_start_mg_per_m2: float | None = None  # the label's lowest recommended starting dose (oncology, per m2)
    lowest_start_mg_per_kg: float | None = None  # the same per kg (no height)
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Renal:
    egfr_below: float
    aki_snomed: tuple[str, ...]
    aki_icd10: tuple[str, ...]
    source: str
    ckd_epi_2021: CkdEpi2021  # eGFR from creatinine when none is reported
    sources: tuple[str, ...] = ()
    # kidney failure / CKD stage 4-5 / dialysis dependence as a coded diagnosis (round-5 H2)
    kidney_failure_snomed: tuple[str, ...] = ()
    kidney_failure_icd10: tuple[str, ...] = ()
    kidney_failure_snomed_source: str = ""
    kidney_failure_icd10_source: str = ""
    kidney_failure_source: str = ""
    drugs: Mapping[str, RenalDrug] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True)
class Elderly:
    age_at_least: int
    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hypersensitivity:
    ingredients: tuple[str, ...]
    source: str
    sources: tuple[str, ...] = ()
    severe_words: tuple[str, ...] = ()  # reaction words that make a record a hypersensitivity (critical)
    gi_words: tuple[str, ...] = ()  # gastrointestinal intolerance (a warning)
    excluded_verification: tuple[str, ...] = ()  # verificationStatus codes set aside
    inactive_status: tuple[str, ...] = ()  # clinicalStatus codes that make a record inactive (info)


@dataclass(frozen=True)
class Children:
    age_below: int
    weight_windows: tuple[tuple[int, int], ...]  # (age below, weight window in days), first match wins
    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class PopulationsFile:
    meta: Meta
    pregnancy: Pregnancy
    breastfeeding: Breastfeeding
    renal: Renal
    elderly: Elderly
    hypersensitivity: Hypersensitivity
    intolerance: Cited
    inactive: Cited
    children: Children


# file stem -> its dataclass (sources.toml and catalogue.toml are read by their own loaders)
FILES: dict[str, type] = {
    "pgx": PgxFile,
    "dosing": DosingFile,
    "interactions": InteractionsFile,
    "monitoring": MonitoringFile,
    "populations": PopulationsFile,
}


# ------------------------------------------------------------------ building


def _table(where: tuple[str, ...]) -> str:
    return f"[{'.'.join(where)}]" if where else "(top level)"


def build(cls: type, raw: Any, file: str, where: tuple[str, ...] = ()) -> Any:
    """``raw`` (a parsed TOML table) as an instance of the dataclass ``cls``; KnowledgeError on the
    first key that is unknown, missing or of the wrong type."""
    if not isinstance(raw, dict):
        raise KnowledgeError(f"{file} {_table(where)}: expected a table, got {_kind(raw)}")
    hints = get_type_hints(cls)
    names = {f.name: f for f in fields(cls) if f.init}
    for key in raw:
        if key not in names:
            raise KnowledgeError(f"{file} {_table(where)}: unknown key {key!r} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, fld in names.items():
        if name not in raw:
            if fld.default is MISSING and fld.default_factory is MISSING:
                raise KnowledgeError(f"{file} {_table(where)}: missing key {name!r}")
            continue
        kwargs[name] = _value(hints[name], raw[name], file, where, name)
    return cls(**kwargs)


def _value(tp: Any, raw: Any, file: str, where: tuple[str, ...], key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if raw is None:
            return None
        return _value(options[0], raw, file, where, key)
    if origin is Literal:
        if raw not in get_args(tp):
            raise KnowledgeError(f"{file} {_table(where)}: key {key!r}: expected one of "
                                 f"{', '.join(repr(a) for a in get_args(tp))}, got {raw!r}")
        return raw
    if is_dataclass(tp):
        return build(tp, raw, file, (*where, key))  # type: ignore[arg-type]
    if tp is Any:
        return raw
    if origin in (Mapping, dict) or origin is typing.Mapping:
        if not isinstance(raw, dict):
            raise _wrong(file, where, key, "a table", raw)
        _, vt = get_args(tp)
        return types.MappingProxyType({k: _value(vt, v, file, (*where, key), k) for k, v in raw.items()})
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(raw, list):
            raise _wrong(file, where, key, "a list", raw)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, file, where, key) for v in raw)
        if len(raw) != len(args):
            raise KnowledgeError(f"{file} {_table(where)}: key {key!r}: expected {len(args)} items, got {len(raw)}")
        return tuple(_value(a, v, file, where, key) for a, v in zip(args, raw, strict=True))
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise _wrong(file, where, key, "a number", raw)
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _wrong(file, where, key, "a whole number", raw)
        return raw
    if tp is bool:
        if not isinstance(raw, bool):
            raise _wrong(file, where, key, "true or false", raw)
        return raw
    if tp is str:
        if not isinstance(raw, str):
            raise _wrong(file, where, key, "a string", raw)
        return raw
    raise TypeError(f"knowledge schema: unsupported type {tp!r} for {key}")  # a bug here, not in the data


def _kind(raw: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "true/false"}.get(type(raw), type(raw).__name__)


def _wrong(file: str, where: tuple[str, ...], key: str, expected: str, raw: Any) -> KnowledgeError:
    return KnowledgeError(f"{file} {_table(where)}: key {key!r}: expected {expected}, got {_kind(raw)}")


def other_rule_id(key: str) -> str:
    """The rule id of interactions.toml [others.<key>]: ``interaction-<key>``, underscores as hyphens (a naming rule
    of the data, here so that both the catalogue's start-up check and the interaction rules read it)."""
    return f"interaction-{key.replace('_', '-')}"
