"""The report as a workbook (xlsx), as an offline HTML page (rendered in headless Chromium), and by 2025 communes."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from pipeline.cli import main
from reporting.indicators import IndicatorValue
from tests.conftest import unavailable
from tests.province import TEST_KEY, run_sync

CHROMIUM = os.environ.get("LIENTHONG_CHROMIUM", "/usr/bin/chromium")
GROUP_SHEETS = ["Thủ tục hành chính", "Tiếp nhận hồ sơ", "Trực tuyến theo nhóm TTHC", "Giải quyết hồ sơ"]
INJECTIONS = ["=1+1", "@SUM(A1)", "+7", "-2+3", "\t=cmd", "\r=x"]


# ── a small synced warehouse, read through the CLI ──────────────────────────────────────────────

@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory) -> str:
    """A province with 300 filler dossiers, synced from the portal simulator into SQLite."""
    from simulators.generator import generate_province, load_records
    from simulators.portal import PortalSimulator

    data = tmp_path_factory.mktemp("small-province")
    generate_province(data, seed=7, filler_dossiers=300)
    url = f"sqlite:///{tmp_path_factory.mktemp('small-warehouse') / 'warehouse.db'}"
    procedures = list(load_records(data / "procedures.jsonl"))
    dossiers = list(load_records(data / "dossiers.jsonl"))
    with PortalSimulator(procedures=procedures, dossiers=dossiers, username="demo", password="demo") as sim:
        run_sync(url, sim)
    return url


@pytest.fixture
def report(small_warehouse, monkeypatch, capsys):
    """Runs `lienthong report ARGS` on the small warehouse; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("WAREHOUSE_URL", small_warehouse)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)

    def run(*args: str, url: str | None = None) -> tuple[int, str, str]:
        if url:
            monkeypatch.setenv("WAREHOUSE_URL", url)
        code = main(["report", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def outputs(small_warehouse, tmp_path_factory) -> dict:
    """The JSON rows, the headline lines, the workbook and the page of the small warehouse (one run each)."""
    from reporting.report import collect, headline, render_report, to_unit_scheme
    from warehouse.db import create_engine

    out = tmp_path_factory.mktemp("report") / "var"
    (out / "sub").mkdir(parents=True)
    xlsx, page = out / "sub" / "report.xlsx", out / "report.html"
    engine = create_engine(small_warehouse)
    try:
        rows = json.loads(render_report(fmt="json", engine=engine))
        lines = headline(to_unit_scheme(collect(engine)))
        xlsx.write_bytes(render_report(fmt="xlsx", engine=engine))
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("LIENTHONG_GX_DIR", raising=False)  # no Data Docs to link: the page has no URL at all
            page.write_text(render_report(fmt="html", engine=engine, out=page), encoding="utf-8")
    finally:
        engine.dispose()
    return {"rows": rows, "headline": lines, "xlsx": xlsx, "html": page}


def _json_value(rows, indicator, period, agency, group=None, dimension=None):
    found = [r["value"] for r in rows if r["indicator"] == indicator and r["period"] == period
             and r["agency_code"] == agency and r.get("group_code") == group and r.get("dimension") == dimension]
    assert len(found) == 1, (indicator, period, agency, group, dimension, found)
    return found[0]


def _sheet_rows(ws):
    """Header texts and the data rows (from row 3) of a group sheet."""
    header = [c.value for c in ws[2]]
    return header, [list(r) for r in ws.iter_rows(min_row=3)]


# ── xlsx ─────────────────────────────────────────────────────────────────────────────────────────

def test_workbook_has_a_summary_then_a_sheet_per_indicator_group(outputs):
    from openpyxl import load_workbook

    from reporting.tables import indicator_name

    wb = load_workbook(outputs["xlsx"])
    assert wb.sheetnames[0] == "Tóm tắt"
    assert [s for s in wb.sheetnames if s in GROUP_SHEETS] == GROUP_SHEETS
    summary = [c for row in wb["Tóm tắt"].iter_rows(values_only=True) for c in row if isinstance(c, str)]
    for line in outputs["headline"]:
        assert line in summary
    headers = []
    for ws in wb.worksheets[1:]:
        header, rows = _sheet_rows(ws)
        headers += header
        assert header[:3] == ["Kỳ báo cáo", "Mã cơ quan", "Tên cơ quan"]
        assert ws.freeze_panes == "D3"
        assert any(r[2].value == "Tổng cộng" for r in rows)
    # every indicator of the report has a column, under its Vietnamese name (new ones too)
    for indicator in {r["indicator"] for r in outputs["rows"]}:
        assert any(h.startswith(indicator_name(indicator)) for h in headers), indicator
    header, _ = _sheet_rows(wb["Thủ tục hành chính"])
    assert "Tổng số thủ tục hành chính" in header
    assert "Số thủ tục theo mức độ DVCTT (NĐ 43/2011) — Mức độ 3" in header
    assert "Tỷ lệ hồ sơ trực tuyến (%)" in _sheet_rows(wb["Tiếp nhận hồ sơ"])[0]


def test_workbook_values_equal_the_json_report(outputs, small_warehouse):
    from openpyxl import load_workbook

    rows = outputs["rows"]
    wb = load_workbook(outputs["xlsx"])
    engine = sa.create_engine(small_warehouse)
    with engine.connect() as conn:
        names = dict(conn.execute(sa.text("SELECT agency_code, name FROM dim_agency")).all())
    engine.dispose()

    header, data = _sheet_rows(wb["Thủ tục hành chính"])
    total_col = header.index("Tổng số thủ tục hành chính")
    level3 = header.index("Số thủ tục theo mức độ DVCTT (NĐ 43/2011) — Mức độ 3")
    agencies = [r for r in data if r[1].value]
    assert agencies
    for r in agencies:
        period, code = r[0].value, r[1].value
        assert r[2].value == names[code]  # the Vietnamese name beside the code
        assert r[total_col].value == _json_value(rows, "procedures_total", period, code)
        assert r[level3].value == _json_value(rows, "procedures_by_level", period, code, dimension="level_3")
        assert r[total_col].number_format == "#,##0"
    (total,) = [r for r in data if r[2].value == "Tổng cộng"]
    assert total[total_col].value == _json_value(rows, "procedures_total", total[0].value, None)
    assert total[total_col].value == sum(r[total_col].value for r in agencies)
    assert total[total_col].font.b

    header, data = _sheet_rows(wb["Tiếp nhận hồ sơ"])
    received, share = header.index("Số hồ sơ tiếp nhận"), header.index("Tỷ lệ hồ sơ trực tuyến (%)")
    checked = 0
    for r in data:
        period, code = r[0].value, r[1].value or None
        assert r[received].value == _json_value(rows, "dossiers_received", period, code)
        if r[share].value is not None:
            assert r[share].value == pytest.approx(_json_value(rows, "online_share", period, code))
            assert r[share].number_format == "0.0"
            checked += 1
    assert checked > 10
    # a period's total row is the province: for the percentage, the ratio of the totals
    year = next(r for r in data if r[2].value == "Tổng cộng" and len(r[0].value) == 4)
    assert year[received].value == sum(r[received].value for r in data
                                       if r[0].value == year[0].value and r[1].value)
    assert year[share].value == pytest.approx(_json_value(rows, "online_share", year[0].value, None))

    # online dossiers by group have no province value: the total row sums the agencies (counts)
    header, data = _sheet_rows(wb["Trực tuyến theo nhóm TTHC"])
    col = header.index("Số hồ sơ trực tuyến theo nhóm thủ tục — Cấp Phiếu lý lịch tư pháp")
    totals = [r for r in data if r[2].value == "Tổng cộng" and r[0].value == "2017"]
    assert totals[0][col].value == _json_value(rows, "online_dossiers_by_group", "2017", "000.00.03.H62",
                                               group="judicial_record")


def test_source_text_that_looks_like_a_formula_stays_text(small_warehouse, report, tmp_path):
    from openpyxl import load_workbook

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    shutil.copy(sa.engine.make_url(small_warehouse).database, tmp_path / "warehouse.db")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        codes = [c for (c,) in conn.execute(sa.text(
            "SELECT agency_code FROM dim_agency WHERE level = 2 ORDER BY agency_code LIMIT :n"),
            {"n": len(INJECTIONS)})]
        for code, name in zip(codes, INJECTIONS, strict=True):
            conn.execute(sa.text("UPDATE dim_agency SET name = :n WHERE agency_code = :c"), {"n": name, "c": code})
    engine.dispose()
    out = tmp_path / "out" / "r.xlsx"
    assert report("--format", "xlsx", "--out", str(out), "--indicator", "procedures_total", url=url)[0] == 0

    ws = load_workbook(out)["Thủ tục hành chính"]
    cells = {r[1].value: r[2] for r in ws.iter_rows(min_row=3) if r[1].value}
    for code, name in zip(codes, INJECTIONS, strict=True):
        assert cells[code].value == name
        assert cells[code].data_type == "s"
        assert cells[code].quotePrefix
    with zipfile.ZipFile(out) as z:
        assert not any("<f>" in z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/"))


def test_breakdown_text_that_looks_like_a_formula_stays_text(tmp_path):
    from openpyxl import load_workbook

    from reporting.xlsx import render_xlsx

    values = [IndicatorValue("dossiers_received", "2017-01", "=HYPERLINK(\"x\")", 3, "dossiers",
                             group_code="+cmd", dimension="@SUM(A1)"),
              IndicatorValue("dossiers_received", "2017-01", None, 3, "dossiers", group_code="+cmd",
                             dimension="@SUM(A1)")]
    path = tmp_path / "r.xlsx"
    path.write_bytes(render_xlsx(values, names={"=HYPERLINK(\"x\")": "=1+1"}))
    ws = load_workbook(path)["Tiếp nhận hồ sơ"]
    header = [c.value for c in ws[2]]
    assert header[3].endswith("— +cmd — @SUM(A1)")
    row = list(ws[3])
    assert [c.value for c in row[:4]] == ["2017-01", "=HYPERLINK(\"x\")", "=1+1", 3]
    assert all(c.data_type == "s" for c in row[:3])


def test_xlsx_needs_out_and_out_folders_are_created(report, tmp_path):
    code, out, err = report("--format", "xlsx")
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("lienthong: error:")]
    assert len(lines) == 1 and "--out" in lines[0] and "Traceback" not in err
    target = tmp_path / "a" / "b" / "report.xlsx"
    assert report("--format", "xlsx", "--out", str(target), "--indicator", "procedures_total")[0] == 0
    assert zipfile.is_zipfile(target)


# ── html ─────────────────────────────────────────────────────────────────────────────────────────

def test_html_page_has_the_three_charts_and_the_tables_and_nothing_external(outputs):
    import lxml.html
    from openpyxl import load_workbook

    text = outputs["html"].read_text(encoding="utf-8")
    doc = lxml.html.fromstring(text)
    for line in outputs["headline"]:
        assert line in doc.text_content()
    online = doc.get_element_by_id("chart-online-share")
    assert online.tag == "svg" and online.findall(".//polyline") and len(online.findall(".//circle")) > 12
    levels = doc.get_element_by_id("chart-procedures-by-level")
    assert len(levels.findall(".//rect")) == 4
    assert doc.get_element_by_id("chart-on-time-by-agency").findall(".//rect")
    ids = [t.get("id") for t in doc.findall(".//table")]
    assert len(ids) == len(load_workbook(outputs["xlsx"]).sheetnames) - 1  # a table per sheet
    assert {"table-procedures", "table-received", "table-online_groups", "table-finished"} <= set(ids)
    assert doc.xpath("//table[@id='table-procedures']//tr[@class='total']/td[3]")[0].text == "Tổng cộng"
    assert "Tổng số thủ tục hành chính" in doc.get_element_by_id("table-procedures").text_content()
    # offline: no script, stylesheet link, image or frame from anywhere, no URL at all
    assert not doc.xpath("//script | //link | //img | //iframe | //object | //embed")
    assert not doc.xpath("//@src | //@href")  # no Data Docs beside this report
    assert not re.search(r"https?://|url\(", text)


@pytest.mark.parametrize("site", ["gx/uncommitted/data_docs/local_site", "gx/data_docs/local_site"])
def test_html_links_data_docs_when_they_are_built(report, tmp_path, monkeypatch, site):
    import lxml.html

    monkeypatch.delenv("LIENTHONG_GX_DIR", raising=False)
    docs = tmp_path / "var" / site / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>")
    page = tmp_path / "var" / "report.html"
    assert report("--format", "html", "--out", str(page), "--indicator", "procedures_by_level")[0] == 0
    doc = lxml.html.fromstring(page.read_text(encoding="utf-8"))
    assert doc.xpath("//a[@id='data-docs']/@href") == [f"{site}/index.html"]

    from reporting.html import render_html

    given = lxml.html.fromstring(render_html([], data_docs_url="https://qa.example/docs/index.html"))
    assert given.xpath("//a/@href") == ["https://qa.example/docs/index.html"]


def test_html_escapes_source_text():
    from reporting.html import render_html

    values = [IndicatorValue("finished_on_time_rate", "2017", "A<1>", 50.0, "percent")]
    page = render_html(values, names={"A<1>": "<script>alert(1)</script>"})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ── the page in headless Chromium ────────────────────────────────────────────────────────────────

def png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG (Chromium's screenshots) as a height × width × channels array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += length + 12
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
        elif kind == b"IDAT":
            idat += chunk
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.int64)
    prev = np.zeros(width * bpp, dtype=np.int64)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average, Paeth: each byte depends on the one to its left
            cur, row, up = line.tolist(), line.tolist(), prev.tolist()
            for x in range(len(row)):
                left = cur[x - bpp] if x >= bpp else 0
                if kind == 3:
                    cur[x] = (row[x] + (left + up[x]) // 2) % 256
                else:
                    corner = up[x - bpp] if x >= bpp else 0
                    p = left + up[x] - corner
                    pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up[x] if pb <= pc else corner
                    cur[x] = (row[x] + pred) % 256
            cur = np.array(cur, dtype=np.int64)
        out[y] = prev = cur
    return out.reshape(height, width, bpp).astype(np.uint8)


def render_in_chromium(page: Path, png: Path, *, size: str = "1280,2000") -> list[str]:
    """Screenshot `page` in headless Chromium; returns what the page wrote to the console.

    Chromium logs every console message (console.error, uncaught exceptions, …) to stderr as
    `…:INFO:CONSOLE:<line>] "<message>", source: …` with --enable-logging=stderr.
    """
    if not Path(CHROMIUM).exists():
        unavailable(f"headless Chromium ({CHROMIUM}) is not installed: apt-get install chromium")
    run = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={png.parent / 'chromium-profile'}", f"--screenshot={png}",
         f"--window-size={size}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0 and png.is_file(), run.stderr[-2000:]
    return [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_chromium_console_check_sees_script_errors(tmp_path):
    # the check below can fail: a page that throws is caught
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>throw new Error("boom")</script>')
    console = render_in_chromium(page, tmp_path / "bad.png", size="320,200")
    assert any("Uncaught Error: boom" in line for line in console), console


def test_page_draws_in_headless_chromium(outputs, tmp_path):
    png = tmp_path / "report.png"
    console = render_in_chromium(outputs["html"], png)
    assert console == []
    pixels = png_pixels(png.read_bytes())[:, :, :3]
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, chart lines and bars in several colours, anti-aliased
    not_white = (pixels < 245).any(axis=2)
    assert 0.02 < not_white.mean() < 0.9
    # the charts' own colours are on screen: the online-share line / level-1 bar blue and on-time green
    for rgb in [(0x1F, 0x6F, 0xB2), (0x3A, 0x9D, 0x5D), (0xE0, 0x7B, 0x39)]:
        assert (np.abs(pixels.astype(int) - rgb).sum(axis=2) < 12).sum() > 200, rgb


# ── --unit-scheme ────────────────────────────────────────────────────────────────────────────────

def _gap(commune: str, value: int, *, reported: int, agency: str | None, measure: str = "received",
         month: str = "2017-03", procedure: str = "1.000001") -> IndicatorValue:
    return IndicatorValue("reconciliation_gap", month, agency, value, "dossiers", group_code=procedure,
                          dimension=f"{commune}/{measure}",
                          detail={"commune_code": commune, "month": month, "procedure_code": procedure,
                                  "measure": measure, "reported": reported, "counted": reported - value})


def test_unit_scheme_2025_merges_communes_into_their_successors():
    from reporting.report import commune_successors, to_unit_scheme

    successors = commune_successors()
    # Liên Bảo, Đống Đa and Ngô Quyền became Phường Vĩnh Phúc (08716); Tích Sơn is Phường Vĩnh Yên (08707)
    assert successors["08710"] == successors["08716"] == successors["08719"] == "08716"
    assert successors["08707"] == "08707"
    other = IndicatorValue("dossiers_received", "2017-03", "000.00.03.H62", 12, "dossiers")
    values = [
        _gap("08710", 2, reported=5, agency="000.01.21.H62"),
        _gap("08716", 3, reported=4, agency="000.02.21.H62"),
        _gap("08719", -1, reported=1, agency="000.03.21.H62", measure="online"),
        _gap("08716", 1, reported=1, agency="000.02.21.H62", measure="online"),  # cancels 08719's: no row
        _gap("08707", -4, reported=0, agency="000.04.21.H62"),
        other,
    ]
    assert to_unit_scheme(values, "legacy") == values
    merged = to_unit_scheme(values, "2025")
    assert merged[0] is other
    gaps = {v.dimension: v for v in merged if v.indicator == "reconciliation_gap"}
    assert set(gaps) == {"08716/received", "08707/received"}
    vinh_phuc = gaps["08716/received"]
    assert vinh_phuc.value == 5 and vinh_phuc.agency_code is None  # two People's Committees merged
    assert vinh_phuc.detail == {"commune_code": "08716", "month": "2017-03", "procedure_code": "1.000001",
                                "measure": "received", "reported": 9, "counted": 4}
    assert gaps["08707/received"].value == -4 and gaps["08707/received"].agency_code == "000.04.21.H62"
    # the input is left as it was
    assert values[0].detail["commune_code"] == "08710" and values[0].dimension == "08710/received"


def test_unit_scheme_2025_leaves_out_merged_ratios():
    from reporting.report import to_unit_scheme

    shares = [IndicatorValue("online_share", "2017", None, v, "percent", detail={"commune_code": c})
              for c, v in [("08710", 10.0), ("08716", 20.0), ("08707", 30.0)]]
    merged = to_unit_scheme(shares, "2025", successors={"08710": "08716", "08716": "08716", "08707": "08707"})
    assert [(v.detail["commune_code"], v.value) for v in merged] == [("08707", 30.0)]


def test_unit_scheme_on_the_cli(report):
    code, legacy, _ = report("--format", "json", "--indicator", "dossiers_received", "--period", "2017")
    assert code == 0
    code, merged, _ = report("--format", "json", "--indicator", "dossiers_received", "--period", "2017",
                             "--unit-scheme", "2025")
    assert code == 0 and json.loads(merged) == json.loads(legacy)  # no commune breakdown: unchanged
    with pytest.raises(SystemExit):
        main(["report", "--unit-scheme", "1990"])
