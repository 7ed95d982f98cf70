"""Code syntax per system, so `lint` can reject `loinc:84413` or `icd10:21.4`.

A code in a pack is written `system:code`; a trailing `*` on ICD, ATC and
ICD-10-PCS codes means "this code and every code below it".
"""

from __future__ import annotations

import re

_PATTERNS: dict[str, re.Pattern[str]] = {
    "rxnorm": re.compile(r"^\d{1,8}$"),
    "loinc": re.compile(r"^(\d{1,7}-\d|LA\d{1,6}-\d|LP\d{1,7}-\d|LL\d{1,6}-\d)$"),
    "snomed": re.compile(r"^\d{6,18}$"),
    "icd10": re.compile(r"^[A-Z]\d{2}(\.[0-9A-Z]{1,4})?$|^[A-Z]\d{0,2}$"),
    "icd10cn": re.compile(r"^[A-Z]\d{2}(\.[0-9A-Z]{1,6})?(x\d{3})?$|^[A-Z]\d{0,2}$"),
    "icd10pcs": re.compile(r"^[0-9A-HJ-NP-Z]{1,7}$"),
    "atc": re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$"),
    "hgnc": re.compile(r"^HGNC:\d+$"),
    "nhsa": re.compile(r"^[A-Z][A-Z0-9]{3,22}$"),
}

PREFIXABLE = frozenset({"icd10", "icd10cn", "icd10pcs", "atc"})
_PREFIX_PATTERNS: dict[str, re.Pattern[str]] = {
    "icd10": re.compile(r"^[A-Z](\d(\d(\.[0-9A-Z]{0,4})?)?)?$"),
    "icd10cn": re.compile(r"^[A-Z](\d(\d(\.[0-9A-Z]{0,6})?)?)?$"),
    "icd10pcs": re.compile(r"^[0-9A-HJ-NP-Z]{1,6}$"),
    "atc": re.compile(r"^[A-Z](\d{1,2}([A-Z]([A-Z](\d{1,2})?)?)?)?$"),
}
KNOWN_SYSTEMS = frozenset(_PATTERNS) | {"local"}


def split(key: str) -> tuple[str, str]:
    """`"icd10:I21*"` -> `("icd10", "I21*")`; a key without a colon is `local`."""
    if ":" not in key:
        return "local", key
    system, _, code = key.partition(":")
    # HGNC codes contain a colon themselves: hgnc:HGNC:2621
    return system, code


def check(key: str) -> str | None:
    """None when `key` is a well-formed `system:code`, else a reason for lint."""
    if not isinstance(key, str) or not key:
        return "a code must be a non-empty string 'system:code'"
    system, code = split(key)
    if system not in KNOWN_SYSTEMS and not system.startswith(("http://", "https://", "urn:")):
        return f"unknown code system '{system}' in '{key}' (known: {', '.join(sorted(KNOWN_SYSTEMS))})"
    if code.endswith("*"):
        if system not in PREFIXABLE:
            return f"'{key}': only {', '.join(sorted(PREFIXABLE))} codes may end with '*'"
        code = code[:-1]
        if not code:
            return f"'{key}': a prefix needs at least one character"
        return None if _PREFIX_PATTERNS[system].match(code) else f"'{key}' is not a valid {system} prefix"
    pattern = _PATTERNS.get(system)
    if pattern is not None and not pattern.match(code):
        return f"'{key}' is not a valid {system} code"
    return None


def normalise_icd(code: str) -> str:
    """ICD codes compare without the dot and in upper case: `i21.4` -> `I214`."""
    return code.replace(".", "").upper()


def match_key(key: str) -> str:
    """Form used for matching: ICD codes lose their dot so `I21.4` and `I214` agree."""
    system, code = split(key)
    if system in ("icd10", "icd10cn", "icd10pcs"):
        return f"{system}:{normalise_icd(code)}"
    return key


class CodeMatcher:
    """Matches a set of codes against exact codes and prefixes, in O(code length)."""

    __slots__ = ("exact", "prefixes", "max_prefix")

    def __init__(self, keys: list[str]) -> None:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for key in keys:
            if key.endswith("*"):
                prefixes.add(match_key(key[:-1]))
            else:
                exact.add(match_key(key))
        self.exact = frozenset(exact)
        self.prefixes = frozenset(prefixes)
        self.max_prefix = max((len(p) for p in prefixes), default=0)

    def matches(self, key: str) -> bool:
        key = match_key(key)
        if key in self.exact:
            return True
        if self.prefixes:
            limit = min(len(key), self.max_prefix)
            for end in range(key.index(":") + 2, limit + 1):
                if key[:end] in self.prefixes:
                    return True
        return False

    def matches_index(self, exact: frozenset[str], prefixes: frozenset[str]) -> bool:
        """Match against precomputed normalised codes and their prefixes (see EvalContext.code_index)."""
        return not self.exact.isdisjoint(exact) or (bool(self.prefixes) and not self.prefixes.isdisjoint(prefixes))

    def any(self, keys: frozenset[str] | set[str]) -> bool:
        return any(self.matches(k) for k in keys)

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)
