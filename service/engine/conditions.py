"""Rule conditions, compiled once at load into small objects with `holds(ctx)`.

Each YAML condition (`genotype:`, `diagnosis:`, `all:` ...) becomes one
instance here. Compilation resolves every name (value sets, calculators) so
that a typo fails at load time, not in front of a physician. Evaluation does
no IO and never sees FHIR JSON, except the FHIRPath escape hatch, which is
handed the patient's resources as a Bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from .. import codes as codesys
from ..facts.model import DraftOrder, GenomicResult, PatientFacts
from ..knowledge import Knowledge


@dataclass(slots=True)
class EvalContext:
    """Per (request, draft order) state: facts in, template bindings and trace out."""

    patient: PatientFacts
    order: DraftOrder
    knowledge: Knowledge
    genomics: dict[str, GenomicResult]
    calculators: dict[str, Callable[["EvalContext"], dict[str, Any]]]
    bindings: dict[str, Any] = field(default_factory=dict)
    trace: list[tuple[int, str, bool, str]] | None = None
    depth: int = 0
    memo: dict[int, bool] = field(default_factory=dict)
    #: Per-request indexes of the patient's codes, shared by every rule and order of the request.
    indexes: dict[tuple[Any, ...], tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    def code_index(self, kind: str, active: bool | None, within: timedelta | None) -> tuple[frozenset[str], frozenset[str]]:
        """The patient's codes of one kind (and filter), normalised once: (codes, all their prefixes).

        Rules then match with two set intersections instead of re-reading every
        Condition for every rule, so cost stays flat as rules are added.
        """
        key = (kind, active, within)
        found = self.indexes.get(key)
        if found is not None:
            return found
        p = self.patient
        events: Iterable[Any] = p.conditions if kind == "diagnosis" else p.procedures if kind == "procedure" else p.medications
        since: date | None = p.today - within if within else None
        exact: set[str] = set()
        for ev in events:
            if active is not None and ev.active != active:
                continue
            if since is not None and (ev.when is None or ev.when < since):
                continue
            exact.update(codesys.match_key(c) for c in (ev.concepts if kind == "medication" else ev.codes))
        prefixes = {k[:end] for k in exact for end in range(k.find(":") + 2, len(k) + 1)}
        found = (frozenset(exact), frozenset(prefixes))
        self.indexes[key] = found
        return found

    def note(self, label: str, result: bool, why: str) -> None:
        if self.trace is not None:
            self.trace.append((self.depth, label, result, why))


class CompileError(Exception):
    """A condition refers to something unknown; `path` locates it in the YAML."""

    def __init__(self, path: list[str | int], reason: str, check: str | None = None) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.check = check or ("never-holds" if "never hold" in reason else "unknown-reference")


class Condition:
    """Base: `holds` evaluates; `label` is shown in traces; `patient_only` enables memoisation."""

    label = "condition"
    patient_only = True

    def holds(self, ctx: EvalContext) -> bool:
        raise NotImplementedError

    def check(self, ctx: EvalContext) -> bool:
        """`holds` with tracing; patient-only results are memoised across draft orders."""
        if self.patient_only and ctx.trace is None:
            key = id(self)
            cached = ctx.memo.get(key)
            if cached is not None:
                return cached
            result = self.holds(ctx)
            ctx.memo[key] = result
            return result
        if ctx.trace is None:
            return self.holds(ctx)
        ctx.depth += 1
        start = len(ctx.trace)
        result = self.holds(ctx)
        # A node notes its verdict after its children; show it above them.
        if len(ctx.trace) > start + 1 and ctx.trace[-1][0] == ctx.depth:
            ctx.trace.insert(start, ctx.trace.pop())
        ctx.depth -= 1
        return result

    def bound_names(self) -> set[str]:
        """Template variables this condition binds when it holds."""
        return set()

    def children(self) -> Iterable["Condition"]:
        return ()


def _compare(spec: dict[str, float], value: float | None) -> bool:
    if value is None:
        return False
    for op, limit in spec.items():
        if op == "gt" and not value > limit:
            return False
        if op == "gte" and not value >= limit:
            return False
        if op == "lt" and not value < limit:
            return False
        if op == "lte" and not value <= limit:
            return False
        if op == "eq" and not value == limit:
            return False
    return True


def _describe_cmp(spec: dict[str, float]) -> str:
    symbols = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}
    return " and ".join(f"{symbols[k]} {v:g}" for k, v in spec.items())


def cmp_never_holds(spec: dict[str, float]) -> bool:
    """True for contradictory comparisons such as {gt: 5, lt: 3}: a condition that can never hold."""
    low, low_incl, high, high_incl = float("-inf"), True, float("inf"), True
    for op, v in spec.items():
        if op in ("gt", "gte") and (v > low or (v == low and op == "gt")):
            low, low_incl = v, op == "gte"
        if op in ("lt", "lte") and (v < high or (v == high and op == "lt")):
            high, high_incl = v, op == "lte"
        if op == "eq":
            if not (low < v < high or (v == low and low_incl) or (v == high and high_incl)):
                return True
            low = high = v
    return low > high or (low == high and not (low_incl and high_incl))


class All(Condition):
    label = "all"

    def __init__(self, items: list[Condition]) -> None:
        self.items = items
        self.patient_only = all(i.patient_only for i in items)

    def holds(self, ctx: EvalContext) -> bool:
        for item in self.items:
            if not item.check(ctx):
                ctx.note("all", False, "a required condition failed")
                return False
        ctx.note("all", True, "every condition held")
        return True

    def bound_names(self) -> set[str]:
        return set().union(*(i.bound_names() for i in self.items))

    def children(self) -> Iterable[Condition]:
        return self.items


class Any_(Condition):
    label = "any"

    def __init__(self, items: list[Condition]) -> None:
        self.items = items
        self.patient_only = all(i.patient_only for i in items)

    def holds(self, ctx: EvalContext) -> bool:
        for item in self.items:
            if item.check(ctx):
                ctx.note("any", True, "one condition held")
                return True
        ctx.note("any", False, "no condition held")
        return False

    def children(self) -> Iterable[Condition]:
        return self.items


class Not(Condition):
    label = "not"

    def __init__(self, item: Condition) -> None:
        self.item = item
        self.patient_only = item.patient_only

    def holds(self, ctx: EvalContext) -> bool:
        result = not self.item.check(ctx)
        ctx.note("not", result, "inner condition " + ("failed" if result else "held"))
        return result

    def children(self) -> Iterable[Condition]:
        return (self.item,)


class OrderCondition(Condition):
    label = "order"
    patient_only = False

    def __init__(self, spec: dict[str, Any]) -> None:
        self.codes = codesys.CodeMatcher(list(spec["codes"])) if "codes" in spec else None
        self.priority = frozenset(spec.get("priority", ())) or None
        self.route = frozenset(spec.get("route", ())) or None
        self.cmps = {k: spec[k] for k in ("dose_mg", "daily_dose_mg", "quantity", "days_supply") if k in spec}

    def holds(self, ctx: EvalContext) -> bool:
        order = ctx.order
        if self.codes is not None and not self.codes.any(order.concepts):
            ctx.note("order.codes", False, "the order's codes are not in the list")
            return False
        if self.priority is not None and (order.priority or "routine") not in self.priority:
            ctx.note("order.priority", False, f"priority is {order.priority or 'routine'}")
            return False
        if self.route is not None and not (order.route & self.route):
            ctx.note("order.route", False, "route does not match")
            return False
        values = {
            "dose_mg": order.dose_mg,
            "daily_dose_mg": order.dose_mg * order.doses_per_day if order.dose_mg and order.doses_per_day else None,
            "quantity": order.quantity,
            "days_supply": order.days_supply,
        }
        for name, spec in self.cmps.items():
            if not _compare(spec, values[name]):
                ctx.note(f"order.{name}", False, f"{name} is {values[name]}, needs {_describe_cmp(spec)}")
                return False
        ctx.note("order", True, "the draft order matches")
        return True


class Age(Condition):
    label = "age"

    def __init__(self, spec: dict[str, float]) -> None:
        self.spec = spec

    def holds(self, ctx: EvalContext) -> bool:
        age = ctx.patient.age_years
        result = _compare(self.spec, age)
        ctx.note("age", result, f"age {age if age is not None else 'unknown'}, needs {_describe_cmp(self.spec)}")
        return result


class Sex(Condition):
    label = "sex"

    def __init__(self, value: str) -> None:
        self.value = value

    def holds(self, ctx: EvalContext) -> bool:
        result = ctx.patient.sex == self.value
        ctx.note("sex", result, f"sex is {ctx.patient.sex or 'unknown'}")
        return result


def _matcher(spec: dict[str, Any], knowledge: Knowledge, path: list[str | int]) -> tuple[codesys.CodeMatcher, str]:
    keys: list[str] = list(spec.get("codes", []))
    names: list[str] = []
    vs = spec.get("valueset")
    if vs is not None:
        names = [vs] if isinstance(vs, str) else list(vs)
    for name in names:
        found = knowledge.valuesets.get(name)
        if found is None:
            raise CompileError([*path, "valueset"], f"unknown value set '{name}' (knowledge/valuesets)")
        keys.extend(found.codes)
    for i, key in enumerate(spec.get("codes", [])):
        if (reason := codesys.check(key)) is not None:
            raise CompileError([*path, "codes", i], reason, "code")
    label = ", ".join(names) if names else ", ".join(spec.get("codes", []))[:60]
    return codesys.CodeMatcher(keys), label


class History(Condition):
    """diagnosis / procedure / medication on file, with optional look-back and activity."""

    def __init__(self, kind: str, spec: dict[str, Any], knowledge: Knowledge, path: list[str | int]) -> None:
        self.kind = kind
        self.label = kind
        self.matcher, self.what = _matcher(spec, knowledge, path)
        self.within = timedelta(days=spec["within_days"]) if "within_days" in spec else None
        self.active = spec.get("active")

    def holds(self, ctx: EvalContext) -> bool:
        exact, prefixes = ctx.code_index(self.kind, self.active, self.within)
        if self.matcher.matches_index(exact, prefixes):
            ctx.note(self.kind, True, f"found {self.what}")
            return True
        ctx.note(self.kind, False, f"no {self.kind} in {self.what}" + (f" within {self.within.days} days" if self.within else ""))
        return False


class Lab(Condition):
    label = "lab"

    def __init__(self, spec: dict[str, Any], path: list[str | int]) -> None:
        codes = [spec["code"]] if isinstance(spec["code"], str) else list(spec["code"])
        for i, key in enumerate(codes):
            if (reason := codesys.check(key)) is not None:
                raise CompileError([*path, "code"], reason, "code")
        self.codes = frozenset(codes)
        self.value = spec.get("value")
        self.unit = spec.get("unit")
        self.text = {t.lower() for t in spec.get("text", ())}
        self.coded = frozenset(spec.get("coded", ()))
        self.within = timedelta(days=spec["within_days"]) if "within_days" in spec else None
        self.missing = bool(spec.get("missing", False))
        self.name = sorted(self.codes)[0]

    def holds(self, ctx: EvalContext) -> bool:
        latest = None
        for lab in ctx.patient.labs:
            if lab.codes & self.codes and (latest is None or (lab.when or _EPOCH) > (latest.when or _EPOCH)):
                latest = lab
        if latest is not None and self.within is not None:
            cutoff = datetime.combine(ctx.patient.today - self.within, datetime.min.time(), tzinfo=timezone.utc)
            if latest.when is None or latest.when < cutoff:
                latest = None
        if self.missing:
            ctx.note("lab", latest is None, f"{self.name} " + ("not on file" if latest is None else "on file"))
            return latest is None
        if latest is None:
            ctx.note("lab", False, f"no {self.name} result" + (f" within {self.within.days} days" if self.within else ""))
            return False
        if self.unit and latest.unit != self.unit:
            ctx.note("lab", False, f"{self.name} unit {latest.unit} is not {self.unit}")
            return False
        if self.value is not None and not _compare(self.value, latest.value):
            ctx.note("lab", False, f"{self.name} = {latest.value}, needs {_describe_cmp(self.value)}")
            return False
        if self.text and (latest.text or "").lower() not in self.text:
            ctx.note("lab", False, f"{self.name} text does not match")
            return False
        if self.coded and not (latest.coded_value & self.coded):
            ctx.note("lab", False, f"{self.name} coded value does not match")
            return False
        ctx.note("lab", True, f"{self.name} matches")
        return True


_EPOCH = datetime(1900, 1, 1, tzinfo=timezone.utc)


class Genotype(Condition):
    """A gene's interpreted result. Binds `<GENE>.phenotype`, `.diplotype`, `.activity_score`, `.allele`, `.status`."""

    label = "genotype"
    patient_only = False  # binds template variables, so it is evaluated per order

    def __init__(self, spec: dict[str, Any]) -> None:
        self.gene = spec["gene"]
        self.phenotypes = frozenset(spec["phenotype"]) if "phenotype" in spec else None
        self.diplotypes = frozenset(spec["diplotype"]) if "diplotype" in spec else None
        self.score = spec.get("activity_score")
        self.allele = spec.get("allele")
        self.status = frozenset(spec["status"]) if "status" in spec else None
        self.variants = frozenset(v.lower() for v in spec["variant"]) if "variant" in spec else None
        self.on_file = spec.get("on_file")

    def _result(self, ctx: EvalContext) -> GenomicResult | None:
        if self.allele is None:
            result = ctx.genomics.get(self.gene)
            if result is not None and result.kind == "genotype" and not result.diplotype and not result.phenotype:
                return None
            return result
        best: GenomicResult | None = None
        for r in ctx.patient.genomics:
            if r.allele == self.allele and r.status in ("positive", "negative"):
                if best is None or (r.when or _EPOCH) > (best.when or _EPOCH):
                    best = r
        return best

    def holds(self, ctx: EvalContext) -> bool:
        result = self._result(ctx)
        subject = self.allele or self.gene
        if self.on_file is not None:
            usable = result is not None and (self.allele is not None or (result.phenotype or "Indeterminate") != "Indeterminate" or bool(result.diplotype))
            outcome = usable == self.on_file
            ctx.note("genotype", outcome, f"{subject} result " + ("on file" if usable else "not on file"))
            if not outcome or not usable:
                return outcome
        elif result is None:
            ctx.note("genotype", False, f"no {subject} result on file")
            return False
        assert result is not None
        if self.phenotypes is not None and (result.phenotype or "Indeterminate") not in self.phenotypes:
            ctx.note("genotype", False, f"{self.gene} phenotype is {result.phenotype or 'Indeterminate'}")
            return False
        if self.diplotypes is not None and result.diplotype not in self.diplotypes:
            ctx.note("genotype", False, f"{self.gene} diplotype {result.diplotype} not in list")
            return False
        if self.score is not None and not _compare(self.score, result.activity_score):
            ctx.note("genotype", False, f"{self.gene} activity score {result.activity_score}")
            return False
        if self.status is not None and result.status not in self.status:
            ctx.note("genotype", False, f"{subject} is {result.status or 'unknown'}")
            return False
        if self.variants is not None and (result.variant or "").lower() not in self.variants:
            ctx.note("genotype", False, f"{self.gene} variant does not match")
            return False
        prefix = self.gene
        ctx.bindings[f"{prefix}.phenotype"] = result.phenotype or "Indeterminate"
        ctx.bindings[f"{prefix}.diplotype"] = result.diplotype or result.status or ""
        ctx.bindings[f"{prefix}.activity_score"] = "" if result.activity_score is None else f"{result.activity_score:g}"
        ctx.bindings[f"{prefix}.allele"] = result.allele or ""
        ctx.bindings[f"{prefix}.status"] = result.status or ""
        ctx.note("genotype", True, f"{subject} matches")
        return True

    def bound_names(self) -> set[str]:
        return {f"{self.gene}.{k}" for k in ("phenotype", "diplotype", "activity_score", "allele", "status")}


