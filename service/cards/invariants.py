"""CDS Hooks 2.0 response invariants, checked on every response we send.

The cds-resp-N ids follow the FSH invariants of the CDS Hooks specification
(HL7/cds-hooks `fsh/invariants`); the remaining checks are the spec's prose
rules (required fields, summary length, no empty values).
"""

from __future__ import annotations

from typing import Any

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}
SELECTION = {"at-most-one", "any"}


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _no_empty_fields(obj: Any, path: str, out: list[str]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if _empty(value) and not (path == "" and key == "cards"):
                out.append(f"{path}{key}: empty values are not allowed")
            _no_empty_fields(value, f"{path}{key}.", out)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _no_empty_fields(value, f"{path[:-1]}[{i}].", out)


def response_violations(response: dict[str, Any]) -> list[str]:
    """All violations in a CDS Hooks response; empty means the response is valid."""
    out: list[str] = []
    if not isinstance(response.get("cards"), list):
        return ["cards: required array"]
    _no_empty_fields({k: v for k, v in response.items() if k != "cards"}, "", out)
    for i, card in enumerate(response["cards"]):
        out.extend(card_violations(card, f"cards[{i}]"))
    for i, action in enumerate(response.get("systemActions", [])):
        out.extend(_action_violations(action, f"systemActions[{i}]"))
    return out


def card_violations(card: dict[str, Any], where: str = "card") -> list[str]:
    out: list[str] = []
    _no_empty_fields(card, f"{where}.", out)
    if not isinstance(card.get("uuid"), str):
        out.append(f"{where}.uuid: required for feedback")
    summary = card.get("summary")
    if not isinstance(summary, str) or not summary:
        out.append(f"{where}.summary: required")
    elif len(summary) >= 140:
        out.append(f"{where}.summary: must be under 140 characters")
    if card.get("indicator") not in INDICATORS:
        out.append(f"{where}.indicator: must be info, warning or critical")
    source = card.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("label"), str):
        out.append(f"{where}.source.label: required")
    suggestions = card.get("suggestions")
    if suggestions is not None:
        behaviour = card.get("selectionBehavior")
        if behaviour not in SELECTION:
            out.append(f"{where}.selectionBehavior: required when suggestions are present (cds-resp-6)")
        if behaviour == "at-most-one" and sum(1 for s in suggestions if s.get("isRecommended")) > 1:
            out.append(f"{where}: at most one recommended suggestion with at-most-one (cds-resp-1)")
        for j, sug in enumerate(suggestions):
            here = f"{where}.suggestions[{j}]"
            if not isinstance(sug.get("label"), str):
                out.append(f"{here}.label: required")
            if not isinstance(sug.get("uuid"), str):
                out.append(f"{here}.uuid: required for feedback")
            for k, action in enumerate(sug.get("actions", [])):
                out.extend(_action_violations(action, f"{here}.actions[{k}]"))
    for j, reason in enumerate(card.get("overrideReasons", []) or []):
        if not isinstance(reason, dict) or not isinstance(reason.get("display"), str):
            out.append(f"{where}.overrideReasons[{j}].display: required (cds-resp-4)")
    for j, link in enumerate(card.get("links", []) or []):
        for key in ("label", "url", "type"):
            if not isinstance(link.get(key), str):
                out.append(f"{where}.links[{j}].{key}: required")
        if link.get("type") not in LINK_TYPES:
            out.append(f"{where}.links[{j}].type: must be absolute or smart")
        if "appContext" in link and link.get("type") != "smart":
            out.append(f"{where}.links[{j}].appContext: only on smart links (cds-resp-3)")
    return out


def _action_violations(action: dict[str, Any], where: str) -> list[str]:
    out: list[str] = []
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        out.append(f"{where}.type: must be create, update or delete")
    if not isinstance(action.get("description"), str) or not action.get("description"):
        out.append(f"{where}.description: required (cds-resp-5)")
    if kind == "delete":
        if "resource" in action:
            out.append(f"{where}: a delete uses resourceId, not resource (cds-resp-2)")
        if not isinstance(action.get("resourceId"), str):
            out.append(f"{where}.resourceId: required for delete")
    if kind in ("create", "update") and not isinstance(action.get("resource"), dict):
        out.append(f"{where}.resource: required for {kind}")
    return out


def feedback_violations(body: Any) -> list[tuple[str, str]]:
    """cds-fb-1..3 plus required fields; (field, reason) pairs."""
    if not isinstance(body, dict):
        return [("(body)", "must be a JSON object")]
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        return [("feedback", "must be a non-empty array")]
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            out.append((where, "must be an object"))
            continue
        if not isinstance(item.get("card"), str) or not item["card"]:
            out.append((f"{where}.card", "is required (the card's uuid)"))
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            out.append((f"{where}.outcome", "must be 'accepted' or 'overridden' (cds-fb-1)"))
        ts = item.get("outcomeTimestamp")
        if not isinstance(ts, str) or not _iso_instant(ts):
            out.append((f"{where}.outcomeTimestamp", "is required as an ISO 8601 instant"))
        accepted = item.get("acceptedSuggestions")
        if outcome == "accepted":
            if not isinstance(accepted, list) or not accepted or not all(
                isinstance(a, dict) and isinstance(a.get("id"), str) for a in accepted
            ):
                out.append((f"{where}.acceptedSuggestions", "is required when accepted: [{\"id\": <suggestion uuid>}] (cds-fb-2)"))
        reason = item.get("overrideReason")
        if reason is not None:
            if not isinstance(reason, dict):
                out.append((f"{where}.overrideReason", "must be an object"))
            else:
                coding = reason.get("reason")
                comment = reason.get("userComment")
                if coding is None and not comment:
                    out.append((f"{where}.overrideReason", "needs a reason or a userComment (cds-fb-3)"))
                if coding is not None and (not isinstance(coding, dict) or not isinstance(coding.get("code"), str)):
                    out.append((f"{where}.overrideReason.reason", "must be a Coding with a code"))
                if comment is not None and not isinstance(comment, str):
                    out.append((f"{where}.overrideReason.userComment", "must be a string"))
            if outcome == "accepted":
                out.append((f"{where}.overrideReason", "only allowed when the outcome is overridden"))
    return out


def _iso_instant(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text
