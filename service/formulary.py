"""Formularies and companion-diagnostic tables: strict loaders and plain lookups.

Three kinds of knowledge file, each under its own folder of `knowledge/`:

* `knowledge/formularies/*.yaml`, `kind: formulary`: one insurance plan per
  file (status, tier, price, payment restriction, prior authorisation,
  quantity limit, therapeutic-interchange groups), plus one
  `kind: formulary-settings` file with the `default_plan` used when a patient
  has no Coverage on file. Plans here are demonstration data and must say so.
* `knowledge/cdx/*.yaml`, `kind: companion-diagnostics`: biomarkers (how a
  result is recognised in FHIR) and the targeted therapies that require them.
* `knowledge/cdx/*.yaml`, `kind: test-ordering`: the somatic repeat window
  and the large-panel / genome tests that need a qualifying diagnosis.

Loaders run once per rule-set build (after drugs and value sets, which they
refer to) and report every problem with file, line and reason; nothing
half-loaded is used. Everything here is pure lookup and arithmetic: the
decisions (does this patient meet the restriction?) live in
`service/engine/coverage.py`. See `rules/coverage-and-cdx.md`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import codes
from .errors import PackError, Problem
from .yamlsrc import LocatedDict, LocatedList, load_yaml, locate

if TYPE_CHECKING:  # pragma: no cover
    from .knowledge import Knowledge

LocalText = dict[str, str]

#: Da Vinci US Drug Formulary drug-tier codes (usdf-DrugTierCS). The value set is
#: extensible, so NRDL plans use their own tier codes (甲/乙/自费) instead.
DAVINCI_TIERS = frozenset({
    "generic", "preferred", "non-preferred", "preferred-generic", "non-preferred-generic", "specialty",
    "brand", "preferred-brand", "non-preferred-brand", "zero-cost-share-preventative", "medical-service",
})
STATUSES = ("covered", "restricted", "not-covered")
CURRENCY_SYMBOL = {"CNY": "¥", "USD": "$"}


# ---------------------------------------------------------------------------
# Formulary model
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    code: str
    display: LocalText
    first_pay: float | None = None  # NRDL: share the patient pays first, before the fund splits the rest
    copay: float | None = None  # fixed amount per fill (US style)
    coinsurance: float | None = None  # share of the price the patient pays


@dataclass(frozen=True, slots=True)
class Criterion:
    """One machine-checkable part of a payment restriction."""

    kind: str  # diagnosis | biomarker | prior_therapy | bmi | prescriber
    label: LocalText | None = None
    matcher: codes.CodeMatcher | None = None  # diagnosis, prior therapy, prescriber codes
    keys: tuple[str, ...] = ()
    biomarkers: tuple[str, ...] = ()
    within_days: int | None = None
    new_starts_only: bool = False
    compare: dict[str, float] | None = None  # bmi


@dataclass(frozen=True, slots=True)
class Restriction:
    """A payment restriction: the text as published plus the criteria a machine can check."""

    text: LocalText  # original wording (and a translation); quoted on cards
    original: str  # locale of the original wording
    source: str | None
    demonstration: bool  # the text is written for the demonstration plan, not quoted from a list
    criteria: tuple[Criterion, ...]
    to_confirm: tuple[LocalText, ...]  # parts that cannot be checked from the record


@dataclass(frozen=True, slots=True)
class PriorAuth:
    documents: LocalText
    new_starts_only: bool = False


@dataclass(frozen=True, slots=True)
class QuantityLimit:
    quantity: float
    days: int
    max_daily: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    amount: float
    unit: LocalText


@dataclass(frozen=True, slots=True)
class FormularyItem:
    drug: str  # ingredient or product key (a product entry wins over its ingredient)
    status: str
    tier: str | None
    price: Price | None
    restriction: Restriction | None
    prior_auth: PriorAuth | None
    quantity_limit: QuantityLimit | None
    group: str | None
    vbp: bool
    note: LocalText | None
    line: int


@dataclass(frozen=True, slots=True)
class InterchangeGroup:
    id: str
    title: LocalText
    members: tuple[str, ...]
    preferred: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    title: LocalText
    notice: LocalText
    currency: str
    tier_system: str
    fund_share: float
    tiers: dict[str, Tier]
    items: dict[str, FormularyItem]
    groups: dict[str, InterchangeGroup]
    aliases: tuple[str, ...]
    new_start_lookback_days: int
    file: str
    version: str

    def tier_display(self, code: str | None) -> LocalText:
        tier = self.tiers.get(code or "")
        return tier.display if tier else {"en": code or "-", "zh-CN": code or "-"}

    def cost(self, item: FormularyItem, quantity: float, covered: bool) -> float | None:
        """Estimated patient cost for `quantity` units; `covered=False` means the patient pays all."""
        if item.price is None:
            return None
        total = item.price.amount * quantity
        if not covered or item.status == "not-covered":
            return total
        tier = self.tiers.get(item.tier or "")
        if tier is None:
            return total
        if tier.copay is not None:
            return min(tier.copay, total)
        if tier.coinsurance is not None:
            return total * tier.coinsurance
        first = (tier.first_pay or 0.0) * total
        return first + (total - first) * (1.0 - self.fund_share)

    def money(self, amount: float | None, locale: str) -> LocalText | str:
        if amount is None:
            return {"en": "no price on file", "zh-CN": "无价格信息"}
        symbol = CURRENCY_SYMBOL.get(self.currency, self.currency + " ")
        return f"{symbol}{amount:,.2f}"


@dataclass(slots=True)
class Formularies:
    plans: dict[str, Plan] = field(default_factory=dict)
    default_plan: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    def plan_for(self, plan_id: str | None) -> tuple[Plan | None, str]:
        """The patient's plan (from Coverage) or the configured default; source is coverage|default|none."""
        if plan_id is not None:
            key = self.aliases.get(plan_id, plan_id)
            return self.plans.get(key), "coverage"
        if self.default_plan:
            return self.plans.get(self.default_plan), "default"
        return None, "none"


