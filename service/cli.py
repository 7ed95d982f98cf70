"""`precision-cds`: serve, lint, test, evaluate.

One function per command. Errors a user can fix are printed as
`file:line:column: reason` and exit non-zero; they never show a traceback.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from .config import PROJECT_ROOT, load_settings
from .errors import PackError, Problem


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # urllib3 logs request paths (patient ids) at DEBUG


@click.group(help="Clinical decision support over CDS Hooks: pharmacogenomics, companion diagnostics, formulary.")
@click.version_option(package_name="precision-cds")
def main() -> None:
    pass


@main.command(short_help="Run the CDS Hooks service under gunicorn.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), help="Rule pack folder (default: rules/).")
@click.option("--knowledge", "knowledge_dir", type=click.Path(file_okay=False, path_type=Path), help="Knowledge folder (default: knowledge/).")
@click.option("--database-url", help="SQLAlchemy URL (default: SQLite under data/). e.g. postgresql://user@host/db")
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=1, show_default=True, type=int,
              help="Threads per worker. 1 (sync workers) is fastest for CPU-bound advice; raise --workers, not threads, when the EHR often leaves prefetch to be fetched.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), help="TOML or JSON settings file.")
def serve(host: str, port: int, rules_dir: Path | None, knowledge_dir: Path | None, database_url: str | None,
          workers: int, threads: int, config_file: str | None) -> None:
    """Serve discovery, invocation and feedback endpoints with a production WSGI server."""
    from gunicorn.app.base import BaseApplication

    settings = load_settings(
        {"rules_dir": rules_dir, "knowledge_dir": knowledge_dir, "database_url": database_url}, config_file=config_file
    )
    _configure_logging(settings.log_level)
    # Build the rule set once, before forking: a broken pack stops here with file:line, and
    # the workers inherit the compiled set instead of each compiling it again.
    from .engine.holder import fingerprint

    prints = fingerprint(settings.rules_dir, settings.knowledge_dir)
    prebuilt = (_lint_or_exit(settings.rules_dir, settings.knowledge_dir, settings.include_draft_packs), prints)
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's sight: no full-collection pauses, less copy-on-write

    from .app import create_app

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("timeout", 30)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("keepalive", 5)
            self.cfg.set("control_socket_disable", True)  # several instances on one host must not share it
            self.cfg.set("accesslog", None)  # access logs would carry request paths; our own log line is enough

        def load(self) -> Any:
            app = create_app(settings, prebuilt=prebuilt)
            gc.collect()
            gc.freeze()
            return app

    Server().run()


def _lint_or_exit(rules_dir: Path, knowledge_dir: Path, include_draft: bool) -> Any:
    from .engine.ruleset import load_ruleset

    try:
        return load_ruleset(rules_dir, knowledge_dir, include_draft=include_draft)
    except PackError as exc:
        for p in exc.problems:
            click.echo(p.format(), err=True)
        raise SystemExit(2) from None


@main.command(short_help="Check rule packs and knowledge files.")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--knowledge", "knowledge_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def lint(paths: tuple[Path, ...], knowledge_dir: Path | None, fmt: str) -> None:
    """Schema and semantic errors as file:line:column: reason. Exit 1 on any error."""
    from .engine.ruleset import build_ruleset
    from .calculators.registry import names
    from .knowledge import load_knowledge

    targets = list(paths) or [PROJECT_ROOT / "rules"]
    knowledge_dir = knowledge_dir or PROJECT_ROOT / "knowledge"
    problems: list[Problem] = []
    knowledge = None
    try:
        knowledge = load_knowledge(knowledge_dir)
    except PackError as exc:
        problems.extend(exc.problems)
    rules_count = 0
    if knowledge is not None:
        ruleset, found = build_ruleset(targets, knowledge, names(), include_draft=True)
        problems.extend(found)
        rules_count = len(ruleset.rules) if ruleset else 0
    errors = [p for p in problems if p.severity == "error"]
    if fmt == "json":
        click.echo(json.dumps({"ok": not errors, "rules": rules_count, "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            click.echo(p.format())
        click.echo(
            f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)" + (f"; {rules_count} rules OK" if not errors else ""),
            err=True,
        )
    raise SystemExit(1 if errors else 0)


@main.command(short_help="Run pack test cases (*.test.yaml).")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Packs to test (default: rules/).")
@click.option("--knowledge", "knowledge_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--examples", "examples_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--junit-xml", "junit", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("-k", "keyword", default=None, help="Only cases whose name contains this text.")
def test(paths: tuple[Path, ...], rules_dir: Path | None, knowledge_dir: Path | None, examples_dir: Path | None,
         junit: Path | None, keyword: str | None) -> None:
    """Each case: a patient, a hook, draft orders, and the rules that must (not) fire."""
    from .packtest import run_pack_tests

    rules_dir = rules_dir or PROJECT_ROOT / "rules"
    report = run_pack_tests(
        list(paths) or [rules_dir], rules_dir, knowledge_dir or PROJECT_ROOT / "knowledge",
        examples_dir or PROJECT_ROOT / "examples", keyword,
    )
    click.echo(report.table())
    if junit:
        junit.write_text(report.junit_xml(), encoding="utf-8")
    raise SystemExit(0 if report.ok else 1)


@main.command(short_help="Show the cards a physician would see for a patient and an order.")
@click.option("--patient", "patient_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="FHIR Bundle (or a CDS Hooks request) for the patient.")
@click.option("--order", "order", required=True, help="A drug/test code such as rxnorm:309362, or a FHIR order JSON file.")
@click.option("--hook", type=click.Choice(["order-sign", "order-select"]), default="order-sign", show_default=True)
@click.option("--lang", type=click.Choice(["en", "zh-CN"]), default="en", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the raw CDS Hooks response.")
@click.option("--priority", type=click.Choice(["routine", "urgent", "asap", "stat"]), default=None)
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--knowledge", "knowledge_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def evaluate(patient_file: Path, order: str, hook: str, lang: str, as_json: bool, priority: str | None,
             today: Any, rules_dir: Path | None, knowledge_dir: Path | None) -> None:
    """Cards as a physician sees them, and a trace of every rule considered."""
    from .engine.ruleset import load_ruleset
    from .packtest import build_request, load_patient_resources, order_from_spec
    from .pipeline import run_hook
    from .render_text import render_terminal

    try:
        ruleset = load_ruleset(rules_dir or PROJECT_ROOT / "rules", knowledge_dir or PROJECT_ROOT / "knowledge", include_draft=True)
    except PackError as exc:
        for p in exc.problems:
            click.echo(p.format(), err=True)
        raise SystemExit(2) from None
    resources, patient_id = load_patient_resources(patient_file)
    order_path = Path(order)
    spec: dict[str, Any]
    if order_path.is_file():
        spec = {"resource": json.loads(order_path.read_text(encoding="utf-8"))}
    else:
        key = "service" if order.startswith(("loinc:", "snomed:")) else "medication"
        spec = {key: order}
    if priority:
        spec["priority"] = priority
    draft = order_from_spec(spec, patient_id, ruleset.knowledge, 0)
    request = build_request(hook, patient_id, [draft])
    result = run_hook(ruleset, request, resources, lang, today.date() if today else date.today(), trace=True)
    if as_json:
        click.echo(json.dumps(result.response, indent=2, ensure_ascii=False))
        return
    click.echo(render_terminal(result, lang))


if __name__ == "__main__":  # pragma: no cover
    main()
