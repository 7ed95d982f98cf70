"""Firings -> CDS Hooks 2.0 cards, in the request's locale.

Suggestions follow Da Vinci CRD's patterns: *propose alternate request*
(delete the draft by `resourceId` + create the replacement) and *identify
additional orders* (create a ServiceRequest). Every resource we create is
validated with fhir.resources before it leaves, because an EHR applies it
with one click.
"""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Any, Callable

from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from .. import templates
from ..facts.model import ALIAS_SYSTEMS, DraftOrder
from ..knowledge import Knowledge
from ..engine.evaluate import Firing
from ..engine.ruleset import SuggestionSpec

log = logging.getLogger(__name__)

OVERRIDE_REASON_SYSTEM = "urn:precision-cds:override-reason"
RULE_TOPIC_SYSTEM = "urn:precision-cds:rule"
CARD_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
#: Order priorities for which coverage, cost and paperwork cards are shown as info at most (design §4).
URGENT_PRIORITIES = frozenset({"stat", "asap", "urgent"})
#: Suggestions built from coverage / companion-diagnostic findings; a draft that will not validate drops the suggestion, not the card.
_GUARDED_ACTIONS = frozenset({"formulary_step_therapy", "add_cdx_test", "change_quantity"})
_URGENT_NOTE = {
    "en": "**Urgent order:** coverage information only; do not delay treatment for it.",
    "zh-CN": "**紧急医嘱：** 以下医保信息仅供参考，请勿因此延误治疗。",
}

UuidFactory = Callable[[], str]

_FOOTER = {
    "en": "**Evidence:** {strength}. **Source:** [{label}]({url})",
    "zh-CN": "**证据强度：** {strength}。**来源：** [{label}]({url})",
}


def _text(value: dict[str, str], locale: str) -> str:
    return value.get(locale) or value["en"]


