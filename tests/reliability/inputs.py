"""The harness's small province: a generated one, trimmed to a few hundred dossiers, split over every source."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 7
FILLER_DOSSIERS = 400  # the agencies' one-stop and Justice-export dossiers are all filler
# Distinct dossiers kept per home (simulators/province.py decides the homes; every dossier with a
# planted defect is kept as well, on the portal): a few chunks per batch, a couple of seconds a run.
QUOTAS = {"judicial_record": 230, "business_registration": 30, "justice": 60, "planning": 50, "portal": 150}
# The few dossiers kept are seldom filed in a commune that reports, so the harness writes its own
# reports: (commune, month, rows); the counts need not match any dossier (gaps are not its concern).
REPORTS = (("08773", "2017-01", 3), ("08773", "2017-02", 2), ("08776", "2017-01", 4), ("08776", "2017-02", 0))
SPARE_PROCEDURES = 20
VERSION = 4  # of the layout below: a cached build of another version is rebuilt


@dataclass(frozen=True)
class Inputs:
    """Where the sources are, and what each LGSP message and drop file holds (for the invariants)."""

    root: Path
    # dossier codes of each LGSP message, in feed order (cursor = index + 1)
    message_codes: list[list[str]]
    # drop file name → the dossier codes (Justice CSV) or "<commune>/<month>" (report) it loads
    file_keys: dict[str, list[str]]

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    @property
    def drop(self) -> Path:
        return self.sources / "drop"

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "message_codes": self.message_codes, "file_keys": self.file_keys}


def build_inputs(root: Path, seed: int = SEED) -> Inputs:
    """The trimmed province split over its sources under `root` (built once, then reused)."""
    from simulators.generator import generate_province
    from simulators.province import build_sources

    marker = root / "inputs.json"
    if marker.exists():
        data = json.loads(marker.read_text(encoding="utf-8"))
        if data.get("version") == VERSION:
            return Inputs(root, data["message_codes"], data["file_keys"])
    if root.exists():
        shutil.rmtree(root)
    generated, trimmed = root / "generated", root / "province"
    generate_province(generated, seed=seed, filler_dossiers=FILLER_DOSSIERS)
    _trim_province(generated, trimmed, seed)
    build_sources(trimmed, root / "sources", seed=seed)
    shutil.rmtree(generated)
    _write_reports(root / "sources" / "drop", trimmed / "procedures.jsonl")
    inputs = Inputs(root, _message_codes(root / "sources"), _file_keys(root / "sources" / "drop"))
    marker.write_text(json.dumps(inputs.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    return inputs


def _home(record: dict[str, Any]) -> str:
    from simulators.province import BUSINESS_REGISTRATION, DOJ, DPI, JUDICIAL_RECORD

    if record["MaTTHC"] == JUDICIAL_RECORD:
        return "judicial_record"
    if record["DonViXuLy"] == DPI:
        return "business_registration" if record["MaTTHC"] in BUSINESS_REGISTRATION else "planning"
    return "justice" if record["DonViXuLy"] == DOJ else "portal"


def _trim_province(full: Path, out: Path, seed: int) -> None:
    """Copy the generated province keeping every defective dossier and a sample of each home."""
    from simulators.generator import load_records

    truth = json.loads((full / "ground_truth.json").read_text(encoding="utf-8"))
    defective = set(truth["expected_rules"])
    for defect in truth["defects"].values():
        defective.update(defect["keys"])
    records = list(load_records(full / "dossiers.jsonl"))
    by_home: dict[str, list[str]] = {home: [] for home in QUOTAS}
    for record in records:
        code = record["MaHoSo"]
        home = _home(record)
        if code not in defective and code not in by_home[home]:
            by_home[home].append(code)
    rng = random.Random(seed)
    kept = set(defective)
    for home, codes in by_home.items():
        kept.update(rng.sample(codes, min(QUOTAS[home], len(codes))))
    out.mkdir(parents=True)
    with (out / "dossiers.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            if record["MaHoSo"] in kept:
                f.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    # the catalogue: the procedures the kept dossiers name, and a few commune-level ones (a
    # commune report may list a procedure no dossier names)
    named = {record["MaTTHC"] for record in records if record["MaHoSo"] in kept}
    procedures = list(load_records(full / "procedures.jsonl"))
    spare = [p["MaTTHC"] for p in procedures if p.get("CapThucHien") == "3" and p["MaTTHC"] not in named]
    named.update(spare[:SPARE_PROCEDURES])
    with (out / "procedures.jsonl").open("w", encoding="utf-8") as f:
        for procedure in procedures:
            if procedure["MaTTHC"] in named:
                f.write(json.dumps(procedure, ensure_ascii=False, separators=(",", ":")) + "\n")
    (out / "ground_truth.json").write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")


def _write_reports(drop: Path, procedures: Path) -> None:
    """Replace the province's commune reports by `REPORTS` (commune-level procedures, made-up counts)."""
    from simulators.filedrop import write_commune_report_xlsx
    from simulators.generator import load_records

    for path in drop.glob("baocao_*.xlsx"):
        path.unlink()
    codes = sorted(p["MaTTHC"] for p in load_records(procedures) if p.get("CapThucHien") == "3")
    for n, (commune, month, count) in enumerate(REPORTS):
        rows = [{"procedure_code": code, "received": 3 + n + i, "online": 1, "on_time": 1 + i, "late": 1,
                 "pending": 1 + n} for i, code in enumerate(codes[:count])]
        write_commune_report_xlsx(drop / f"baocao_{commune}_{month}.xlsx", commune, month, rows)


def _message_codes(sources: Path) -> list[list[str]]:
    from connectors.lgsp import check_message, iter_dossiers

    codes = []
    for path in sorted((sources / "lgsp").glob("*.xml")):
        with path.open("rb") as f:
            header = check_message(f)
            f.seek(0)
            codes.append(sorted({record["MaHoSo"] for record in iter_dossiers(f, header)}))
    return codes


def _file_keys(drop: Path) -> dict[str, list[str]]:
    """What each drop file loads, read by the connector itself from a folder holding it alone."""
    from connectors.filedrop import FileDropConnector

    keys: dict[str, list[str]] = {}
    for path in sorted(drop.iterdir()):
        if path.name.endswith(".encoding"):
            continue
        stream = "justice_csv" if path.name.startswith("tuphap_") else "service_stat"
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(path, tmp)
            sidecar = path.with_name(path.name + ".encoding")
            if sidecar.exists():
                shutil.copy(sidecar, tmp)
            records = [r for chunk in FileDropConnector(Path(tmp)).read(stream) for r in chunk]
        if stream == "justice_csv":
            keys[path.name] = sorted({r["MaHoSo"] for r in records})
        else:
            commune, month = path.stem.split("_")[1:3]
            keys[path.name] = [f"{commune}/{month}"]
    return keys
