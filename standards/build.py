"""Builds the standard's generated code lists (administrative units, commune agencies) from maintained packages."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from standards import CODELIST_DIR

PROVINCE_CODE = "26"  # Vĩnh Phúc (GSO)
PROVINCE_NAME = "Tỉnh Vĩnh Phúc"
SUCCESSOR_PROVINCE_CODE = "25"  # Phú Thọ, from 1 July 2025
LEGACY_VALID_FROM = "2008-08-01"  # Vĩnh Phúc's last boundary change before 2025 (Mê Linh to Hà Nội)
LEGACY_VALID_TO = "2025-06-30"

ADMIN_UNIT_COLUMNS = [
    "unit_code", "name", "unit_type", "type_name", "parent_code",
    "valid_from", "valid_to", "successor_code", "successor_name",
]


def build_admin_units() -> list[dict[str, str]]:
    """Vĩnh Phúc's legacy province, districts and communes with their 2025 successors.

    Units and names come from `vietnamadminunits` (its legacy 63-province table); each commune's
    successor is the package's 2025 conversion of its full legacy address.
    """
    from vietnamadminunits import convert_address
    from vietnamadminunits.database import query

    rows = query(
        "SELECT DISTINCT province, district, ward, districtType, wardType, districtCode, wardCode "
        f"FROM admin_units_legacy WHERE provinceCode = '{PROVINCE_CODE}' ORDER BY districtCode, wardCode"
    )
    new_province = query(
        f"SELECT DISTINCT province FROM admin_units WHERE provinceCode = '{SUCCESSOR_PROVINCE_CODE}'"
    )[0]["province"]
    units: list[dict[str, str]] = [{
        "unit_code": PROVINCE_CODE, "name": PROVINCE_NAME, "unit_type": "province", "type_name": "Tỉnh",
        "parent_code": "", "valid_from": LEGACY_VALID_FROM, "valid_to": LEGACY_VALID_TO,
        "successor_code": SUCCESSOR_PROVINCE_CODE, "successor_name": new_province,
    }]
    seen_districts: set[str] = set()
    for row in rows:
        if row["districtCode"] not in seen_districts:
            seen_districts.add(row["districtCode"])
            units.append({
                "unit_code": row["districtCode"], "name": row["district"], "unit_type": "district",
                "type_name": row["districtType"], "parent_code": PROVINCE_CODE,
                "valid_from": LEGACY_VALID_FROM, "valid_to": LEGACY_VALID_TO,
                # the district level was abolished on 1 July 2025: its successor is the new province
                "successor_code": SUCCESSOR_PROVINCE_CODE, "successor_name": new_province,
            })
        converted = convert_address(f"{row['ward']}, {row['district']}, {row['province']}")
        units.append({
            "unit_code": row["wardCode"], "name": row["ward"], "unit_type": "commune",
            "type_name": row["wardType"], "parent_code": row["districtCode"],
            "valid_from": LEGACY_VALID_FROM, "valid_to": LEGACY_VALID_TO,
            "successor_code": converted.ward_code or "", "successor_name": converted.ward or "",
        })
    return units


def build_commune_agencies(units: list[dict[str, str]], district_agencies: dict[str, str]) -> list[dict[str, str]]:
    """One People's Committee agency per commune, coded under its district's agency (QCVN 102)."""
    agencies = []
    per_district: dict[str, int] = {}
    for unit in units:
        if unit["unit_type"] != "commune":
            continue
        parent_agency = district_agencies[unit["parent_code"]]
        n = per_district[unit["parent_code"]] = per_district.get(unit["parent_code"], 0) + 1
        level2 = parent_agency.split(".")[2]
        agencies.append({
            "agency_code": f"000.{n:02d}.{level2}.H62",
            "name": f"UBND {unit['name'][0].lower()}{unit['name'][1:]}",
            "name_en": f"People's Committee of {unit['name']}", "parent_code": parent_agency,
            "level": "3", "admin_unit_code": unit["unit_code"],
            "valid_from": unit["valid_from"], "valid_to": unit["valid_to"],
        })
    return agencies


def to_csv(rows: list[dict[str, str]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_codelists(directory: Path = CODELIST_DIR) -> list[Path]:
    """Regenerate admin_units.csv and the commune rows of agencies.csv; returns the files written."""
    units = build_admin_units()
    admin_path = directory / "admin_units.csv"
    admin_path.write_text(to_csv(units, ADMIN_UNIT_COLUMNS), encoding="utf-8")

    base_path = directory / "agencies_base.csv"
    with base_path.open(encoding="utf-8") as f:
        base = list(csv.DictReader(f))
    columns = list(base[0].keys())
    district_agencies = {row["admin_unit_code"]: row["agency_code"] for row in base
                         if row["level"] == "2" and row["admin_unit_code"]}
    agencies = base + build_commune_agencies(units, district_agencies)
    agencies_path = directory / "agencies.csv"
    agencies_path.write_text(to_csv(agencies, columns), encoding="utf-8")
    return [admin_path, agencies_path]
