"""Writes the indicator report as one self-contained HTML page: headline figures, charts, tables.

Everything is inline — CSS and SVG charts drawn here in Python, no script, no web font, no
external URL — so the page opens offline and can be mailed as one file. The only link out is to
the Great Expectations Data Docs when they are given or found beside the report. Every text
taken from the data is escaped (`html.escape`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from reporting.indicators import IndicatorValue
from reporting.tables import TOTAL_LABEL, ReportTable, build_tables, code_labels

# Where the quality gate's Great Expectations context keeps the Data Docs site, relative to the
# context's folder (`var/gx`, or LIENTHONG_GX_DIR): as quality.datadocs.data_docs_index says —
# not imported, since it loads Great Expectations — and the site's plain location.
DATA_DOCS_SITES = (Path("uncommitted/data_docs/local_site/index.html"), Path("data_docs/local_site/index.html"))
# Tables longer than this start folded (<details>), so the charts stay at the top of the page.
OPEN_TABLE_ROWS = 200
# The on-time chart shows the agencies with the lowest rates, at most this many (the table has all).
MAX_AGENCY_BARS = 30
PALETTE = ["#1f6fb2", "#e07b39", "#3a9d5d", "#c0392b", "#8e6bbf", "#7f8c8d"]

_CSS = """
body{font-family:"Segoe UI",Roboto,"Noto Sans",Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;
background:#fff;padding:0 16px}
h1{font-size:1.6em;margin:0}h2{font-size:1.25em;margin:1.6em 0 .1em}.en{color:#666;font-size:.9em;margin:.1em 0}
.meta{color:#555;font-size:.85em}ul.headline{background:#f4f8fc;border-left:4px solid #1f6fb2;padding:.8em 2em}
ul.headline li{margin:.3em 0}.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px;background:#fff;flex:1 1 100%}
figcaption{font-weight:600}figcaption .en{font-weight:400;display:block}
svg text{font-family:inherit;font-size:12px;fill:#333}svg .axis{stroke:#999;stroke-width:1}
svg .grid{stroke:#e5e5e5;stroke-width:1}svg .empty{fill:#999;font-size:14px}
table{border-collapse:collapse;font-size:.82em;margin:.4em 0 1em}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#ddebf7;position:sticky;top:0;vertical-align:bottom}th small{display:block;font-weight:400;color:#555}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:700;background:#f2f2f2}
details summary{cursor:pointer;color:#1f6fb2;margin:.3em 0}
@media print{details{display:block}th{position:static}}
"""


def find_data_docs(out: str | Path | None) -> str | None:
    """A link, relative to the report, to the Data Docs index when it is built: in `gx/` beside
    the report (var/gx/… for var/report.html), else in LIENTHONG_GX_DIR."""
    if out is None:
        return None
    out_dir = Path(out).resolve().parent
    folders = [out_dir / "gx"]
    if os.environ.get("LIENTHONG_GX_DIR", "").strip():
        folders.append(Path(os.environ["LIENTHONG_GX_DIR"].strip()).expanduser().resolve())
    for folder in folders:
        for site in DATA_DOCS_SITES:
            if (folder / site).is_file():
                return Path(os.path.relpath(folder / site, out_dir)).as_posix()
    return None


def _fmt(value: object, kind: str) -> str:
    if value is None or value == "":
        return ""
    if kind == "count" and isinstance(value, int | float):
        return f"{value:,.0f}"
    if kind in ("percent", "number") and isinstance(value, int | float):
        return f"{value:,.1f}"
    return str(value)


# ── charts: plain SVG ────────────────────────────────────────────────────────────────────────────

def _svg(chart_id: str, width: int, height: int, label: str, body: list[str]) -> str:
    return (f'<svg id="{escape(chart_id)}" class="chart" role="img" '
            f'viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px" '
            f'aria-label="{escape(label)}"><title>{escape(label)}</title>' + "".join(body) + "</svg>")


def _empty(chart_id: str, label: str) -> str:
    return _svg(chart_id, 560, 120, label, ['<text class="empty" x="280" y="64" text-anchor="middle">'
                                           'Không có số liệu — no data</text>'])


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (an axis maximum)."""
    step = 1.0
    while step * 10 < value:
        step *= 10
    while step / 10 >= value > 0:
        step /= 10
    return next(step * m for m in (1, 2, 2.5, 5, 10) if step * m >= value)


def line_chart(chart_id: str, label: str, points: list[tuple[str, float]], *, y_max: float | None = None,
               unit: str = "%") -> str:
    """A line over periods (x: labels in order; y: 0…y_max, by default a round number above the data), as SVG."""
    if not points:
        return _empty(chart_id, label)
    y_max = y_max or nice_ceiling(max(max(v for _, v in points), 1e-9))
    width, height, left, right, top, bottom = 900, 320, 48, 16, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(points) - 1, 1)
    body = []
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        body.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{y_max * i / 4:g}{escape(unit)}</text>')
    body.append(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}"/>')
    every = max(1, len(points) // 12)
    coords = []
    for i, (period, value) in enumerate(points):
        x = left + i * step
        y = top + plot_h - plot_h * min(max(value, 0.0), y_max) / y_max
        coords.append(f"{x:.1f},{y:.1f}")
        if i % every == 0:
            body.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(period)}</text>')
    body.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{PALETTE[0]}" stroke-width="2.5"/>')
    for (period, value), xy in zip(points, coords, strict=True):
        cx, cy = xy.split(",")
        body.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{PALETTE[0]}"><title>{escape(period)}: '
                    f'{value:.1f}{escape(unit)}</title></circle>')
    return _svg(chart_id, width, height, label, body)


def bar_chart(chart_id: str, label: str, bars: list[tuple[str, float]]) -> str:
    """Vertical bars with their values (counts), as SVG."""
    if not bars:
        return _empty(chart_id, label)
    width, height, left, right, top, bottom = 560, 320, 16, 16, 24, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max(v for _, v in bars) or 1
    slot = plot_w / len(bars)
    body = [f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}"/>']
    for i, (name, value) in enumerate(bars):
        h = plot_h * value / top_value
        x = left + i * slot + slot * 0.15
        body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(name)}: {value:,.0f}</title></rect>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h - h - 6:.1f}" text-anchor="middle">'
                    f'{value:,.0f}</text>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                    f"{escape(name)}</text>")
    return _svg(chart_id, width, height, label, body)


def hbar_chart(chart_id: str, label: str, bars: list[tuple[str, float]], *, x_max: float = 100.0,
               unit: str = "%") -> str:
    """Horizontal bars (one per agency, 0…x_max), as SVG."""
    if not bars:
        return _empty(chart_id, label)
    row, left, right, top = 22, 280, 56, 8
    width, height = 900, top * 2 + row * len(bars)
    plot_w = width - left - right
    body = []
    for i, (name, value) in enumerate(bars):
        y = top + i * row
        w = plot_w * min(max(value, 0.0), x_max) / x_max
        shown = name if len(name) <= 42 else name[:41] + "…"
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(shown)}</text>'
                    f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{PALETTE[2]}">'
                    f'<title>{escape(name)}: {value:.1f}{escape(unit)}</title></rect>'
                    f'<text x="{left + w + 4:.1f}" y="{y + 15}">{value:.1f}{escape(unit)}</text>')
    body.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - top}"/>')
    return _svg(chart_id, width, height, label, body)