def item_for(plan: Plan, own_codes: frozenset[str], concepts: frozenset[str]) -> FormularyItem | None:
    """The plan's entry for an order: a product entry for one of the order's own codes, else its ingredient."""
    for key in sorted(own_codes):
        item = plan.items.get(key)
        if item is not None:
            return item
    for key in sorted(concepts):
        item = plan.items.get(key)
        if item is not None:
            return item
    return None


def allowed_quantity(limit: QuantityLimit, days_supply: float | None) -> float:
    """Most units the limit allows for an order of this many days (rolling window, max daily)."""
    days = days_supply if days_supply and days_supply > 0 else float(limit.days)
    allowed = limit.quantity * max(1.0, days / limit.days)
    if limit.max_daily is not None:
        allowed = min(allowed, limit.max_daily * days)
    return float(math.floor(allowed + 1e-9))


# ---------------------------------------------------------------------------
# Companion-diagnostic model
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    label: LocalText
    match: tuple[str, ...]  # normalised text fragments (see `normalise_variant`)
    codes: frozenset[str]  # variant-specific result codes (LOINC presence terms)


@dataclass(frozen=True, slots=True)
class Biomarker:
    id: str
    name: LocalText
    genes: tuple[str, ...]
    hgnc: dict[str, str]  # "hgnc:HGNC:3236" -> "EGFR"
    mode: str  # alteration | wild-type | expression
    variants: tuple[Variant, ...]  # empty: any reported alteration of the gene qualifies
    any_alteration: bool
    significance: tuple[str, ...]  # words a variant's clinical significance must contain (e.g. pathogenic)
    result_codes: frozenset[str]
    percent_codes: frozenset[str]
    percent_min: float | None
    scores: dict[str, frozenset[str]]  # IHC: positive / equivocal / negative -> {"3+", ...}
    tests: tuple[tuple[str, LocalText], ...]  # LOINC order code(s) and display of the test to suggest
    origin: str  # somatic | germline | either
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Therapy:
    drug: str
    biomarkers: tuple[str, ...]
    indication: codes.CodeMatcher | None
    indication_label: LocalText | None
    percent_min: float | None
    source: str
    note: LocalText | None


@dataclass(frozen=True, slots=True)
class LargeTest:
    id: str
    codes: frozenset[str]
    name: LocalText
    scope: str  # large-panel | genome
    indication: codes.CodeMatcher
    indication_label: LocalText


@dataclass(slots=True)
class CompanionDiagnostics:
    biomarkers: dict[str, Biomarker] = field(default_factory=dict)
    therapies: dict[str, list[Therapy]] = field(default_factory=dict)  # by drug key
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    somatic_repeat_window_days: int | None = None
    large_tests: list[LargeTest] = field(default_factory=list)

    def therapies_for(self, concepts: frozenset[str]) -> list[Therapy]:
        out: list[Therapy] = []
        for key in sorted(concepts):
            out.extend(self.therapies.get(key, ()))
        return out

    def biomarkers_for_test(self, order_codes: frozenset[str]) -> list[Biomarker]:
        """Biomarkers whose test or result codes the ordered ServiceRequest carries."""
        return [b for b in self.biomarkers.values()
                if any(code in order_codes for code, _ in b.tests) or b.result_codes & order_codes or b.percent_codes & order_codes
                or any(v.codes & order_codes for v in b.variants)]

    def large_test_for(self, order_codes: frozenset[str]) -> LargeTest | None:
        return next((t for t in self.large_tests if t.codes & order_codes), None)


