"""The shared standard as data files (schemas, code lists, XSD, indicators) and the loader that reads them
(`build.py` regenerates two code lists from the maintained `vietnamadminunits` package). Imports no other room."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path
from typing import Any

STANDARD_VERSION = "1.0.0"
STANDARD_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = STANDARD_DIR / "schemas"
CODELIST_DIR = STANDARD_DIR / "codelists"

ENTITIES = ("agency", "admin_unit", "procedure", "dossier", "dossier_event")


class UnknownStandardItem(LookupError):
    """Asked for a schema or code list the standard does not define."""


@cache
def load_schema(entity: str) -> dict[str, Any]:
    """The JSON Schema of one entity of the standard."""
    path = SCHEMA_DIR / f"{entity}.json"
    if not path.is_file():
        raise UnknownStandardItem(f"the standard has no schema for {entity!r} (known: {', '.join(ENTITIES)})")
    return json.loads(path.read_text(encoding="utf-8"))


def codelist_names() -> list[str]:
    """Names of every code list of the standard."""
    return sorted(p.stem for p in CODELIST_DIR.glob("*.csv") if not p.stem.endswith("_base"))


@cache
def _read_codelist(name: str) -> tuple[dict[str, str], ...]:
    path = CODELIST_DIR / f"{name}.csv"
    if not path.is_file():
        raise UnknownStandardItem(f"the standard has no code list {name!r} (known: {', '.join(codelist_names())})")
    with path.open(encoding="utf-8", newline="") as f:
        return tuple(csv.DictReader(f))


def load_codelist(name: str) -> list[dict[str, str]]:
    """Rows of one code list, as dicts of strings (a fresh copy each call)."""
    return [dict(row) for row in _read_codelist(name)]


def codes(name: str) -> frozenset[str]:
    """The valid codes of a code list (its first column)."""
    rows = _read_codelist(name)
    key = next(iter(rows[0])) if rows else "code"
    return frozenset(row[key] for row in rows)


def lookup(name: str, code: str | int) -> dict[str, str] | None:
    """The row of a code list for one code, or None."""
    rows = _read_codelist(name)
    key = next(iter(rows[0]))
    return next((dict(row) for row in rows if row[key] == str(code)), None)


def status_groups() -> dict[str, frozenset[int]]:
    """Report groups of dossier status (in_progress, finished, paused, not_received) plus `received`."""
    groups: dict[str, set[int]] = {}
    for row in _read_codelist("dossier_status"):
        groups.setdefault(row["status_group"], set()).add(int(row["code"]))
    out = {k: frozenset(v) for k, v in groups.items()}
    out["received"] = frozenset(int(r["code"]) for r in _read_codelist("dossier_status")
                                if r["status_group"] != "not_received")
    return out


def key_of(entity: str) -> list[str]:
    """The key columns of an entity."""
    return list(load_schema(entity)["x-key"])


# ── report indicators (standards/indicators.yaml) ───────────────────────────────────────────────

INDICATORS_FILE = STANDARD_DIR / "indicators.yaml"


class IndicatorDefinitionError(ValueError):
    """A broken indicator definition; the message is one line naming the indicator and the field."""


def load_indicators(path: Path | str | None = None) -> list[dict[str, Any]]:
    """The indicator definitions of the standard, checked against `schemas/indicators.schema.json`.

    Raises IndicatorDefinitionError (one line: file, indicator id, field, problem) for a file that
    breaks the schema or repeats an id. The formulas' columns and codes are checked when their
    SQL is built (`warehouse.indicator_sql`).
    """
    import jsonschema
    import yaml

    path = Path(path) if path is not None else INDICATORS_FILE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise IndicatorDefinitionError(f"{path.name}: not valid YAML: "
                                       + " ".join(str(exc).split())) from None
    schema = json.loads((SCHEMA_DIR / "indicators.schema.json").read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        raise IndicatorDefinitionError(_indicator_error(path, document, error)) from None
    seen: set[str] = set()
    for item in document["indicators"]:
        if item["id"] in seen:
            raise IndicatorDefinitionError(f"{path.name}: indicator {item['id']!r}: id: defined twice")
        seen.add(item["id"])
    return document["indicators"]


def _indicator_error(path: Path, document: Any, error: Any) -> str:
    where = list(error.absolute_path)
    name = "(file)"
    if len(where) >= 2 and where[0] == "indicators" and isinstance(where[1], int):
        item = document["indicators"][where[1]]
        name = repr(item.get("id")) if isinstance(item, dict) and item.get("id") else f"#{where[1] + 1}"
        where = where[2:]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".") or "(whole)"
    message = " ".join(error.message.split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{path.name}: indicator {name}: {field}: {message}"