def _charts(values: list[IndicatorValue], names: dict[str, str]) -> list[tuple[str, str, str]]:
    """The three charts as (Vietnamese caption, English caption, svg)."""
    labels = code_labels()
    share = sorted((v.period, v.value) for v in values
                   if v.indicator == "online_share" and v.agency_code is None and len(v.period) == 7)
    levels = [v for v in values if v.indicator == "procedures_by_level" and v.agency_code is None]
    as_of = max((v.period for v in levels), default="")
    level_bars = [(labels.get(v.dimension or "", (v.dimension or "",))[0], v.value)
                  for v in sorted(levels, key=lambda v: v.dimension or "") if v.period == as_of]
    rates = [v for v in values if v.indicator == "finished_on_time_rate" and v.agency_code is not None]
    years = sorted({v.period for v in rates if len(v.period) == 4})
    period = years[-1] if years else max((v.period for v in rates), default="")
    rate_bars = sorted(((names.get(v.agency_code or "", v.agency_code or ""), v.value)
                        for v in rates if v.period == period), key=lambda b: (b[1], b[0]))
    shown = (f"{MAX_AGENCY_BARS} cơ quan có tỷ lệ thấp nhất / the {MAX_AGENCY_BARS} lowest of {len(rate_bars)}"
             if len(rate_bars) > MAX_AGENCY_BARS else f"{len(rate_bars)} cơ quan / agencies")
    return [
        ("Tỷ lệ hồ sơ trực tuyến theo tháng (toàn tỉnh)", "Online share of dossiers received, by month (province)",
         line_chart("chart-online-share", "Online share by month", share)),
        (f"Số thủ tục theo mức độ DVCTT, ngày {as_of}", f"Procedures by online level, as of {as_of}",
         bar_chart("chart-procedures-by-level", "Procedures by level", level_bars)),
        (f"Tỷ lệ giải quyết đúng hạn theo cơ quan, kỳ {period}", f"On-time rate by agency, period {period} ({shown})",
         hbar_chart("chart-on-time-by-agency", "On-time rate by agency", rate_bars[:MAX_AGENCY_BARS])),
    ]