def normalise_variant(text: str) -> str:
    """'p.(Leu858Arg)' -> 'leu858arg'; 'Exon 19 deletion' -> 'exon19deletion' (for substring matching)."""
    lowered = text.lower()
    for junk in (" ", "\t", "(", ")", "_", "-", ",", ";"):
        lowered = lowered.replace(junk, "")
    return lowered.replace("p.", "").replace("c.", "")


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


class _Out:
    def __init__(self, rel: str, doc: Any, problems: list[Problem]) -> None:
        self.rel, self.doc, self.problems = rel, doc, problems

    def add(self, path: list[str | int], reason: str, check: str = "formulary") -> None:
        line, col = locate(self.doc, path)
        self.problems.append(Problem(self.rel, line, col, reason, check=check))


def _text(value: Any) -> LocalText | None:
    if isinstance(value, str) and value.strip():
        return {"en": value}
    if isinstance(value, dict) and value and all(isinstance(v, str) and v.strip() for v in value.values()):
        if not set(value) <= {"en", "zh-CN"}:
            return None
        return {str(k): str(v) for k, v in value.items()}
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _codes_of(spec: Any, out: _Out, path: list[str | int], knowledge: "Knowledge", what: str) -> list[str] | None:
    """Codes from `codes:` and `valueset:` of a criterion; None (with problems) when something is unknown."""
    if not isinstance(spec, dict):
        out.add(path, f"'{what}' must be a mapping with 'codes' and/or 'valueset'")
        return None
    keys: list[str] = []
    ok = True
    for i, key in enumerate(spec.get("codes", []) or []):
        reason = codes.check(key) if isinstance(key, str) else "a code must be a string 'system:code'"
        if reason:
            out.add([*path, "codes", i], reason, "code")
            ok = False
        else:
            keys.append(key)
    vs = spec.get("valueset")
    names = [vs] if isinstance(vs, str) else list(vs or [])
    for i, name in enumerate(names):
        found = knowledge.valuesets.get(name) if isinstance(name, str) else None
        if found is None:
            where = [*path, "valueset"] if isinstance(vs, str) else [*path, "valueset", i]
            out.add(where, f"unknown value set '{name}' (knowledge/valuesets)", "unknown-reference")
            ok = False
        else:
            keys.extend(found.codes)
    if ok and not keys:
        out.add(path, f"'{what}' needs 'codes' or 'valueset'")
        return None
    return keys if ok else None


def _drug_known(knowledge: "Knowledge", key: Any) -> bool:
    return isinstance(key, str) and (key in knowledge.drugs or key in knowledge.concept_index)


def _documents(folder: Path, base: Path, problems: list[Problem]) -> Iterator[tuple[str, Any, "_Out"]]:
    """Each YAML file under `folder` as (name, document, problem collector); unreadable ones become problems."""
    for path in sorted(folder.rglob("*.yaml")):
        rel = str(path.relative_to(base))
        try:
            doc = load_yaml(path, rel)
        except PackError as exc:
            problems.extend(exc.problems)
            continue
        yield rel, doc, _Out(rel, doc, problems)


def load_formularies(folder: Path, knowledge: "Knowledge", base: Path) -> tuple[Formularies, list[Problem]]:
    """Every `kind: formulary` / `formulary-settings` file under `folder`, validated against `knowledge`."""
    result = Formularies()
    problems: list[Problem] = []
    settings: list[tuple[_Out, LocatedDict]] = []
    for rel, doc, out in _documents(folder, base, problems):
        if not isinstance(doc, LocatedDict) or doc.get("kind") not in ("formulary", "formulary-settings"):
            out.add(["kind"], "a file in knowledge/formularies/ needs 'kind: formulary' or 'kind: formulary-settings'")
            continue
        knowledge.files[rel] = str(doc.get("version", ""))
        if doc["kind"] == "formulary-settings":
            settings.append((out, doc))
            continue
        plan = _load_plan(doc, out, knowledge)
        if plan is None:
            continue
        if plan.id in result.plans:
            out.add(["id"], f"plan '{plan.id}' is defined twice (also in {result.plans[plan.id].file})")
            continue
        result.plans[plan.id] = plan
        for alias in plan.aliases:
            result.aliases[alias] = plan.id
    for out, doc in settings:
        if "default_plan" not in doc:
            out.add([], "formulary settings need 'default_plan' (a plan id, or null for no default)")
            continue
        default = doc.get("default_plan")
        if default is not None and default not in result.plans:
            out.add(["default_plan"], f"default plan '{default}' is not a plan in knowledge/formularies/", "unknown-reference")
            continue
        if result.default_plan is not None and default != result.default_plan:
            out.add(["default_plan"], "a second formulary-settings file sets another default plan")
            continue
        result.default_plan = default
    return result, problems


