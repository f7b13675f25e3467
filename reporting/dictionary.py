"""The data dictionary: every warehouse table and view, column by column, in Vietnamese and English."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import standards

REPO_DIR = Path(__file__).resolve().parent.parent
DICTIONARY_FILE = REPO_DIR / "docs" / "data_dictionary.md"
INDICATORS_FILE = standards.STANDARD_DIR / "indicators.yaml"

# Table groups, in the order the dictionary lists them.
GROUPS = (
    ("mart_", "Marts (views and tables for reports)", "Bảng và khung nhìn báo cáo"),
    ("fact_", "Facts", "Bảng sự kiện"),
    ("dim_", "Dimensions", "Bảng chiều"),
    ("ops_", "Operations", "Vận hành"),
)

# The standard entity each table carries (its columns' code lists come from the schema).
ENTITY_TABLES = {
    "fact_dossier": "dossier", "fact_dossier_event": "dossier_event", "dim_procedure": "procedure",
    "dim_agency": "agency", "dim_admin_unit": "admin_unit", "fact_service_stat": "service_stat",
}

# Vietnamese titles of the views of warehouse/views.py (their docs, in English, say the rest).
VIEW_TITLES_VI = {
    "mart_dossier": "Hồ sơ, mỗi hồ sơ một dòng, không có mã định danh người nộp",
    "mart_dossier_received": "Hồ sơ tiếp nhận theo tháng, cơ quan, thủ tục và kênh",
    "mart_dossier_finished": "Hồ sơ đã giải quyết theo tháng, cơ quan và thủ tục (trước hạn, đúng hạn, quá hạn)",
    "mart_procedure_level": "Các giai đoạn mức độ trực tuyến của từng thủ tục, để hỏi theo ngày",
    "mart_quarantine_summary": "Số dòng bị cách ly theo lô",
}

# View columns computed by the view itself (the others are described by the table they come from).
VIEW_COLUMNS = {
    "dossiers": "Số hồ sơ / Number of dossiers",
    "finished": "Số hồ sơ đã giải quyết / Dossiers finished",
    "early": "Số hồ sơ giải quyết trước hạn (ngày kết thúc < ngày hẹn trả) / Finished early (finish date "
             "before the due date)",
    "on_time": "Số hồ sơ giải quyết đúng hạn (ngày kết thúc = ngày hẹn trả) / Finished on time (finish date "
               "equal to the due date)",
    "late": "Số hồ sơ giải quyết quá hạn (ngày kết thúc > ngày hẹn trả) / Finished late (finish date after the "
            "due date)",
    "rows": "Số dòng bị cách ly / Rows quarantined",
}

# Columns of the generated indicator views `mart_<indicator id>` (warehouse/indicator_sql.py).
INDICATOR_VIEW_COLUMNS = {
    "period_kind": "Loại kỳ: month (tháng), quarter (quý), year (năm) / Period kind: month, quarter, year",
    "period": "Kỳ: YYYY-MM, YYYY-Qn hoặc YYYY / Period: YYYY-MM, YYYY-Qn or YYYY",
    "scope": "Phạm vi: province (toàn tỉnh), agency (theo cơ quan), admin_unit (theo đơn vị hành chính) / "
             "Scope: province, agency, admin_unit",
    "agency_code": "Mã cơ quan (chỉ khi phạm vi agency) / Agency code (scope agency only)",
    "admin_unit_code": "Mã đơn vị hành chính (chỉ khi phạm vi admin_unit) / Administrative unit code (scope "
                       "admin_unit only)",
    "dimension": "Giá trị chiều phân tích (trống nếu chỉ tiêu không có) / Breakdown value (empty when the "
                 "indicator has none)",
    "numerator": "Tử số (hoặc số đếm) / Numerator (or the count)",
    "denominator": "Mẫu số (trống với chỉ tiêu đếm) / Denominator (empty for a count)",
    "value": "Giá trị: số đếm, hoặc tử số × hệ số ÷ mẫu số làm tròn 2 chữ số (trống khi mẫu số bằng 0) / "
             "Value: the count, or numerator × scale ÷ denominator rounded to 2 places (empty when the "
             "denominator is 0)",
}

# Where a view column not computed by the view comes from: the first table the view reads that
# has it, else the first of these.
SOURCE_TABLES = ("fact_dossier", "dim_procedure", "dim_procedure_level", "dim_dossier_status",
                 "ops_quarantine", "mart_indicator")


def split_bilingual(text: str | None) -> tuple[str, str]:
    """A "vi / en" description as (vi, en); ("", "") when missing, ("", text) when not bilingual."""
    if not text:
        return "", ""
    vi, sep, en = text.partition(" / ")
    return (vi.strip(), en.strip()) if sep else ("", text.strip())


def collect_dictionary() -> dict[str, Any]:
    """Everything the dictionary says, as data: tables, views, indicators, code lists, entities."""
    from warehouse.schema import metadata

    views = _reflect_views()
    indicators = _load_indicators()
    relations = [_table_entry(table) for table in metadata.tables.values()]
    relations += [_view_entry(name, doc, columns, tables, indicators)
                  for name, (doc, columns, tables) in views.items()]
    order = {prefix: i for i, (prefix, _, _) in enumerate(GROUPS)}
    relations.sort(key=lambda r: (order.get(_group_of(r["name"]), len(GROUPS)), r["name"]))
    return {
        "standard_version": standards.STANDARD_VERSION,
        "relations": relations,
        "indicators": [_indicator_entry(item, views) for item in indicators],
        "codelists": [_codelist_entry(name) for name in standards.codelist_names()],
        "entities": [_entity_entry(entity) for entity in _entities()],
    }


def render_markdown(dictionary: dict[str, Any]) -> str:
    """The dictionary as the Markdown page committed as docs/data_dictionary.md."""
    out = [
        "# Data dictionary — Từ điển dữ liệu",
        "",
        "<!-- Generated by `lienthong docs dictionary --out docs/data_dictionary.md` "
        "(reporting/dictionary.py); do not edit by hand. -->",
        "",
        f"Standard v{dictionary['standard_version']}. Every warehouse table and view a report reads, "
        "column by column, in Vietnamese and English. Sources: the table and column comments of "
        "`warehouse/schema.py`, the view docs of `warehouse/views.py` (and of the generated indicator "
        "views), `standards/indicators.yaml`, the code lists and JSON Schemas of `standards/`.",
        "",
        "Times are UTC instants (`timestamptz` on PostgreSQL); `*_date` and `*_month` columns are the "
        "local calendar (Asia/Ho_Chi_Minh). Validity periods run from `valid_from` (inclusive) to "
        "`valid_to` (exclusive in the SCD2 tables `dim_procedure_level` and `dim_agency_version`; the "
        "last day in force in the code-list tables `dim_agency` and `dim_admin_unit`).",
        "",
        "The comments are in the database too: PostgreSQL holds them (`\\d+ table`, "
        "`obj_description`/`col_description`), set by migration `0004`; SQLite keeps none. A comment "
        "changed later in `warehouse/schema.py` reaches PostgreSQL only through a new migration.",
        "",
        "## Contents",
        "",
    ]
    for prefix, title_en, title_vi in GROUPS:
        names = [r for r in dictionary["relations"] if _group_of(r["name"]) == prefix]
        links = ", ".join(f"[`{r['name']}`](#{r['name']})" for r in names)
        out.append(f"- {title_en} — {title_vi}: {links}")
    out += ["- [Indicators — Chỉ tiêu](#indicators)", "- [Code lists — Danh mục](#code-lists)",
            "- [Standard entities — Thực thể chuẩn](#standard-entities)", ""]

    for prefix, title_en, title_vi in GROUPS:
        out += [f"## {title_en} — {title_vi}", ""]
        for relation in dictionary["relations"]:
            if _group_of(relation["name"]) == prefix:
                out += _relation_markdown(relation)

    out += ["## Indicators", ""]
    if dictionary["indicators"]:
        out += ["From `standards/indicators.yaml`. `lienthong report --format json` gives their "
                "values; `mart_indicator` holds them materialised.", "",
                "| id | Tên (vi) | Name (en) | unit | kind | view | description |",
                "|---|---|---|---|---|---|---|"]
        for item in dictionary["indicators"]:
            view = f"`{item['view']}`" if item["view"] else ""
            out.append(f"| `{item['id']}` | {_cell(item['name_vi'])} | {_cell(item['name_en'])} | "
                       f"{_cell(item['unit'])} | {_cell(item['kind'])} | {view} | "
                       f"{_cell(item['description'])} |")
    else:
        out.append("`standards/indicators.yaml` is not there: no indicator definitions to list.")
    out.append("")

    out += ["## Code lists", "",
            "`standards/codelists/*.csv`, loaded with `standards.load_codelist(name)`; the small ones "
            "in full.", ""]
    for codelist in dictionary["codelists"]:
        out.append(f"### `{codelist['name']}`")
        out.append("")
        out.append(f"{codelist['rows']} rows; columns {', '.join(f'`{c}`' for c in codelist['columns'])}.")
        out.append("")
        if codelist["values"]:
            columns = codelist["columns"]
            out.append("| " + " | ".join(columns) + " |")
            out.append("|" + "---|" * len(columns))
            for row in codelist["values"]:
                out.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
            out.append("")

    out += ["## Standard entities", "",
            "The input/output standard (`standards/schemas/<entity>.json`): what a source must send.",
            ""]
    for entity in dictionary["entities"]:
        out += [f"### `{entity['name']}`", "", _cell(entity["description"]), "",
                "| field | type | required | code list / reference | description |",
                "|---|---|---|---|---|"]
        for prop in entity["properties"]:
            out.append(f"| `{prop['name']}` | {_cell(prop['type'])} | {'yes' if prop['required'] else ''} | "
                       f"{_cell(prop['codelist'])} | {_cell(prop['description'])} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def render_json(dictionary: dict[str, Any]) -> str:
    """The dictionary as JSON (UTF-8, keys in a stable order)."""
    return json.dumps(dictionary, ensure_ascii=False, indent=2) + "\n"


def generate_dictionary(fmt: str = "md") -> str:
    """The dictionary in `md` or `json`."""
    renderers = {"md": render_markdown, "json": render_json}
    if fmt not in renderers:
        raise ValueError(f"unknown dictionary format {fmt!r} (known: {', '.join(renderers)})")
    return renderers[fmt](collect_dictionary())


# ── tables ──────────────────────────────────────────────────────────────────────────────────────

def _table_entry(table: sa.Table) -> dict[str, Any]:
    vi, en = split_bilingual(table.comment)
    codelists = _entity_codelists(ENTITY_TABLES.get(table.name))
    columns = []
    for column in table.columns:
        col_vi, col_en = split_bilingual(column.comment)
        columns.append({
            "name": column.name, "type": _type_name(column.type), "key": column.primary_key,
            "nullable": bool(column.nullable) and not column.primary_key,
            "codelist": codelists.get(column.name, ""), "vi": col_vi, "en": col_en,
        })
    return {"name": table.name, "kind": "table", "vi": vi, "en": en, "columns": columns}


def _type_name(type_: sa.types.TypeEngine) -> str:
    """The column type as PostgreSQL spells it (the production database)."""
    return type_.compile(dialect=postgresql.dialect()).lower()


# ── views ───────────────────────────────────────────────────────────────────────────────────────

def _reflect_views() -> dict[str, tuple[str, list[str], list[str]]]:
    """Every view of a warehouse migrated to head (in memory): its doc, its columns and the
    tables it reads (in the order its SQL names them), by name."""
    from warehouse.db import create_engine, upgrade

    engine = create_engine("sqlite://")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY name")).all()
            inspector = sa.inspect(conn)
            return {name: (_view_doc(sql), [c["name"] for c in inspector.get_columns(name)],
                           list(dict.fromkeys(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql, re.I))))
                    for name, sql in rows}
    finally:
        engine.dispose()


def _view_doc(sql: str) -> str:
    """The doc a view carries as leading `--` comment lines of its CREATE VIEW (warehouse/views.py)."""
    body = sql.split(" AS", 1)[1] if " AS" in sql else ""
    lines = []
    for line in body.strip().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return " ".join(lines)


def _view_entry(name: str, doc: str, columns: list[str], tables: list[str],
                indicators: list[dict[str, Any]]) -> dict[str, Any]:
    from warehouse.schema import metadata

    indicator = next((item for item in indicators if _indicator_view(item["id"]) == name), None)
    vi = VIEW_TITLES_VI.get(name, "")
    if indicator is not None:
        vi = vi or str(indicator.get("name_vi") or "")
        doc = doc or str(indicator.get("name_en") or "")
    described = []
    for column in columns:
        text = None
        if indicator is not None:
            text = INDICATOR_VIEW_COLUMNS.get(column)
        text = text or VIEW_COLUMNS.get(column)
        if text is None:
            source = next((metadata.tables[t] for t in [*tables, *SOURCE_TABLES]
                           if t in metadata.tables and column in metadata.tables[t].c), None)
            text = source.c[column].comment if source is not None else None
        col_vi, col_en = split_bilingual(text)
        described.append({"name": column, "type": "", "key": False, "nullable": True,
                          "codelist": "", "vi": col_vi, "en": col_en})
    return {"name": name, "kind": "view", "vi": vi, "en": doc, "columns": described}


def _relation_markdown(relation: dict[str, Any]) -> list[str]:
    kind = "view" if relation["kind"] == "view" else "table"
    title = f"*{kind}* — {_cell(relation['vi'])}" if relation["vi"] else f"*{kind}*"
    out = [f"### `{relation['name']}`", "", title, "", _cell(relation["en"]), ""]
    if relation["kind"] == "view":
        out += ["| column | Ý nghĩa (vi) | Meaning (en) |", "|---|---|---|"]
        for column in relation["columns"]:
            out.append(f"| `{column['name']}` | {_cell(column['vi'])} | {_cell(column['en'])} |")
    else:
        out += ["| column | type | key | null | code list | Ý nghĩa (vi) | Meaning (en) |",
                "|---|---|---|---|---|---|---|"]
        for column in relation["columns"]:
            out.append(
                f"| `{column['name']}` | {column['type']} | {'PK' if column['key'] else ''} | "
                f"{'yes' if column['nullable'] else ''} | {_cell(column['codelist'])} | "
                f"{_cell(column['vi'])} | {_cell(column['en'])} |")
    out.append("")
    return out


# ── indicators, code lists, entities ────────────────────────────────────────────────────────────

def _load_indicators() -> list[dict[str, Any]]:
    """The indicator definitions of standards/indicators.yaml, or none when the file is not there."""
    if not INDICATORS_FILE.is_file():
        return []
    import yaml

    document = yaml.safe_load(INDICATORS_FILE.read_text(encoding="utf-8")) or {}
    return [item for item in document.get("indicators") or [] if isinstance(item, dict) and "id" in item]


def _indicator_view(indicator_id: str) -> str:
    return f"mart_{indicator_id}"


def _indicator_entry(item: dict[str, Any], views: dict[str, Any]) -> dict[str, Any]:
    view = _indicator_view(item["id"])
    return {
        "id": item["id"], "name_vi": str(item.get("name_vi") or ""),
        "name_en": str(item.get("name_en") or ""), "unit": str(item.get("unit") or ""),
        "kind": str(item.get("kind") or ""), "view": view if view in views else "",
        "description": " ".join(str(item.get("description") or "").split()),
    }


SMALL_CODELIST = 12  # code lists up to this many rows are printed in full


def _codelist_entry(name: str) -> dict[str, Any]:
    rows = standards.load_codelist(name)
    columns = list(rows[0]) if rows else []
    return {"name": name, "rows": len(rows), "columns": columns,
            "values": rows if len(rows) <= SMALL_CODELIST else []}


def _entities() -> list[str]:
    return sorted(p.stem for p in standards.SCHEMA_DIR.glob("*.json")
                  if not p.stem.endswith(".schema") and "x-key" in _schema(p.stem))


def _schema(entity: str) -> dict[str, Any]:
    return json.loads((standards.SCHEMA_DIR / f"{entity}.json").read_text(encoding="utf-8"))


def _entity_codelists(entity: str | None) -> dict[str, str]:
    if entity is None:
        return {}
    return {name: _reference(prop)
            for name, prop in _schema(entity)["properties"].items() if _reference(prop)}


def _reference(prop: dict[str, Any]) -> str:
    """The code list, reference (→ entity.field) or enumeration a standard field takes values from."""
    if "x-codelist" in prop:
        return str(prop["x-codelist"])
    if "x-references" in prop:
        return f"→ {prop['x-references']}"
    if "enum" in prop:
        return ", ".join(str(v) for v in prop["enum"])
    return ""


def _entity_entry(entity: str) -> dict[str, Any]:
    schema = _schema(entity)
    required = set(schema.get("required", ()))
    properties = []
    for name, prop in schema["properties"].items():
        kind = prop.get("type", "")
        kind = " | ".join(kind) if isinstance(kind, list) else str(kind)
        if "format" in prop:
            kind += f" ({prop['format']})"
        properties.append({"name": name, "type": kind, "required": name in required,
                           "codelist": _reference(prop), "description": prop.get("description", "")})
    return {"name": entity, "description": schema.get("description", ""), "properties": properties}


def _group_of(name: str) -> str:
    return next((prefix for prefix, _, _ in GROUPS if name.startswith(prefix)), "")


def _cell(text: Any) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return re.sub(r"\s+", " ", str(text or "")).replace("|", "\\|").strip()