def _table_html(table: ReportTable) -> str:
    head = "".join(f"<th>{escape(c.header)}<small>{escape(c.header_en)}</small></th>" for c in table.columns)
    rows = []
    for row in table.rows:
        cells = "".join(("<td>" if c.kind == "text" else '<td class="num">') + escape(_fmt(v, c.kind)) + "</td>"
                        for v, c in zip(row.cells, table.columns, strict=True))
        rows.append(f'<tr class="total">{cells}</tr>' if row.is_total else f"<tr>{cells}</tr>")
    grid = (f'<table id="table-{escape(table.key)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")
    if len(table.rows) > OPEN_TABLE_ROWS:
        grid = f"<details><summary>{len(table.rows):,} dòng — rows (mở / open)</summary>{grid}</details>"
    return f"<section><h2>{escape(table.title)}</h2><p class=\"en\">{escape(table.title_en)}</p>{grid}</section>"


def render_html(values: list[IndicatorValue], *, names: dict[str, str] | None = None,
                tables: list[ReportTable] | None = None, headline: list[str] | None = None,
                filters: dict[str, str | None] | None = None, data_docs_url: str | None = None) -> str:
    """The report page: title, headline figures, the three charts, then one table per indicator group."""
    names = names or {}
    shown = ", ".join(f"{k}={v}" for k, v in (filters or {}).items() if v) or "—"
    parts = [
        '<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Báo cáo chỉ tiêu dịch vụ công — lienthong</title>", f"<style>{_CSS}</style></head><body>",
        "<header><h1>Báo cáo chỉ tiêu dịch vụ công</h1>",
        '<p class="en">Standard e-government indicators, computed from the warehouse</p>',
        f'<p class="meta">Lập lúc / generated {escape(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))} · '
        f"bộ lọc / filters: {escape(shown)} · {len(values):,} giá trị / values</p>",
    ]
    if data_docs_url:
        parts.append(f'<p class="meta"><a id="data-docs" href="{escape(data_docs_url)}">Kết quả kiểm tra chất lượng '
                     "dữ liệu (Great Expectations Data Docs)</a></p>")
    parts.append("</header>")
    if headline:
        parts.append("<h2>Số liệu chính</h2><p class=\"en\">Headline figures</p><ul class=\"headline\">"
                     + "".join(f"<li>{escape(line)}</li>" for line in headline) + "</ul>")
    parts.append('<h2>Biểu đồ</h2><p class="en">Charts</p><div class="charts">')
    for caption, caption_en, svg in _charts(values, names):
        parts.append(f"<figure><figcaption>{escape(caption)}<span class=\"en\">{escape(caption_en)}</span>"
                     f"</figcaption>{svg}</figure>")
    parts.append("</div>")
    for table in build_tables(values, names) if tables is None else tables:
        parts.append(_table_html(table))
    parts.append(f'<footer class="meta"><p>{escape(TOTAL_LABEL)}: số của toàn tỉnh khi chỉ tiêu có (tỷ lệ: tính '
                 "trên tổng), nếu không thì tổng các cơ quan (chỉ với số đếm) — the province's own value where there "
                 "is one (a percentage: the ratio of the totals), else the agencies' sum for counts.</p></footer>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
