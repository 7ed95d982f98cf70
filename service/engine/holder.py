"""The one piece of global mutable state: the rule set in service, and how it is replaced.

A new set (packs + knowledge) is linted and compiled to the side and swapped
in with one assignment. If anything is wrong the last good set keeps serving
and the error is kept for `/status` and the log.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import PackError, Problem
from .ruleset import RuleSet, load_ruleset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    version: str | None
    problems: list[Problem]
    at: datetime


def fingerprint(*dirs: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detection: path, size and mtime of every file under the folders."""
    out: list[tuple[str, int, int]] = []
    for root in dirs:
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
                    st = path.stat()
                    out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


class RuleSetHolder:
    def __init__(self, rules_dir: Path, knowledge_dir: Path, include_draft: bool = False,
                 initial: tuple[RuleSet, tuple[tuple[str, int, int], ...]] | None = None) -> None:
        """`initial`: a set already built (with the fingerprint of the files it was built from),
        e.g. by `serve` before forking, so that every worker does not compile it again."""
        self.rules_dir = rules_dir
        self.knowledge_dir = knowledge_dir
        self.include_draft = include_draft
        self._lock = threading.Lock()
        if initial is not None:
            self.current, self._fingerprint = initial
        else:
            self._fingerprint = fingerprint(rules_dir, knowledge_dir)
            self.current = load_ruleset(rules_dir, knowledge_dir, include_draft=include_draft)
        self.last: ReloadOutcome = ReloadOutcome(True, self.current.version, [], datetime.now(timezone.utc))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self) -> ReloadOutcome:
        """Build a new set aside; swap it in only if it is entirely valid."""
        with self._lock:
            prints = fingerprint(self.rules_dir, self.knowledge_dir)
            try:
                fresh = load_ruleset(self.rules_dir, self.knowledge_dir, include_draft=self.include_draft)
            except PackError as exc:
                self._fingerprint = prints
                self.last = ReloadOutcome(False, self.current.version, exc.problems, datetime.now(timezone.utc))
                log.error(
                    "rule set reload refused; still serving version %s:\n%s",
                    self.current.version,
                    "\n".join(p.format() for p in exc.problems[:20]),
                )
                return self.last
            except Exception as exc:  # a loader bug must not take the service down either
                self._fingerprint = prints
                problem = Problem(str(self.rules_dir), 1, 1, f"unexpected error while loading: {type(exc).__name__}", check="load")
                self.last = ReloadOutcome(False, self.current.version, [problem], datetime.now(timezone.utc))
                log.exception("rule set reload failed; still serving version %s", self.current.version)
                return self.last
            self._fingerprint = prints
            changed = fresh.version != self.current.version
            self.current = fresh
            self.last = ReloadOutcome(True, fresh.version, [], datetime.now(timezone.utc))
            if changed:
                log.info("rule set version %s in service (%d rules)", fresh.version, len(fresh.rules))
            return self.last

    def reload_if_changed(self) -> ReloadOutcome | None:
        if fingerprint(self.rules_dir, self.knowledge_dir) == self._fingerprint:
            return None
        return self.reload()

    def watch(self, interval: float) -> None:
        """Poll the folders for changes in a daemon thread (works on every filesystem)."""
        if interval <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload_if_changed()
                except Exception:  # pragma: no cover - keep watching whatever happens
                    log.exception("rule set watcher error")

        self._thread = threading.Thread(target=loop, name="ruleset-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def status(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.current.status())
        out["lastReload"] = {
            "ok": self.last.ok,
            "at": self.last.at.isoformat(),
            "problems": [p.as_dict() for p in self.last.problems],
        }
        return out
