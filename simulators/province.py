"""Every source of one seeded province: the generated dossiers split over the systems that hold them.

`generate_province` writes the province as the national portal would serve all of it. The real
province keeps its dossiers in several systems, and `build_sources` splits them the same way:

- **one-stop-shop databases** (SQLite files, the two schema variants of `simulators.onestop`):
  the Department of Justice's software (variant a) holds its dossiers received from 2016 on, other
  than judicial records; the Department of Planning and Investment's (variant b) holds its
  dossiers other than business registrations;
- **LGSP messages** (`simulators.lgsp.build_message`): judicial records (from the Ministry of
  Justice's judicial-record system) and business registrations (from the national business
  registration system), in messages of at most `LGSP_MESSAGE_SIZE` dossiers, oldest first;
- **file drops**: the Department of Justice's old system exported its dossiers received before
  2016 as CSV, 2014 in TCVN3 (declared in a sidecar `.encoding` file; a record TCVN3 cannot
  write, one with an upper-case toned letter, goes to the VNI file) and 2015 in VNI (left for
  detection); and the communes of `REPORT_DISTRICTS` send monthly report workbooks for
  `REPORT_MONTHS`, counted from their dossiers by `commune_report_rows`;
- **the national portal**: everything else — and every dossier with a planted defect, so that
  the quarantine ground truth of `generate_province` holds unchanged.

Planted on top, and listed in the ground truth (`sources/ground_truth.json`, key `sources`):

- **cross-source duplicates**: some dossiers of each other source are on the portal too — half
  as the same record, half as a stale copy (the portal got it mid-way: fewer steps, an earlier
  status). Each must be one warehouse dossier listing both source records;
- **report mismatches**: a few report rows altered (a count off by one, a late dossier reported
  on time, a procedure left out, a procedure reported with no dossiers). Each one, and only those,
  must appear as a reconciliation gap. Commune-months holding a quarantined dossier get no report,
  so that no unplanted gap arises from a dossier the warehouse rightly refused.

The same dossiers in total, whatever the split: every indicator over all sources equals the
indicator over the portal-only province.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import standards
from simulators.generator import load_records

__all__ = [
    "DOJ",
    "DPI",
    "LGSP_MESSAGE_SIZE",
    "LGSP_SENDERS",
    "PROVINCE_AGENCY",
    "REPORT_DISTRICTS",
    "REPORT_MONTHS",
    "build_sources",
    "lgsp_messages",
]

DOJ = "000.00.03.H62"  # Sở Tư pháp
DPI = "000.00.04.H62"  # Sở Kế hoạch và Đầu tư
PROVINCE_AGENCY = "000.00.00.H62"  # UBND tỉnh: the receiver of LGSP messages
JUDICIAL_RECORD = "2.000488"
BUSINESS_REGISTRATION = ("1.005190", "1.005191")
# Senders on the LGSP bus: the ministries' vertical systems. G-codes of the ministries are
# illustrative (the form of Decision 20/2020; the actual numbers are not published with it).
LGSP_SENDERS = {JUDICIAL_RECORD: "000.00.00.G15", "business_registration": "000.00.00.G09"}
LGSP_MESSAGE_SIZE = 100
ONESTOP_FROM = "20160101000000"  # the Department of Justice's one-stop software went live in 2016
REPORT_DISTRICTS = ("248", "253")  # Tam Đảo, Sông Lô: their communes send monthly workbooks
REPORT_MONTHS = tuple(f"2017-{m:02d}" for m in range(1, 9))
DUPLICATES = {"one_stop_doj": 40, "one_stop_dpi": 30, "lgsp": 40, "justice_csv": 20}
MEASURES = ("received", "online", "on_time", "late", "pending")


def build_sources(data_dir: Path | str, out_dir: Path | str | None = None, *, seed: int = 2017) -> dict[str, Any]:
    """Split the province generated in `data_dir` into its sources under `out_dir` (default `data_dir/sources`).

    Writes `portal/` (procedures.jsonl, dossiers.jsonl: what `PortalSimulator(data_dir=...)` serves),
    `onestop/doj.sqlite` and `onestop/dpi.sqlite`, `lgsp/NNNN.xml` (the feed, in order) and
    `drop/` (Justice CSVs, commune report workbooks), and `ground_truth.json`: the province's
    ground truth with the key `sources` added. Returns the value of `sources`. Deterministic for
    a seed; rebuilds `out_dir` from scratch and leaves `data_dir` as it was.
    """
    from simulators.filedrop import write_commune_report_xlsx, write_justice_csv
    from simulators.lgsp import build_message
    from simulators.onestop import create_onestop_database
    from transforms.legacy_encoding import LegacyEncodingError, encode_legacy

    data_dir = Path(data_dir)
    out = Path(out_dir) if out_dir is not None else data_dir / "sources"
    if out.exists():
        shutil.rmtree(out)
    for sub in ("portal", "onestop", "lgsp", "drop"):
        (out / sub).mkdir(parents=True)
    truth = json.loads((data_dir / "ground_truth.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)

    # Every record with a planted defect stays on the portal (its quarantine truth is the portal's).
    quarantined = set(truth["expected_rules"])
    defective = set(quarantined)
    for defect in truth["defects"].values():
        defective.update(defect["keys"])
    records = list(load_records(data_dir / "dossiers.jsonl"))
    distinct: dict[str, dict[str, Any]] = {}
    for record in records:
        distinct.setdefault(record["MaHoSo"], record)

    held: dict[str, list[dict[str, Any]]] = {
        "one_stop_doj": [], "one_stop_dpi": [], "lgsp": [], "justice_csv": []}
    portal: list[dict[str, Any]] = []
    for record in records:
        home = None if record["MaHoSo"] in defective else _home(record)
        (held[home] if home else portal).append(record)

    # cross-source duplicates: picked in each source, copied onto the portal
    duplicates: dict[str, list[str]] = {}
    for home, n in DUPLICATES.items():
        for i, record in enumerate(rng.sample(held[home], min(n, len(held[home])))):
            portal.append(record if i % 2 == 0 else _stale_copy(record))
            duplicates[record["MaHoSo"]] = sorted(["national_portal", _source_name(home, record)])
    portal.sort(key=lambda r: (r["NgayCapNhat"], r["MaHoSo"]))
    _write_jsonl(out / "portal" / "dossiers.jsonl", portal)
    shutil.copyfile(data_dir / "procedures.jsonl", out / "portal" / "procedures.jsonl")

    procedures = list(load_records(data_dir / "procedures.jsonl"))
    for name, variant, home in (("doj", "a", "one_stop_doj"), ("dpi", "b", "one_stop_dpi")):
        codes = {r["MaTTHC"] for r in held[home]}
        create_onestop_database(f"sqlite:///{out / 'onestop' / f'{name}.sqlite'}", variant, held[home],
                                [p for p in procedures if p["MaTTHC"] in codes])

    messages = 0
    ordered = sorted(held["lgsp"], key=lambda r: (r["NgayCapNhat"], r["MaHoSo"]))
    for sender_key in (JUDICIAL_RECORD, "business_registration"):
        batch = [r for r in ordered if _lgsp_sender(r) == sender_key]
        for start in range(0, len(batch), LGSP_MESSAGE_SIZE):
            chunk = batch[start : start + LGSP_MESSAGE_SIZE]
            messages += 1
            message_id = f"lgsp-{seed}-{messages:05d}"
            (out / "lgsp" / f"{messages:05d}.xml").write_bytes(
                build_message(chunk, LGSP_SENDERS[sender_key], PROVINCE_AGENCY, message_id=message_id,
                              created_at=_created_at(chunk[-1]["NgayCapNhat"])))

    drop = out / "drop"
    tcvn3, vni = [], []
    for record in held["justice_csv"]:
        if record["NgayTiepNhan"] < "20150101000000":
            try:
                encode_legacy(_justice_text(record), "tcvn3")
                tcvn3.append(record)
                continue
            except LegacyEncodingError:
                pass  # TCVN3 has no upper-case toned letters: the VNI export carries it
        vni.append(record)
    write_justice_csv(drop / "tuphap_2014.csv", tcvn3, "tcvn3")
    (drop / "tuphap_2014.csv.encoding").write_text("tcvn3\n", encoding="ascii")
    write_justice_csv(drop / "tuphap_2015.csv", vni, "vni")

    reports, planted, gaps = _commune_reports(distinct, quarantined, procedures, rng)
    names = {u["unit_code"]: u["name"] for u in standards.load_codelist("admin_units")}
    for (commune, month), rows in sorted(reports.items()):
        write_commune_report_xlsx(drop / f"baocao_{commune}_{month}.xlsx", commune, month, rows,
                                  commune_name=names.get(commune, ""))

    sources = {
        "layout": {"portal": "portal", "one_stop": {"doj": "onestop/doj.sqlite", "dpi": "onestop/dpi.sqlite"},
                   "lgsp": "lgsp", "drop": "drop"},
        "records": {
            "national_portal": len(portal),
            f"one_stop:{DOJ}": len(held["one_stop_doj"]),
            f"one_stop:{DPI}": len(held["one_stop_dpi"]),
            "lgsp": len(held["lgsp"]),
            "file_drop.justice_csv": {"tuphap_2014.csv (tcvn3, declared)": len(tcvn3),
                                      "tuphap_2015.csv (vni, detected)": len(vni)},
        },
        "lgsp_messages": messages,
        "cross_source_duplicates": {code: duplicates[code] for code in sorted(duplicates)},
        "reconciliation": {
            "reports": len(reports),
            "report_rows": sum(len(rows) for rows in reports.values()),
            "planted": planted,
            "expected_gaps": gaps,
        },
    }
    truth["sources"] = sources
    (out / "ground_truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    return sources


def lgsp_messages(sources_dir: Path | str) -> list[bytes]:
    """The LGSP feed written by `build_sources`, in order (what `LgspSimulator(...)` takes)."""
    return [path.read_bytes() for path in sorted((Path(sources_dir) / "lgsp").glob("*.xml"))]


# -- where a dossier lives ------------------------------------------------------------------------


def _home(record: dict[str, Any]) -> str | None:
    agency, code = record["DonViXuLy"], record["MaTTHC"]
    if code == JUDICIAL_RECORD or (agency == DPI and code in BUSINESS_REGISTRATION):
        return "lgsp"
    if agency == DOJ:
        return "one_stop_doj" if record["NgayTiepNhan"] >= ONESTOP_FROM else "justice_csv"
    if agency == DPI:
        return "one_stop_dpi"
    return None


def _lgsp_sender(record: dict[str, Any]) -> str:
    return JUDICIAL_RECORD if record["MaTTHC"] == JUDICIAL_RECORD else "business_registration"


def _source_name(home: str, record: dict[str, Any]) -> str:
    return {"one_stop_doj": f"one_stop:{DOJ}", "one_stop_dpi": f"one_stop:{DPI}", "lgsp": "lgsp",
            "justice_csv": "file_drop"}[home]


def _stale_copy(record: dict[str, Any]) -> dict[str, Any]:
    """The portal's copy of a dossier taken mid-way: its first steps only, that step's status."""
    steps = record.get("QuaTrinhXuLy") or []
    if len(steps) < 2:
        return record
    kept = steps[: max(1, len(steps) // 2)]
    last = kept[-1]
    copy = dict(record, QuaTrinhXuLy=kept, TrangThaiHoSo=last["TrangThai"], NgayCapNhat=last["ThoiDiemXuLy"])
    if last["TrangThai"] not in ("7", "9", "10"):
        copy.update(NgayKetThucXuLy="", NgayTra="", DanhSachGiayToKetQua=[])
    elif last["TrangThai"] != "10":
        copy.update(NgayTra="")
    return copy


def _justice_text(record: dict[str, Any]) -> str:
    return " ".join(str(v) for v in record.values() if isinstance(v, str))


def _created_at(portal_time: str) -> datetime:
    from transforms.timefmt import LOCAL_TZ

    return datetime.strptime(portal_time, "%Y%m%d%H%M%S").replace(tzinfo=LOCAL_TZ)


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


# -- commune reports and their planted mismatches --------------------------------------------------


def _commune_reports(
    dossiers: dict[str, dict[str, Any]],
    quarantined: set[str],
    procedures: Sequence[dict[str, Any]],
    rng: random.Random,
) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[dict[str, str]], list[dict[str, Any]]]:
    """Each reporting commune's monthly rows with planted mismatches; what was planted; the gaps it must show."""
    from simulators.filedrop import commune_report_rows

    units = standards.load_codelist("admin_units")
    communes = sorted(u["unit_code"] for u in units
                      if u["unit_type"] == "commune" and u["parent_code"] in REPORT_DISTRICTS)
    # A quarantined dossier never reaches the warehouse: its commune-month gets no report (or its
    # whole commune, when the damaged record's receipt month cannot be read).
    blocked: set[tuple[str, str]] = set()
    blocked_communes: set[str] = set()
    for code in quarantined:
        record = dossiers[code]
        unit, received = record.get("NoiNopHoSo") or "", record.get("NgayTiepNhan") or ""
        if unit in communes:
            if len(received) == 14 and received.isdigit():
                blocked.add((unit, f"{received[:4]}-{received[4:6]}"))
            else:
                blocked_communes.add(unit)
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for record in dossiers.values():
        if record["MaHoSo"] not in quarantined and record.get("NoiNopHoSo") in communes:
            by_unit.setdefault(record["NoiNopHoSo"], []).append(record)
    reports = {
        (commune, month): commune_report_rows(by_unit.get(commune, []), commune, month)
        for commune in communes if commune not in blocked_communes
        for month in REPORT_MONTHS if (commune, month) not in blocked
    }
    counted = {(c, m, row["procedure_code"]): dict(row) for (c, m), rows in reports.items() for row in rows}

    # plant the mismatches on the reports that have rows
    with_rows = sorted(key for key, rows in reports.items() if rows)
    picks = rng.sample(with_rows, min(7, len(with_rows)))
    commune_scope = sorted(p["MaTTHC"] for p in procedures if p.get("CapThucHien") == "3" and not p.get("NgayBaiBo"))
    planted: list[dict[str, str]] = []
    for i, key in enumerate(picks):
        rows = reports[key]
        row = rows[rng.randrange(len(rows))]
        where = {"commune_code": key[0], "month": key[1], "procedure_code": row["procedure_code"]}
        if i in (0, 1):
            row["received"] += 1
            planted.append({**where, "what": "received over-reported by one"})
        elif i == 2:
            if row["online"]:
                row["online"] -= 1
            else:
                row["online"] += 1
                row["received"] += 1
            planted.append({**where, "what": "online count off by one"})
        elif i == 3 and row["on_time"]:
            row["on_time"] -= 1
            row["late"] += 1
            planted.append({**where, "what": "an on-time dossier reported late"})
        elif i == 4:
            rows.remove(row)
            planted.append({**where, "what": "a procedure left out of the report"})
        elif i == 5:
            taken = {r["procedure_code"] for r in rows}
            code = next(c for c in commune_scope if c not in taken)
            rows.append({"procedure_code": code, "procedure_name": "", "received": 2, "online": 0,
                         "on_time": 0, "late": 0, "pending": 2})
            rows.sort(key=lambda r: r["procedure_code"])
            planted.append({**where, "procedure_code": code, "what": "a procedure reported with no dossiers"})
        else:
            row["pending"] += 1
            planted.append({**where, "what": "pending over-reported by one"})
    reported = {(c, m, row["procedure_code"]): row for (c, m), rows in reports.items() for row in rows}
    gaps = []
    for cell in sorted(set(counted) | set(reported)):
        was, now = counted.get(cell, {}), reported.get(cell, {})
        for measure in MEASURES:
            if was.get(measure, 0) != now.get(measure, 0):
                commune, month, code = cell
                gaps.append({"commune_code": commune, "month": month, "procedure_code": code,
                             "measure": measure, "reported": now.get(measure, 0),
                             "counted": was.get(measure, 0)})
    return reports, planted, gaps
