"""YAML loading that remembers where every value came from.

Pharmacists fix packs from error messages, so every error must name
`file:line:column`. PyYAML's composer knows node positions; we keep them on
the loaded mappings and sequences (`Located*`) and offer `locate()` to turn a
JSON-Schema error path back into a position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import PackError, Problem


class LocatedDict(dict[str, Any]):
    """A mapping that knows its own position and the position of each key."""

    __slots__ = ("start", "key_pos")

    def __init__(self) -> None:
        super().__init__()
        self.start: tuple[int, int] = (1, 1)
        self.key_pos: dict[str, tuple[int, int]] = {}


class LocatedList(list[Any]):
    """A sequence that knows its own position and each item's position."""

    __slots__ = ("start", "item_pos")

    def __init__(self) -> None:
        super().__init__()
        self.start: tuple[int, int] = (1, 1)
        self.item_pos: list[tuple[int, int]] = []


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


if getattr(yaml, "__with_libyaml__", False):

    class _Loader(yaml.cyaml.CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """Safe loader (libyaml parser, same node positions) that builds Located containers and refuses duplicate keys.

        libyaml parses several times faster than the pure-Python parser; rule sets load in every
        worker at start-up and on every reload, so this matters. Without libyaml, see below.
        """

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(yaml.SafeLoader):  # type: ignore[no-redef]
        """Safe loader that builds Located containers and refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    result = LocatedDict()
    result.start = _pos(node)
    own: set[str] = set()
    for key_node, _ in node.value:  # duplicates among the keys written here (merged keys may be overridden)
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in own:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                )
            own.add(key_node.value)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            )
        key = str(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_pos[key] = _pos(key_node)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList()
    result.start = _pos(node)
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_pos.append(_pos(item))
    return result


def _construct_timestamp_as_text(loader: _Loader, node: yaml.ScalarNode) -> str:
    """Dates stay strings: the schema checks their format, and JSON has no dates."""
    return str(loader.construct_scalar(node))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_text)


def load_yaml(path: Path, display_name: str | None = None) -> Any:
    """Load one YAML file; syntax errors become a PackError with file:line:column."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError([Problem(name, 1, 1, f"cannot read file: {exc}", check="yaml")]) from None
    return loads_yaml(text, name)


def loads_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or str(exc)
        if exc.context:
            reason = f"{exc.context}: {reason}"
        raise PackError([Problem(name, line, col, f"invalid YAML: {reason}", check="yaml")]) from None
    except yaml.YAMLError as exc:
        raise PackError([Problem(name, 1, 1, f"invalid YAML: {exc}", check="yaml")]) from None


def locate(root: Any, path: Iterable[str | int]) -> tuple[int, int]:
    """Position of the value at `path` (keys and indexes), or of its nearest parent."""
    node = root
    best: tuple[int, int] = getattr(root, "start", (1, 1))
    for step in path:
        if isinstance(node, LocatedDict) and isinstance(step, str) and step in node:
            best = node.key_pos.get(step, best)
            node = node[step]
        elif isinstance(node, LocatedList) and isinstance(step, int) and 0 <= step < len(node):
            best = node.item_pos[step] if step < len(node.item_pos) else best
            node = node[step]
        else:
            break
    return best


def plain(value: Any) -> Any:
    """Located containers back to plain dict/list (for JSON output and hashing)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
