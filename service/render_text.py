"""Terminal view of cards and rule traces for `precision-cds evaluate`."""

from __future__ import annotations

import textwrap

from .pipeline import HookResult

_MARK = {"critical": "!!", "warning": "! ", "info": "i "}


def render_terminal(result: HookResult, lang: str) -> str:
    lines: list[str] = []
    if not result.cards:
        lines.append("No cards: nothing to tell the physician for this order.")
    for _, card in result.cards:
        lines.append("+" + "-" * 78)
        lines.append(f"| [{_MARK[card['indicator']]}] {card['indicator'].upper()}: {card['summary']}")
        for para in card.get("detail", "").splitlines():
            for wrapped in textwrap.wrap(para, 74) or [""]:
                lines.append(f"|   {wrapped}")
        for sug in card.get("suggestions", []):
            star = " (recommended)" if sug.get("isRecommended") else ""
            lines.append(f"|   -> {sug['label']}{star}")
            for action in sug.get("actions", []):
                lines.append(f"|        {action['type']}: {action['description']}")
        for reason in card.get("overrideReasons", []):
            lines.append(f"|   override: {reason['display']}")
        lines.append(f"|   source: {card['source']['label']} <{card['source'].get('url', '')}>")
    if result.cards:
        lines.append("+" + "-" * 78)
    if result.traces is not None:
        lines.append("")
        lines.append("Rules considered:")
        if not result.traces:
            lines.append("  (no rule is triggered by this order)")
        for trace in result.traces:
            verdict = "FIRED " if trace.fired else "no    "
            lines.append(f"  {verdict} {trace.rule_id}  [{trace.order}]")
            if trace.skipped:
                lines.append(f"         skipped: {trace.skipped}")
            for depth, label, ok, why in trace.steps:
                lines.append(f"         {'  ' * depth}{'✓' if ok else '✗'} {label}: {why}")
    return "\n".join(lines)