_SHAPES: dict[str, type] = {
    "subject": dict, "encounter": dict, "requester": dict, "reasonCode": list, "reasonReference": list,
    "priority": str, "authoredOn": str, "dosageInstruction": list, "dispenseRequest": dict,
}


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _draft_fields(draft: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Fields worth carrying from the draft into a new order: present and of the right JSON shape.

    Drafts from real clients are sparse or odd (null, {} or a string where an object
    belongs); copying those verbatim would make the created resource invalid.
    """
    return {k: copy.deepcopy(draft[k]) for k in keys if isinstance(draft.get(k), _SHAPES.get(k, object)) and _present(draft[k])}


def _coding(key: str, display: str | None = None) -> dict[str, str]:
    system, _, code = key.partition(":")
    coding = {"system": ALIAS_SYSTEMS.get(system, system), "code": code}
    if display:
        coding["display"] = display
    return coding


class CardRenderer:
    """Builds card JSON; one instance per rule set (it holds the knowledge base)."""

    def __init__(self, knowledge: Knowledge, uuids: UuidFactory | None = None, patient_id: str | None = None) -> None:
        self.knowledge = knowledge
        self.uuids = uuids or (lambda: str(uuid.uuid4()))
        self.patient_ref = {"reference": f"Patient/{patient_id or 'unknown'}"}

    def _subject(self, draft: dict[str, Any]) -> dict[str, Any]:
        subject = draft.get("subject")
        if isinstance(subject, dict) and isinstance(subject.get("reference"), str) and subject["reference"]:
            return copy.deepcopy(subject)
        return dict(self.patient_ref)

    def _updatable(self, order: DraftOrder) -> dict[str, Any]:
        """A copy of the draft that is a valid MedicationRequest to `update` (sparse drafts filled in)."""
        resource = {k: copy.deepcopy(v) for k, v in order.resource.items() if _present(v)}
        if not isinstance(resource.get("status"), str):
            resource["status"] = "draft"
        if not isinstance(resource.get("intent"), str):
            resource["intent"] = "order"
        resource["subject"] = self._subject(order.resource)
        return resource

    def render(self, firing: Firing, locale: str) -> dict[str, Any]:
        spec = firing.rule.card
        values = self._values(firing, locale)
        translate = lambda t: self.knowledge.translate(t, locale)  # noqa: E731
        summary = templates.render(_text(spec.summary, locale), values, translate)
        # Coverage never delays urgent treatment: such cards are at most info (clinical cards unchanged).
        demoted = spec.category == "coverage" and (firing.order.priority or "routine") in URGENT_PRIORITIES
        card: dict[str, Any] = {
            "uuid": self.uuids(),
            "summary": summary if len(summary) < 140 else summary[:136] + "...",
            "indicator": "info" if demoted else spec.indicator,
            "source": {
                "label": spec.source.label,
                "url": spec.source.url,
                "topic": self._topic(firing),
            },
        }
        footer = _FOOTER.get(locale, _FOOTER["en"]).format(
            strength=spec.strength, label=spec.source.citation or spec.source.label, url=spec.source.url
        )
        detail = templates.render(_text(spec.detail, locale), values, translate) if spec.detail else ""
        if demoted:
            detail = f"{_URGENT_NOTE.get(locale, _URGENT_NOTE['en'])}\n\n{detail.strip()}"
        card["detail"] = f"{detail.strip()}\n\n{footer}" if detail.strip() else footer
        suggestions: list[dict[str, Any]] = []
        for s in firing.suggestions:
            if s.action == "formulary_alternatives":
                suggestions.extend(self._alternatives(s, firing, locale))
            elif s.action in _GUARDED_ACTIONS:
                try:
                    made = self._suggestion(s, firing, locale)
                except ValueError:  # pydantic: the draft's own fields do not validate; drop only this suggestion
                    made = None
                if made is not None:
                    suggestions.append(made)
            else:
                made = self._suggestion(s, firing, locale)
                if made is not None:
                    suggestions.append(made)
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = spec.selection
        if spec.override_reasons:
            card["overrideReasons"] = [
                {
                    "system": r.get("system", OVERRIDE_REASON_SYSTEM),
                    "code": r["code"],
                    "display": _text(r["display"], locale),
                }
                for r in spec.override_reasons
            ]
        if spec.links:
            card["links"] = [
                {"label": _text(link["label"], locale), "url": link["url"], "type": "absolute"} for link in spec.links
            ]
        return card

    def _topic(self, firing: Firing) -> dict[str, str]:
        topic = firing.rule.card.topic
        if topic:
            out = {"system": topic.get("system", CARD_TYPE_SYSTEM), "code": topic["code"]}
            if "display" in topic:
                out["display"] = topic["display"]
            return out
        return {"system": RULE_TOPIC_SYSTEM, "code": firing.rule.id, "display": firing.rule.title}

    def _values(self, firing: Firing, locale: str) -> dict[str, Any]:
        # Conditions bind localised text as {"en": ..., "zh-CN": ...}; pick the request's locale.
        values: dict[str, Any] = {
            k: (_text(v, locale) if isinstance(v, dict) and "en" in v and not k.startswith("_") else v)
            for k, v in firing.bindings.items()
        }
        order = firing.order
        drug = self._order_drug(order)
        values["order.display"] = order.display or ""
        values["order.drug"] = drug.name(locale) if drug else (order.display or "")
        return values

    def _order_drug(self, order: DraftOrder) -> Any:
        for concept in sorted(order.concepts):
            if concept.startswith("rxnorm:") and concept in self.knowledge.drugs:
                return self.knowledge.drugs[concept]
        for concept in sorted(order.concepts):
            drug = self.knowledge.drug(concept)
            if drug is not None:
                return drug
        return None

    # -- suggestions -----------------------------------------------------------
    def _suggestion(self, spec: SuggestionSpec, firing: Firing, locale: str) -> dict[str, Any] | None:
        """One suggestion; if the draft is too odd to build a valid resource from, only it is dropped."""
        try:
            return self._build_suggestion(spec, firing, locale)
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            log.warning("suggestion of rule %s dropped: %s", firing.rule.id, type(exc).__name__)
            return None

    def _build_suggestion(self, spec: SuggestionSpec, firing: Firing, locale: str) -> dict[str, Any] | None:
        values = self._values(firing, locale)
        label = templates.render(_text(spec.label, locale), values, lambda t: self.knowledge.translate(t, locale))
        order = firing.order
        actions: list[dict[str, Any]]
        if spec.action == "replace_order_with":
            drug = self.knowledge.drug(spec.params)
            if drug is None or drug.default_product is None:
                return None
            actions = [self._delete(order, locale), self._create_medication(order, drug, locale)]
        elif spec.action == "delete_order":
            actions = [self._delete(order, locale)]
        elif spec.action == "add_test":
            test = self.knowledge.genetic_tests[spec.params]
            actions = [self._create_service_request(order, test.code, _text(test.display, locale), locale)]
        elif spec.action == "add_order":
            display = templates.render(_text(spec.params["display"], locale), values)
            actions = [self._create_service_request(order, spec.params["code"], display, locale)]
        elif spec.action == "change_dose":
            text = templates.render(_text(spec.params["text"], locale), values)
            actions = [self._update_dose(order, text, locale)]
        elif spec.action == "formulary_step_therapy":
            assessment = firing.bindings.get("_formulary")
            drug = self.knowledge.drug(assessment.step_drug) if assessment is not None and assessment.step_drug else None
            if drug is None or drug.default_product is None:
                return None
            actions = [self._delete(order, locale), self._create_medication(order, drug, locale)]
        elif spec.action == "add_cdx_test":
            tests = self._cdx_tests(firing)
            if not tests:
                return None
            actions = [self._create_service_request(order, code, _text(display, locale), locale) for code, display in tests]
        elif spec.action == "change_quantity":
            assessment = firing.bindings.get("_formulary")
            if assessment is None or assessment.allowed is None or not assessment.over_limit:
                return None
            actions = [self._update_quantity(order, assessment.allowed, locale)]
        else:  # pragma: no cover - the schema allows no other action
            return None
        suggestion: dict[str, Any] = {"label": label, "uuid": self.uuids(), "actions": actions}
        if spec.recommended:
            suggestion["isRecommended"] = True
        return suggestion

    @staticmethod
    def _cdx_tests(firing: Firing) -> list[tuple[str, dict[str, str]]]:
        """The test(s) to order: from the companion_diagnostic condition, else the formulary restriction."""
        tests = firing.bindings.get("_cdx_tests")
        if tests:
            return list(tests)
        assessment = firing.bindings.get("_formulary")
        out: list[tuple[str, dict[str, str]]] = []
        for outcome in getattr(assessment, "outcomes", ()):
            if outcome.met is False:
                out.extend(t for t in outcome.tests if t[0] not in [o[0] for o in out])
        return out

    def _alternatives(self, spec: SuggestionSpec, firing: Firing, locale: str) -> list[dict[str, Any]]:
        """Da Vinci CRD "propose alternate request": one delete + create suggestion per covered alternative."""
        assessment = firing.bindings.get("_formulary")
        if assessment is None:
            return []
        values = self._values(firing, locale)
        plan = assessment.plan
        out: list[dict[str, Any]] = []
        for alt in assessment.alternatives:
            cost = plan.money(alt.cost, locale)
            alt_values = {
                **values,
                "alternative.drug": _text(alt.name, locale),
                "alternative.product": alt.product.display,
                "alternative.tier": _text(plan.tier_display(alt.item.tier), locale),
                "alternative.patient_cost": _text(cost, locale) if isinstance(cost, dict) else cost,
                "alternative.preferred": ("preferred" if locale == "en" else "优选") if alt.preferred else "",
            }
            label = templates.render(_text(spec.label, locale), alt_values, lambda t: self.knowledge.translate(t, locale))
            try:
                actions = [self._delete(firing.order, locale), self._create_product(firing.order, alt, locale)]
            except ValueError:  # pydantic: the draft's own fields do not validate; skip this alternative
                continue
            suggestion: dict[str, Any] = {"label": label, "uuid": self.uuids(), "actions": actions}
            if alt.preferred and not out:
                suggestion["isRecommended"] = True
            out.append(suggestion)
        return out

    def _create_product(self, order: DraftOrder, alt: Any, locale: str) -> dict[str, Any]:
        """The alternative as a new draft; dose and supply are kept only for the same ingredient."""
        keep = ("dosageInstruction", "dispenseRequest") if alt.same_ingredient else ()
        return self._new_medication_request(order, alt.product, _text(alt.name, locale), locale, keep)

    def _update_quantity(self, order: DraftOrder, quantity: float, locale: str) -> dict[str, Any]:
        resource = self._updatable(order)
        dispense = resource.setdefault("dispenseRequest", {})
        amount = dict(dispense.get("quantity") or {})
        amount["value"] = int(quantity) if float(quantity).is_integer() else quantity
        dispense["quantity"] = amount
        MedicationRequest.model_validate(resource)
        shown = f"{amount['value']} {amount.get('unit', '')}".strip()
        description = (f"Change the dispense quantity to {shown} (plan quantity limit)" if locale == "en"
                       else f"将发药数量改为 {shown}（医保限量）")
        return {"type": "update", "description": description, "resource": resource}

    def _delete(self, order: DraftOrder, locale: str) -> dict[str, Any]:
        what = order.display or order.resource_type
        description = f"Remove the draft order: {what}" if locale == "en" else f"删除草稿医嘱：{what}"
        return {"type": "delete", "description": description, "resourceId": order.reference}

    def _create_medication(self, order: DraftOrder, drug: Any, locale: str) -> dict[str, Any]:
        return self._new_medication_request(order, drug.default_product, drug.name(locale), locale, label_dosage=True)

    def _new_medication_request(
        self, order: DraftOrder, product: Any, name: str, locale: str, keep_extra: tuple[str, ...] = (),
        label_dosage: bool = False,
    ) -> dict[str, Any]:
        """A `create` of a draft MedicationRequest for `product`, carrying over the draft's context."""
        draft = order.resource
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self.uuids(),
            "status": "draft",
            "intent": draft.get("intent", "order") if isinstance(draft.get("intent"), str) else "order",
            "medicationCodeableConcept": {"coding": [_coding(product.code, product.display)], "text": product.display},
            "subject": self._subject(draft),
        }
        keep = ("encounter", "requester", "reasonCode", "reasonReference", "priority", "authoredOn", *keep_extra)
        resource.update(_draft_fields(draft, keep))
        if label_dosage and product.dosage:
            resource["dosageInstruction"] = [{"text": product.dosage.get("en", "")}]
        MedicationRequest.model_validate(resource)
        description = f"Order {name} ({product.display})" if locale == "en" else f"开具 {name}（{product.display}）"
        return {"type": "create", "description": description, "resource": resource}

    def _create_service_request(self, order: DraftOrder, code: str | None, display: str, locale: str) -> dict[str, Any]:
        draft = order.resource
        concept: dict[str, Any] = {"text": display}
        if code:
            concept["coding"] = [_coding(code, display)]
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": self.uuids(),
            "status": "draft",
            "intent": "order",
            "code": concept,
            "subject": self._subject(draft),
        }
        resource.update(_draft_fields(draft, ("encounter", "requester")))
        ServiceRequest.model_validate(resource)
        description = f"Order {display}" if locale == "en" else f"开具检查：{display}"
        return {"type": "create", "description": description, "resource": resource}

    def _update_dose(self, order: DraftOrder, text: str, locale: str) -> dict[str, Any]:
        resource = self._updatable(order)
        resource["dosageInstruction"] = [{"text": text}]
        MedicationRequest.model_validate(resource)
        description = f"Change the dose: {text}" if locale == "en" else f"调整剂量：{text}"
        return {"type": "update", "description": description, "resource": resource}
