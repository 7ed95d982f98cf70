"""`{{name}}` templates for card text, shared by the renderer and `lint`.

Deliberately tiny: a pharmacist can read every template, and lint can list
the variables a template needs and check each is bound by the rule.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

_VAR = re.compile(r"\{\{\s*([A-Za-z0-9_.*-]+)\s*\}\}")

#: Longest value a variable can take, used by lint to check the 140-character summary limit.
LONGEST_VALUE: dict[str, str] = {
    "phenotype": "Likely Intermediate Metabolizer",
    "diplotype": "*10x2/*17x2",
    "activity_score": "1.5",
    "allele": "HLA-B*15:02",
    "status": "negative",
}
GENERIC_LONGEST = "x" * 24


def variables(template: str) -> list[str]:
    return _VAR.findall(template)


def render(template: str, values: Mapping[str, object], translate: Callable[[str], str] | None = None) -> str:
    """Fill `{{name}}`; unknown names render as an empty string (lint prevents them)."""

    def sub(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return ""
        text = f"{value:g}" if isinstance(value, float) else str(value)
        return translate(text) if translate else text

    return _VAR.sub(sub, template)


def worst_case(template: str, translate: Callable[[str], str] | None = None) -> str:
    """The template filled with the longest value each variable can take."""
    values = {}
    for name in variables(template):
        leaf = name.rsplit(".", 1)[-1]
        values[name] = LONGEST_VALUE.get(leaf, GENERIC_LONGEST)
    return render(template, values, translate)


def is_bound(name: str, bound: set[str]) -> bool:
    if name in bound or name.split(".", 1)[0] in ("order", "patient"):
        return True
    head = name.split(".", 1)[0]
    return f"{head}.*" in bound