def _load_plan(doc: LocatedDict, out: _Out, knowledge: "Knowledge") -> Plan | None:
    before = len(out.problems)
    pid = doc.get("id")
    if not isinstance(pid, str) or not pid:
        out.add(["id"], "a formulary needs an 'id' (the plan value sent in Coverage.class)")
        return None
    if doc.get("demonstration") is not True:
        out.add(["demonstration"], "this formulary must say 'demonstration: true': only demonstration plans ship with precision-cds")
    title, notice = _text(doc.get("title")), _text(doc.get("notice"))
    if title is None:
        out.add(["title"], "'title' needs text in 'en' (and 'zh-CN')")
    if notice is None:
        out.add(["notice"], "'notice' (the demonstration-data statement shown on cards) needs text in 'en' and 'zh-CN'")
    currency = doc.get("currency")
    if currency not in CURRENCY_SYMBOL:
        out.add(["currency"], f"'currency' must be one of {', '.join(CURRENCY_SYMBOL)}")
    tier_system = doc.get("tier_system")
    if tier_system not in ("nrdl", "davinci"):
        out.add(["tier_system"], "'tier_system' must be 'nrdl' (甲/乙/自费 categories) or 'davinci' (Da Vinci drug-tier codes)")
    fund_share = _number(doc.get("fund_share", 0.0))
    if fund_share is None or not 0.0 <= fund_share <= 1.0:
        out.add(["fund_share"], "'fund_share' must be a number between 0 and 1")
        fund_share = 0.0
    sources = {s.get("id") for s in doc.get("sources", []) or [] if isinstance(s, dict)}
    tiers = _load_tiers(doc, out, tier_system)
    items_doc = doc.get("items")
    items: dict[str, FormularyItem] = {}
    if not isinstance(items_doc, LocatedList) or not items_doc:
        out.add(["items"], "'items' must be a non-empty list of formulary entries")
        items_doc = LocatedList()
    for i, entry in enumerate(items_doc):
        item = _load_item(entry, ["items", i], out, knowledge, tiers, sources)
        if item is None:
            continue
        if item.drug in items:
            out.add(["items", i, "drug"], f"drug {item.drug} is listed twice in this plan")
            continue
        items[item.drug] = item
    groups: dict[str, InterchangeGroup] = {}
    for i, entry in enumerate(doc.get("groups", []) or []):
        group = _load_group(entry, ["groups", i], out, items)
        if group is not None:
            if group.id in groups:
                out.add(["groups", i, "id"], f"group '{group.id}' is defined twice")
            groups[group.id] = group
    for i, entry in enumerate(items_doc):
        gid = entry.get("group") if isinstance(entry, dict) else None
        if gid is not None and gid not in groups:
            out.add(["items", i, "group"], f"interchange group '{gid}' is not defined in this plan's 'groups'", "unknown-reference")
        elif gid is not None and entry.get("drug") not in groups[gid].members:
            out.add(["items", i, "group"], f"drug {entry.get('drug')} is not a member of group '{gid}'")
    lookback = doc.get("new_start_lookback_days", 365)
    if not isinstance(lookback, int) or lookback < 1:
        out.add(["new_start_lookback_days"], "'new_start_lookback_days' must be a positive integer")
        lookback = 365
    if len(out.problems) != before or title is None or notice is None:
        return None
    return Plan(
        id=pid, title=title, notice=notice, currency=str(currency), tier_system=str(tier_system),
        fund_share=float(fund_share), tiers=tiers, items=items, groups=groups,
        aliases=tuple(str(a) for a in doc.get("aliases", []) or []), new_start_lookback_days=lookback,
        file=out.rel, version=str(doc.get("version", "")),
    )


def _load_tiers(doc: LocatedDict, out: _Out, system: Any) -> dict[str, Tier]:
    tiers: dict[str, Tier] = {}
    entries = doc.get("tiers")
    if not isinstance(entries, LocatedList) or not entries:
        out.add(["tiers"], "'tiers' must list the plan's tiers with their cost sharing")
        return tiers
    for i, entry in enumerate(entries):
        where: list[str | int] = ["tiers", i]
        code = entry.get("code") if isinstance(entry, dict) else None
        display = _text(entry.get("display")) if isinstance(entry, dict) else None
        if not isinstance(code, str) or display is None:
            out.add(where, "each tier needs 'code' and 'display'")
            continue
        if system == "davinci" and code not in DAVINCI_TIERS:
            out.add([*where, "code"], f"'{code}' is not a Da Vinci drug-tier code (known: {', '.join(sorted(DAVINCI_TIERS))})")
            continue
        shares = {k: _number(entry.get(k)) for k in ("first_pay", "copay", "coinsurance") if k in entry}
        if len(shares) != 1 or any(v is None or v < 0 for v in shares.values()):
            out.add(where, "each tier needs exactly one of 'first_pay' (share), 'copay' (amount) or 'coinsurance' (share)")
            continue
        if any(k != "copay" and v is not None and v > 1 for k, v in shares.items()):
            out.add(where, "'first_pay' and 'coinsurance' are shares between 0 and 1")
            continue
        tiers[code] = Tier(code, display, shares.get("first_pay"), shares.get("copay"), shares.get("coinsurance"))
    return tiers


