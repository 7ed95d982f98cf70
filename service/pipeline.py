"""facts -> engine -> cards for one hook invocation; shared by HTTP, `test` and `evaluate`.

No IO here: the caller gathers the patient's resources (prefetch or FHIR
server) and stores the audit record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from .calculators.registry import CALCULATORS
from .cards.invariants import card_violations
from .cards.render import CardRenderer, UuidFactory
from .engine.evaluate import Firing, RuleTrace, evaluate
from .engine.ruleset import RuleSet
from .facts.builder import build_draft_order, build_patient_facts
from .facts.model import DraftOrder, PatientFacts
from .hooks.request import HookRequest

log = logging.getLogger(__name__)


@dataclass
class HookResult:
    response: dict[str, Any]
    firings: list[Firing]
    cards: list[tuple[Firing, dict[str, Any]]]
    orders: list[DraftOrder]
    patient: PatientFacts
    traces: list[RuleTrace] | None = None
    dropped: list[str] = field(default_factory=list)


def run_hook(
    ruleset: RuleSet,
    request: HookRequest,
    resources: list[dict[str, Any]],
    locale: str = "en",
    today: date | None = None,
    uuids: UuidFactory | None = None,
    trace: bool = False,
    already_shown: Callable[[Firing], bool] | None = None,
) -> HookResult:
    """Evaluate the rules for the orders in scope and render the response."""
    knowledge = ruleset.knowledge
    today = today or date.today()
    patient = build_patient_facts(_for_patient(resources, request.patient_id), knowledge, today)
    orders = [build_draft_order(o, knowledge) for o in request.orders_in_scope()]
    traces: list[RuleTrace] | None = [] if trace else None
    firings = evaluate(ruleset, request.hook, orders, patient, CALCULATORS, traces)
    if already_shown is not None:
        firings = [f for f in firings if not already_shown(f)]
    renderer = CardRenderer(knowledge, uuids, request.patient_id)
    cards: list[tuple[Firing, dict[str, Any]]] = []
    dropped: list[str] = []
    for firing in firings:
        card = renderer.render(firing, locale)
        problems = card_violations(card)
        if problems:  # a rule-pack or renderer bug: never send an invalid card
            log.error("card from rule %s dropped: %s", firing.rule.id, "; ".join(problems[:3]))
            dropped.append(firing.rule.id)
            continue
        cards.append((firing, card))
    response: dict[str, Any] = {"cards": [c for _, c in cards]}
    return HookResult(response, firings, cards, orders, patient, traces, dropped)


def _for_patient(resources: list[dict[str, Any]], patient_id: str) -> list[dict[str, Any]]:
    """Drop resources that belong to another patient (a confused prefetch must not leak advice)."""
    out: list[dict[str, Any]] = []
    wanted = {f"Patient/{patient_id}", patient_id}
    for res in resources:
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == "Patient":
            if res.get("id") in (None, patient_id):
                out.append(res)
            continue
        subject = res.get("subject") or res.get("patient") or res.get("beneficiary")
        ref = subject.get("reference") if isinstance(subject, dict) else None
        if ref is None or not isinstance(ref, str) or ref in wanted or ref.endswith(f"/Patient/{patient_id}"):
            out.append(res)
    return out
