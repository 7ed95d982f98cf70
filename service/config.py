"""Configuration in one place: typed defaults, then a TOML/JSON file, then `PCDS_*` variables.

The embedded defaults run the service from a checkout with no set-up:
packs from `rules/`, knowledge from `knowledge/`, SQLite under `data/`,
authentication off (with a start-up warning).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    rules_dir: Path = PROJECT_ROOT / "rules"
    knowledge_dir: Path = PROJECT_ROOT / "knowledge"
    data_dir: Path = PROJECT_ROOT / "data"
    database_url: str = ""  # empty: sqlite:///<data_dir>/precision-cds.sqlite3
    #: Key for the keyed hash of patient ids in the audit store. Empty: a random key kept in data_dir.
    audit_hash_key: str = ""
    default_locale: str = "en"
    include_draft_packs: bool = False
    #: Suppress at order-sign a card the same rule already returned at order-select for the same draft.
    suppress_repeat_at_sign: bool = False
    reload_interval_seconds: float = 2.0  # 0 disables polling for changed packs
    max_body_bytes: int = 5 * 1024 * 1024
    fhir_connect_timeout: float = 2.0
    fhir_read_timeout: float = 3.0
    fhir_total_budget: float = 4.0
    fhir_max_pages: int = 5
    auth_enabled: bool = False
    admin_token: str = ""  # bearer token for POST /admin/reload; empty disables the endpoint
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'precision-cds.sqlite3'}"


_PATHS = {"rules_dir", "knowledge_dir", "data_dir"}


def _coerce(name: str, raw: Any, current: Any) -> Any:
    if name in _PATHS:
        return Path(raw).expanduser().resolve()
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(current, int) and not isinstance(current, bool):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, tuple):
        if isinstance(raw, (list, tuple)):
            return tuple(str(x) for x in raw)
        return tuple(s.strip() for s in str(raw).split(",") if s.strip())
    return str(raw)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < config file (`PCDS_CONFIG` or argument) < `PCDS_<NAME>` env < explicit overrides."""
    env = os.environ if environ is None else environ
    settings = Settings()
    known = {f.name: f for f in fields(Settings) if f.name != "extra"}
    values: dict[str, Any] = {}
    path = config_file or env.get("PCDS_CONFIG")
    if path:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else tomllib.loads(text)
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"{path}: unknown setting '{key}' (known: {', '.join(sorted(known))})")
            values[key] = value
    for name in known:
        env_name = f"PCDS_{name.upper()}"
        if env_name in env:
            values[name] = env[env_name]
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"unknown setting '{key}'")
        if value is not None:
            values[key] = value
    coerced = {k: _coerce(k, v, getattr(settings, k)) for k, v in values.items()}
    return replace(settings, **coerced)