def _load_item(entry: Any, where: list[str | int], out: _Out, knowledge: "Knowledge",
               tiers: dict[str, Tier], sources: set[Any]) -> FormularyItem | None:
    if not isinstance(entry, dict):
        out.add(where, "each formulary entry must be a mapping")
        return None
    before = len(out.problems)
    drug = entry.get("drug")
    reason = codes.check(drug) if isinstance(drug, str) else "each entry needs 'drug' (an ingredient or product code)"
    if reason:
        out.add([*where, "drug"], reason, "code")
        return None
    if not _drug_known(knowledge, drug):
        out.add([*where, "drug"], f"unknown drug code {drug}: not an ingredient or product in knowledge/drugs", "unknown-reference")
    status = entry.get("status")
    if status not in STATUSES:
        out.add([*where, "status"], f"'status' must be one of {', '.join(STATUSES)}")
    tier = entry.get("tier")
    if tier is not None and tier not in tiers:
        out.add([*where, "tier"], f"tier '{tier}' is not one of this plan's tiers ({', '.join(tiers)})", "unknown-reference")
    if tier is None and status in ("covered", "restricted"):
        out.add([*where, "tier"], "a covered or restricted drug needs a 'tier'")
    price: Price | None = None
    if "price" in entry:
        p = entry["price"]
        amount = _number(p.get("amount")) if isinstance(p, dict) else None
        unit = _text(p.get("unit")) if isinstance(p, dict) else None
        if amount is None or amount < 0 or unit is None:
            out.add([*where, "price"], "'price' needs 'amount' (per unit, demonstration) and 'unit'")
        else:
            price = Price(amount, unit)
    restriction = None
    if "restriction" in entry:
        if status != "restricted":
            out.add([*where, "restriction"], "only a drug with status 'restricted' has a restriction")
        restriction = _load_restriction(entry["restriction"], [*where, "restriction"], out, knowledge, sources)
    elif status == "restricted":
        out.add([*where, "status"], "a restricted drug needs a 'restriction' (text and criteria)")
    prior_auth = None
    if "prior_auth" in entry:
        pa = entry["prior_auth"]
        docs = _text(pa.get("documents")) if isinstance(pa, dict) else None
        if docs is None:
            out.add([*where, "prior_auth"], "'prior_auth' needs 'documents' (what to submit, en and zh-CN)")
        else:
            prior_auth = PriorAuth(docs, bool(pa.get("new_starts_only", False)))
    limit = None
    if "quantity_limit" in entry:
        q = entry["quantity_limit"]
        qty = _number(q.get("quantity")) if isinstance(q, dict) else None
        days = q.get("days") if isinstance(q, dict) else None
        daily = _number(q.get("max_daily")) if isinstance(q, dict) and "max_daily" in q else None
        if qty is None or qty <= 0 or not isinstance(days, int) or days < 1 or (isinstance(q, dict) and "max_daily" in q and not daily):
            out.add([*where, "quantity_limit"], "'quantity_limit' needs 'quantity' (> 0) per 'days' (integer), optional 'max_daily'")
        else:
            limit = QuantityLimit(qty, days, daily)
    if len(out.problems) != before:
        return None
    line = locate(out.doc, where)[0]
    return FormularyItem(
        drug=str(drug), status=str(status), tier=tier, price=price, restriction=restriction, prior_auth=prior_auth,
        quantity_limit=limit, group=entry.get("group"), vbp=bool(entry.get("vbp", False)), note=_text(entry.get("note")),
        line=line,
    )


