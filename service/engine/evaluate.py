"""Evaluate a rule set against one hook invocation's facts.

Pure: facts in, `Firing`s out, no IO. Cost grows with the rules triggered by
the draft orders (index lookups), not with the size of the rule set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..facts.model import DraftOrder, GenomicResult, PatientFacts
from .conditions import EvalContext
from .ruleset import Rule, RuleSet, SuggestionSpec


@dataclass(slots=True)
class Firing:
    """A rule that held for one draft order, with what it bound for the card text."""

    rule: Rule
    order: DraftOrder
    order_index: int
    bindings: dict[str, Any]
    suggestions: list[SuggestionSpec]


@dataclass(slots=True)
class RuleTrace:
    """What `evaluate --trace` shows: each rule considered and why it held or not."""

    rule_id: str
    order: str
    fired: bool
    steps: list[tuple[int, str, bool, str]] = field(default_factory=list)
    skipped: str | None = None


def latest_genomics(patient: PatientFacts) -> dict[str, GenomicResult]:
    """The result per gene that rules see (see service/facts/genomics.py for the policy)."""
    try:
        from ..facts.genomics import latest_by_gene
    except ImportError:  # pragma: no cover - genomics reader is part of the package
        return {}
    return latest_by_gene(patient.genomics)


def evaluate(
    ruleset: RuleSet,
    hook: str,
    orders: list[DraftOrder],
    patient: PatientFacts,
    calculators: dict[str, Callable[[EvalContext], dict[str, Any]]],
    traces: list[RuleTrace] | None = None,
) -> list[Firing]:
    """Every (rule, order) pair that holds, sorted: severity, pack priority, order, rule id."""
    genomics = latest_genomics(patient)
    memo: dict[int, bool] = {}
    indexes: dict[Any, Any] = {}
    firings: list[Firing] = []
    for index, order in enumerate(orders):
        for rule in ruleset.candidates(order):
            if hook not in rule.hooks:
                if traces is not None:
                    traces.append(RuleTrace(rule.id, order.reference, False, skipped=f"rule does not serve {hook}"))
                continue
            ctx = EvalContext(patient, order, ruleset.knowledge, genomics, calculators, memo=memo, indexes=indexes)
            if traces is not None:
                ctx.trace = []
            held = rule.when.check(ctx) if rule.when is not None else True
            if traces is not None:
                traces.append(RuleTrace(rule.id, order.reference, held, ctx.trace or []))
            if not held:
                continue
            suggestions = [s for s in rule.card.suggestions if _applies(s, ctx)]
            firings.append(Firing(rule, order, index, dict(ctx.bindings), suggestions))
    firings.sort(key=lambda f: (f.rule.severity, -f.rule.pack.priority, f.order_index, f.rule.id))
    return firings


def _applies(suggestion: SuggestionSpec, ctx: EvalContext) -> bool:
    saved = ctx.trace
    ctx.trace = None  # suggestion guards are not part of the rule's trace
    try:
        if suggestion.when is not None and not suggestion.when.check(ctx):
            return False
        return not (suggestion.unless is not None and suggestion.unless.check(ctx))
    finally:
        ctx.trace = saved