class Coverage(Condition):
    label = "coverage"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.plans = frozenset(spec["plan"]) if "plan" in spec else None
        self.on_file = spec.get("on_file")

    def holds(self, ctx: EvalContext) -> bool:
        plan = ctx.patient.plan
        if self.on_file is not None and (plan is not None) != self.on_file:
            ctx.note("coverage", False, "coverage " + ("on file" if plan else "not on file"))
            return False
        if self.plans is not None and plan not in self.plans:
            ctx.note("coverage", False, f"plan {plan or 'none'} not in list")
            return False
        ctx.note("coverage", True, f"plan {plan}")
        return True


class Calculator(Condition):
    """Runs a named calculator; holds when it ran. Its outputs are bound under `as`."""

    label = "calculator"
    patient_only = False

    def __init__(self, spec: dict[str, Any], known: set[str], path: list[str | int]) -> None:
        self.name = spec["name"]
        if self.name not in known:
            raise CompileError([*path, "name"], f"unknown calculator '{self.name}' (known: {', '.join(sorted(known)) or 'none'})")
        self.alias = spec.get("as", self.name)

    def holds(self, ctx: EvalContext) -> bool:
        outputs = ctx.calculators[self.name](ctx)
        for key, value in outputs.items():
            ctx.bindings[f"{self.alias}.{key}"] = value
        ctx.note("calculator", True, f"{self.name} computed")
        return True

    def bound_names(self) -> set[str]:
        return {f"{self.alias}.*"}