def _load_restriction(spec: Any, where: list[str | int], out: _Out, knowledge: "Knowledge", sources: set[Any]) -> Restriction | None:
    if not isinstance(spec, dict):
        out.add(where, "'restriction' must be a mapping with 'text' and criteria")
        return None
    text = _text(spec.get("text"))
    original = spec.get("original", "zh-CN")
    if text is None or original not in text:
        out.add([*where, "text"], "'text' needs the restriction as published (in 'original', default zh-CN) and an 'en' translation")
        return None
    source = spec.get("source")
    if source is not None and source not in sources:
        out.add([*where, "source"], f"source '{source}' is not listed in this formulary's 'sources'", "unknown-reference")
    criteria: list[Criterion] = []
    if "diagnosis" in spec:
        keys = _codes_of(spec["diagnosis"], out, [*where, "diagnosis"], knowledge, "diagnosis")
        if keys is not None:
            criteria.append(Criterion("diagnosis", _text(spec["diagnosis"].get("label")), codes.CodeMatcher(keys), tuple(keys)))
    if "biomarker" in spec:
        ids = spec["biomarker"] if isinstance(spec["biomarker"], list) else [spec["biomarker"]]
        cdx = knowledge.cdx
        for i, bid in enumerate(ids):
            if cdx is None or bid not in cdx.biomarkers:
                path = [*where, "biomarker"] if not isinstance(spec["biomarker"], list) else [*where, "biomarker", i]
                out.add(path, f"unknown biomarker '{bid}' (knowledge/cdx biomarkers)", "unknown-reference")
        criteria.append(Criterion("biomarker", None, biomarkers=tuple(str(b) for b in ids)))
    if "prior_therapy" in spec:
        pt = spec["prior_therapy"]
        keys = _codes_of(pt, out, [*where, "prior_therapy"], knowledge, "prior_therapy")
        within = pt.get("within_days") if isinstance(pt, dict) else None
        if within is not None and (not isinstance(within, int) or within < 1):
            out.add([*where, "prior_therapy", "within_days"], "'within_days' must be a positive integer")
            keys = None
        if keys is not None:
            for i, key in enumerate(pt.get("codes", []) or []):
                if key.startswith("rxnorm:") and knowledge.drug(key) is None:
                    out.add([*where, "prior_therapy", "codes", i], f"unknown drug code {key} in knowledge/drugs", "unknown-reference")
            criteria.append(Criterion("prior_therapy", _text(pt.get("label")), codes.CodeMatcher(keys), tuple(keys),
                                      within_days=within, new_starts_only=bool(pt.get("new_starts_only", False))))
    if "bmi" in spec:
        cmp = spec["bmi"]
        if not isinstance(cmp, dict) or not cmp or not set(cmp) <= {"gt", "gte", "lt", "lte"} or any(_number(v) is None for v in cmp.values()):
            out.add([*where, "bmi"], "'bmi' is a comparison such as {gte: 25}")
        else:
            criteria.append(Criterion("bmi", None, compare={k: float(v) for k, v in cmp.items()}))
    if "prescriber" in spec:
        pr = spec["prescriber"]
        label = _text(pr.get("label")) if isinstance(pr, dict) else None
        if label is None:
            out.add([*where, "prescriber"], "'prescriber' needs a 'label' (the qualification, en and zh-CN) and optional 'codes'")
        else:
            keys = [k for k in pr.get("codes", []) or [] if isinstance(k, str) and codes.check(k) is None]
            criteria.append(Criterion("prescriber", label, codes.CodeMatcher(keys) if keys else None, tuple(keys),
                                      new_starts_only=bool(pr.get("new_starts_only", False))))
    to_confirm: list[LocalText] = []
    for i, item in enumerate(spec.get("to_confirm", []) or []):
        t = _text(item)
        if t is None:
            out.add([*where, "to_confirm", i], "each 'to_confirm' entry is text (en and zh-CN)")
        else:
            to_confirm.append(t)
    if not criteria and not to_confirm:
        out.add(where, "a restriction needs at least one criterion (diagnosis, biomarker, prior_therapy, bmi, prescriber) or 'to_confirm'")
        return None
    return Restriction(text, str(original), source, bool(spec.get("demonstration_text", False)), tuple(criteria), tuple(to_confirm))


def _load_group(entry: Any, where: list[str | int], out: _Out, items: dict[str, FormularyItem]) -> InterchangeGroup | None:
    gid = entry.get("id") if isinstance(entry, dict) else None
    title = _text(entry.get("title")) if isinstance(entry, dict) else None
    members = entry.get("members") if isinstance(entry, dict) else None
    if not isinstance(gid, str) or title is None or not isinstance(members, list) or len(members) < 2:
        out.add(where, "each group needs 'id', 'title' and at least two 'members'")
        return None
    ok = True
    for i, key in enumerate(members):
        if key not in items:
            out.add([*where, "members", i], f"alternative {key} in group '{gid}' is not in this plan's items", "unknown-reference")
            ok = False
    preferred = entry.get("preferred", []) or []
    for i, key in enumerate(preferred):
        if key not in members:
            out.add([*where, "preferred", i], f"preferred drug {key} is not a member of group '{gid}'", "unknown-reference")
            ok = False
        elif key in items and items[key].status == "not-covered":
            out.add([*where, "preferred", i], f"preferred drug {key} is not covered by this plan")
            ok = False
    if not ok:
        return None
    return InterchangeGroup(gid, title, tuple(members), tuple(preferred))


# -- companion diagnostics ----------------------------------------------------------


def load_cdx(folder: Path, knowledge: "Knowledge", base: Path) -> tuple[CompanionDiagnostics, list[Problem]]:
    """`kind: companion-diagnostics` and `kind: test-ordering` files under `folder`."""
    result = CompanionDiagnostics()
    problems: list[Problem] = []
    therapy_docs: list[tuple[_Out, LocatedDict]] = []
    ordering_docs: list[tuple[_Out, LocatedDict]] = []
    for rel, doc, out in _documents(folder, base, problems):
        kind = doc.get("kind") if isinstance(doc, LocatedDict) else None
        if kind not in ("companion-diagnostics", "test-ordering"):
            out.add(["kind"], "a file in knowledge/cdx/ needs 'kind: companion-diagnostics' or 'kind: test-ordering'", "cdx")
            continue
        knowledge.files[rel] = str(doc.get("version", ""))
        for s in doc.get("sources", []) or []:
            if isinstance(s, dict) and isinstance(s.get("id"), str):
                result.sources[s["id"]] = {"label": str(s.get("label", s["id"])), "url": str(s.get("url", ""))}
        if kind == "test-ordering":
            ordering_docs.append((out, doc))
            continue
        for i, entry in enumerate(doc.get("biomarkers", []) or []):
            marker = _load_biomarker(entry, ["biomarkers", i], out)
            if marker is None:
                continue
            if marker.id in result.biomarkers:
                out.add(["biomarkers", i, "id"], f"biomarker '{marker.id}' is defined twice", "cdx")
                continue
            result.biomarkers[marker.id] = marker
        therapy_docs.append((out, doc))
    for out, doc in therapy_docs:
        for i, entry in enumerate(doc.get("therapies", []) or []):
            therapy = _load_therapy(entry, ["therapies", i], out, knowledge, result)
            if therapy is not None:
                result.therapies.setdefault(therapy.drug, []).append(therapy)
    for out, doc in ordering_docs:
        window = doc.get("somatic_repeat_window_days")
        if window is not None and (not isinstance(window, int) or window < 1):
            out.add(["somatic_repeat_window_days"], "'somatic_repeat_window_days' must be a positive integer", "cdx")
        else:
            result.somatic_repeat_window_days = window
        for i, entry in enumerate(doc.get("large_tests", []) or []):
            test = _load_large_test(entry, ["large_tests", i], out, knowledge)
            if test is not None:
                result.large_tests.append(test)
    return result, problems


def _load_biomarker(entry: Any, where: list[str | int], out: _Out) -> Biomarker | None:
    if not isinstance(entry, dict):
        out.add(where, "each biomarker must be a mapping", "cdx")
        return None
    before = len(out.problems)
    bid, name = entry.get("id"), _text(entry.get("name"))
    if not isinstance(bid, str) or name is None:
        out.add(where, "each biomarker needs 'id' and 'name' (en and zh-CN)", "cdx")
        return None
    genes = entry.get("genes")
    if not isinstance(genes, list) or not genes or not all(isinstance(g, str) for g in genes):
        out.add([*where, "genes"], "'genes' lists the HGNC gene symbols the result is about", "cdx")
        genes = []
    hgnc: dict[str, str] = {}
    hgnc_ids = entry.get("hgnc", []) or []
    if hgnc_ids and len(hgnc_ids) != len(genes):
        out.add([*where, "hgnc"], "'hgnc' lists one HGNC id per gene, in the order of 'genes'", "cdx")
    for i, (key, gene) in enumerate(zip(hgnc_ids, genes)):
        if (r := codes.check(f"hgnc:{key}")) is not None:
            out.add([*where, "hgnc", i], r, "code")
        hgnc[f"hgnc:{key}"] = gene
    mode = entry.get("mode", "alteration")
    if mode not in ("alteration", "wild-type", "expression"):
        out.add([*where, "mode"], "'mode' is alteration (a qualifying variant), wild-type (no variant) or expression (IHC/percentage)", "cdx")
    variants: list[Variant] = []
    for i, v in enumerate(entry.get("variants", []) or []):
        vid, label = (v.get("id"), _text(v.get("label"))) if isinstance(v, dict) else (None, None)
        matches = v.get("match", []) if isinstance(v, dict) else []
        vcodes = v.get("codes", []) if isinstance(v, dict) else []
        if not isinstance(vid, str) or label is None or not isinstance(matches, list) or not (matches or vcodes):
            out.add([*where, "variants", i], "each variant needs 'id', 'label' and 'match' texts and/or 'codes'", "cdx")
            continue
        for j, key in enumerate(vcodes):
            if (r := codes.check(key)) is not None:
                out.add([*where, "variants", i, "codes", j], r, "code")
        variants.append(Variant(vid, label, tuple(normalise_variant(str(m)) for m in matches), frozenset(vcodes)))
    result_codes = _code_list(entry.get("result_codes"), [*where, "result_codes"], out)
    percent_codes = _code_list(entry.get("percent_codes"), [*where, "percent_codes"], out)
    scores: dict[str, frozenset[str]] = {}
    if "scores" in entry:
        sc = entry["scores"]
        if not isinstance(sc, dict) or not set(sc) <= {"positive", "equivocal", "negative"}:
            out.add([*where, "scores"], "'scores' maps positive / equivocal / negative to IHC scores such as '3+'", "cdx")
        else:
            scores = {k: frozenset(str(s).replace(" ", "") for s in v) for k, v in sc.items()}
    tests: list[tuple[str, LocalText]] = []
    specs = [(["test"], entry["test"])] if "test" in entry else [(["tests", i], t) for i, t in enumerate(entry.get("tests", []) or [])]
    if not specs:
        out.add(where, "a biomarker needs 'test' (or 'tests'): the LOINC order code and display of the test to suggest", "cdx")
    for sub, test in specs:
        test_code = test.get("code") if isinstance(test, dict) else None
        test_display = _text(test.get("display")) if isinstance(test, dict) else None
        if not isinstance(test_code, str) or test_display is None:
            out.add([*where, *sub], "a test needs the LOINC 'code' to order and a 'display' (en and zh-CN)", "cdx")
        elif (r := codes.check(test_code)) is not None:
            out.add([*where, *sub, "code"], r, "code")
        else:
            tests.append((test_code, test_display))
    percent_min = _number(entry.get("percent_min")) if "percent_min" in entry else None
    origin = entry.get("origin", "somatic")
    if origin not in ("somatic", "germline", "either"):
        out.add([*where, "origin"], "'origin' is somatic, germline or either", "cdx")
    if len(out.problems) != before:
        return None
    return Biomarker(
        id=bid, name=name, genes=tuple(genes), hgnc=hgnc, mode=str(mode), variants=tuple(variants),
        any_alteration=bool(entry.get("any_alteration", not variants)),
        significance=tuple(str(s).lower() for s in entry.get("significance", []) or []),
        result_codes=result_codes, percent_codes=percent_codes, percent_min=percent_min, scores=scores,
        tests=tuple(tests), origin=str(origin),
        sources=tuple(str(s) for s in entry.get("sources", []) or []),
    )