class FhirPath(Condition):
    label = "fhirpath"

    def __init__(self, expression: str, path: list[str | int]) -> None:
        from fhirpathpy import compile as fp_compile

        try:
            self.fn = fp_compile(expression)
        except Exception as exc:  # fhirpathpy raises assorted types on syntax errors
            raise CompileError(path, f"invalid FHIRPath expression: {exc}") from None
        self.expression = expression

    def holds(self, ctx: EvalContext) -> bool:
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in ctx.patient.resources]}
        try:
            value = self.fn(bundle)
        except Exception:  # a data oddity must not fail the request
            ctx.note("fhirpath", False, "expression could not be evaluated on this data")
            return False
        result = bool(value) and value != [False]
        ctx.note("fhirpath", result, self.expression[:60])
        return result


ConditionCompiler = Callable[[Any, Knowledge, list[str | int]], Condition]

#: Condition kinds defined in other modules (e.g. coverage and biomarker conditions),
#: registered with `register_condition` so this module stays the single entry point.
EXTRA_CONDITIONS: dict[str, ConditionCompiler] = {}


def register_condition(name: str, compiler: ConditionCompiler) -> None:
    EXTRA_CONDITIONS[name] = compiler


def compile_condition(
    spec: Any, knowledge: Knowledge, calculators: set[str], path: list[str | int]
) -> Condition:
    """YAML condition (already schema-valid) -> Condition object."""
    (key, value), = spec.items()
    here = [*path, key]
    if key in EXTRA_CONDITIONS:
        return EXTRA_CONDITIONS[key](value, knowledge, here)
    if key == "all":
        return All([compile_condition(v, knowledge, calculators, [*here, i]) for i, v in enumerate(value)])
    if key == "any":
        return Any_([compile_condition(v, knowledge, calculators, [*here, i]) for i, v in enumerate(value)])
    if key == "not":
        return Not(compile_condition(value, knowledge, calculators, here))
    if key == "order":
        for i, k in enumerate(value.get("codes", [])):
            if (reason := codesys.check(k)) is not None:
                raise CompileError([*here, "codes", i], reason, "code")
        for name in ("dose_mg", "daily_dose_mg", "quantity", "days_supply"):
            if name in value and cmp_never_holds(value[name]):
                raise CompileError([*here, name], f"'{name}' comparison can never hold")
        return OrderCondition(value)
    if key == "age":
        if cmp_never_holds(value):
            raise CompileError(here, "age comparison can never hold")
        return Age(value)
    if key == "sex":
        return Sex(value)
    if key in ("diagnosis", "procedure", "medication"):
        return History(key, value, knowledge, here)
    if key == "lab":
        if "value" in value and cmp_never_holds(value["value"]):
            raise CompileError([*here, "value"], "lab value comparison can never hold")
        if value.get("missing") and any(k in value for k in ("value", "text", "coded")):
            raise CompileError(here, "a lab that is missing cannot also have a value: this condition can never hold")
        return Lab(value, here)
    if key == "genotype":
        if value.get("on_file") is False and any(k in value for k in ("phenotype", "diplotype", "activity_score", "status", "variant")):
            raise CompileError(here, "on_file: false with a result filter can never hold")
        _check_gene(value, knowledge, here)
        return Genotype(value)
    if key == "coverage":
        if value.get("on_file") is False and "plan" in value:
            raise CompileError(here, "on_file: false with a plan list can never hold")
        return Coverage(value)
    if key == "calculator":
        return Calculator(value, calculators, here)
    if key == "fhirpath":
        return FhirPath(value, here)
    raise CompileError(here, f"unknown condition '{key}'")


def _check_gene(spec: dict[str, Any], knowledge: Knowledge, path: list[str | int]) -> None:
    """Phenotype names must be ones the gene's table can produce, or the condition never holds."""
    tables = knowledge.pgx
    if tables is None or "phenotype" not in spec:
        return
    possible = getattr(tables, "possible_phenotypes", None)
    if possible is None:
        return
    allowed = possible(spec["gene"])
    if allowed is None:
        raise CompileError([*path, "gene"], f"unknown gene '{spec['gene']}' (no table in knowledge/pgx)")
    for i, name in enumerate(spec["phenotype"]):
        if name not in allowed:
            raise CompileError([*path, "phenotype", i], f"'{name}' is not a {spec['gene']} phenotype (known: {', '.join(sorted(allowed))})")