def _code_list(value: Any, where: list[str | int], out: _Out) -> frozenset[str]:
    keys: list[str] = []
    for i, key in enumerate(value or []):
        reason = codes.check(key) if isinstance(key, str) else "a code must be a string 'system:code'"
        if reason is not None:
            out.add([*where, i], reason, "code")
        else:
            keys.append(key)
    return frozenset(keys)


def _load_therapy(entry: Any, where: list[str | int], out: _Out, knowledge: "Knowledge", cdx: CompanionDiagnostics) -> Therapy | None:
    if not isinstance(entry, dict):
        out.add(where, "each therapy must be a mapping", "cdx")
        return None
    before = len(out.problems)
    drug = entry.get("drug")
    if not isinstance(drug, str) or codes.check(drug) is not None:
        out.add([*where, "drug"], "'drug' must be an ingredient code such as rxnorm:1721560", "code")
        return None
    if not _drug_known(knowledge, drug):
        out.add([*where, "drug"], f"unknown drug code {drug}: not in knowledge/drugs", "unknown-reference")
    markers = entry.get("biomarkers")
    if not isinstance(markers, list) or not markers:
        out.add([*where, "biomarkers"], "'biomarkers' lists the biomarker ids, any of which qualifies", "cdx")
        markers = []
    for i, bid in enumerate(markers):
        if bid not in cdx.biomarkers:
            out.add([*where, "biomarkers", i], f"unknown biomarker '{bid}'", "unknown-reference")
    matcher = label = None
    if "indication" in entry:
        keys = _codes_of(entry["indication"], out, [*where, "indication"], knowledge, "indication")
        if keys is not None:
            matcher, label = codes.CodeMatcher(keys), _text(entry["indication"].get("label"))
    source = entry.get("source")
    if source not in cdx.sources:
        out.add([*where, "source"], f"source '{source}' is not listed in the file's 'sources'", "unknown-reference")
    if len(out.problems) != before:
        return None
    pmin = _number(entry.get("percent_min")) if "percent_min" in entry else None
    return Therapy(drug, tuple(markers), matcher, label, pmin, str(source), _text(entry.get("note")))


def _load_large_test(entry: Any, where: list[str | int], out: _Out, knowledge: "Knowledge") -> LargeTest | None:
    if not isinstance(entry, dict):
        out.add(where, "each large test must be a mapping", "cdx")
        return None
    tid, name = entry.get("id"), _text(entry.get("name"))
    keys = _code_list(entry.get("codes"), [*where, "codes"], out)
    scope = entry.get("scope")
    if not isinstance(tid, str) or name is None or not keys or scope not in ("large-panel", "genome"):
        out.add(where, "each large test needs 'id', 'name', 'codes' and 'scope' (large-panel or genome)", "cdx")
        return None
    ind = _codes_of(entry.get("indication"), out, [*where, "indication"], knowledge, "indication")
    label = _text(entry["indication"].get("label")) if isinstance(entry.get("indication"), dict) else None
    if ind is None or label is None:
        if ind is not None:
            out.add([*where, "indication"], "'indication' needs a 'label' (en and zh-CN)", "cdx")
        return None
    return LargeTest(tid, keys, name, str(scope), codes.CodeMatcher(ind), label)
