"""A seeded, coherent Vĩnh Phúc province (2014–2017): portal records and their ground truth."""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import random
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import standards

__all__ = [
    "CUTOFF",
    "DEFECTS",
    "fee_total",
    "generate_province",
    "load_records",
    "level_on",
    "main",
]

# UBND tỉnh Vĩnh Phúc: MaCoQuanThucHien of district- and commune-scope procedures
PROVINCE_AGENCY = "000.00.00.H62"
PROVINCE_UNIT = "26"  # GSO code of the province: NoiNopHoSo of province-scope dossiers
PERIOD_START = date(2014, 1, 1)
PERIOD_END = date(2017, 8, 31)
CUTOFF = datetime(2017, 8, 31, 23, 59, 59)  # local time (UTC+7): nothing happens after it
CUTOFF_ISO = "2017-08-31T23:59:59+07:00"
CUTOFF_TEXT = CUTOFF.strftime("%Y%m%d%H%M%S")
ACTIVE_ON = (date(2017, 8, 31), date(2016, 12, 31))
ACTIVE_PROCEDURES = 1975  # procedures of the catalogue in force on the cut-off day
ABOLISHED_PROCEDURES = 35  # abolished in 2015–2017, before the cut-off day
PORTAL_TIME = "%Y%m%d%H%M%S"

# Planted defects: name -> (outcome, share of `filler_dossiers`). Quarantined ones hit filler
# dossiers only; repaired ones may hit any dossier. Each affected record carries one defect
# (`multi` carries two rules by design).
DEFECTS: dict[str, tuple[str, float]] = {
    "missing_required": ("quarantined", 0.015),
    "unknown_procedure": ("quarantined", 0.01),
    "unknown_agency": ("quarantined", 0.01),
    "due_before_receipt": ("quarantined", 0.01),
    "malformed_date": ("quarantined", 0.01),
    "bad_id_number": ("quarantined", 0.01),
    "multi": ("quarantined", 0.005),
    "nfd_text": ("repaired", 0.02),
    "cmnd_mislabelled": ("repaired", 0.01),
    "duplicate_record": ("repaired", 0.01),
}
MISSING_FIELD_RULES = {
    "MaTTHC": "procedure_code.required",
    "DonViXuLy": "agency_code.required",
    "NgayTiepNhan": "received_at.required",
    "KenhThucHien": "channel.required",
    "TrangThaiHoSo": "status.required",
}
DEFECT_RULES = {
    "unknown_procedure": ("procedure_code.in_catalogue",),
    "unknown_agency": ("agency_code.in_codelist",),
    "due_before_receipt": ("due_at.not_before_received_at",),
    "malformed_date": ("received_at.valid_datetime",),
    "bad_id_number": ("applicant_id.valid_format",),
    "multi": ("agency_code.in_codelist", "due_at.not_before_received_at"),
}


# fmt: off
def _holidays() -> frozenset[date]:
    """Public holidays 2013–2018 (New Year, Tết, Hùng Kings, 30/4, 1/5, 2/9, days in lieu).

    Close to the official calendars; enough to keep receipts and due dates off those days.
    """
    spans = [
        (date(2014, 1, 29), date(2014, 2, 4)), (date(2015, 2, 16), date(2015, 2, 24)),
        (date(2016, 2, 6), date(2016, 2, 14)), (date(2017, 1, 26), date(2017, 2, 1)),
        (date(2018, 2, 14), date(2018, 2, 20)),
        (date(2014, 4, 9), date(2014, 4, 9)), (date(2015, 4, 28), date(2015, 4, 28)),
        (date(2016, 4, 18), date(2016, 4, 18)), (date(2017, 4, 6), date(2017, 4, 6)),
        (date(2015, 1, 2), date(2015, 1, 2)), (date(2015, 4, 29), date(2015, 4, 29)),
        (date(2016, 5, 2), date(2016, 5, 3)), (date(2017, 1, 2), date(2017, 1, 2)),
        (date(2017, 5, 2), date(2017, 5, 2)), (date(2017, 9, 4), date(2017, 9, 4)),
    ]
    days = {date(y, m, d) for y in range(2013, 2019) for m, d in ((1, 1), (4, 30), (5, 1), (9, 2))}
    for first, last in spans:
        days.update(first + timedelta(days=i) for i in range((last - first).days + 1))
    return frozenset(days)


HOLIDAYS = _holidays()
UNKNOWN_AGENCIES = ("000.00.98.H62", "000.00.99.H62", "000.00.20.H62", "000.00.35.H62",
                    "000.31.29.H62")

# Seed procedures (standards/codelists/procedure_groups.csv): online-level history, terms.
SEED_LEVELS: dict[str, tuple[tuple[int, date], ...]] = {
    "1.003725": ((2, date(2008, 8, 1)), (3, date(2014, 12, 1))),
    "1.004555": ((2, date(2008, 8, 1)), (3, date(2014, 12, 1))),
    "1.005190": ((2, date(2010, 3, 15)), (3, date(2015, 5, 1))),
    "1.005191": ((2, date(2010, 3, 15)), (3, date(2015, 5, 1))),
    "2.000488": ((2, date(2009, 11, 2)), (3, date(2016, 6, 1))),
    "1.002835": ((2, date(2012, 7, 2)), (3, date(2016, 9, 1)), (4, date(2017, 3, 1))),
    "1.001204": ((2, date(2013, 9, 3)), (4, date(2017, 5, 15))),
}
SEED_TERMS: dict[str, tuple[str, int, int]] = {  # code -> (MaLinhVuc, fee VND, working days)
    "1.003725": ("XBIN", 0, 7),
    "1.004555": ("XBIN", 0, 10),
    "1.005190": ("TLDN", 100000, 3),
    "1.005191": ("TLDN", 100000, 3),
    "2.000488": ("LLTP", 200000, 10),
    "1.002835": ("DBO", 135000, 5),
    "1.001204": ("NSNN", 0, 2),
}

# Lĩnh vực: code, name, department for province scope ("" = none), scopes among "1"/"2"/"3".
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("XBIN", "Xuất bản, In và Phát hành", "000.00.11.H62", "1"),
    ("BCVT", "Bưu chính, Viễn thông", "000.00.11.H62", "1"),
    ("TLDN", "Thành lập và hoạt động của doanh nghiệp", "000.00.04.H62", "1"),
    ("DTVN", "Đầu tư tại Việt Nam", "000.00.04.H62", "1"),
    ("HKD", "Thành lập và hoạt động của hộ kinh doanh", "", "2"),
    ("LLTP", "Lý lịch tư pháp", "000.00.03.H62", "1"),
    ("HOTI", "Hộ tịch", "000.00.03.H62", "123"),
    ("CHTH", "Chứng thực", "000.00.03.H62", "123"),
    ("DBO", "Đường bộ", "000.00.08.H62", "1"),
    ("NSNN", "Quản lý ngân sách nhà nước", "000.00.05.H62", "1"),
    ("QLCS", "Quản lý công sản", "000.00.05.H62", "12"),
    ("TMAI", "Thương mại", "000.00.06.H62", "12"),
    ("DIEN", "Điện", "000.00.06.H62", "1"),
    ("TTBV", "Trồng trọt và Bảo vệ thực vật", "000.00.07.H62", "12"),
    ("THLO", "Thủy lợi", "000.00.07.H62", "123"),
    ("HDXD", "Hoạt động xây dựng", "000.00.09.H62", "12"),
    ("QHXD", "Quy hoạch xây dựng", "000.00.09.H62", "1"),
    ("DDAI", "Đất đai", "000.00.10.H62", "123"),
    ("MTRG", "Môi trường", "000.00.10.H62", "12"),
    ("LDTL", "Lao động, Tiền lương", "000.00.12.H62", "1"),
    ("NCC", "Người có công", "000.00.12.H62", "123"),
    ("BTXH", "Bảo trợ xã hội", "000.00.12.H62", "123"),
    ("VHOA", "Văn hóa", "000.00.13.H62", "123"),
    ("DLIC", "Du lịch", "000.00.13.H62", "1"),
    ("KHCN", "Hoạt động khoa học và công nghệ", "000.00.14.H62", "1"),
    ("GDDT", "Giáo dục và Đào tạo", "000.00.15.H62", "12"),
    ("KCB", "Khám bệnh, chữa bệnh", "000.00.16.H62", "1"),
    ("ATTP", "An toàn thực phẩm và Dinh dưỡng", "000.00.16.H62", "12"),
    ("TDKT", "Thi đua, Khen thưởng", "000.00.02.H62", "123"),
    ("KNTC", "Giải quyết khiếu nại, tố cáo", "000.00.17.H62", "123"),
    ("CTDT", "Công tác dân tộc", "000.00.18.H62", "1"),
    ("QLKC", "Quản lý khu công nghiệp", "000.00.19.H62", "1"),
    ("KSTT", "Kiểm soát thủ tục hành chính", "000.00.01.H62", "1"),
)

_VERBS = ("Cấp", "Cấp lại", "Cấp đổi", "Gia hạn", "Điều chỉnh", "Thu hồi", "Thẩm định hồ sơ cấp",
          "Công nhận", "Xác nhận", "Đăng ký")
_DOCUMENTS = ("giấy phép hoạt động", "giấy chứng nhận đủ điều kiện", "chứng chỉ hành nghề",
              "giấy xác nhận", "văn bản chấp thuận", "quyết định công nhận",
              "giấy chứng nhận đăng ký", "giấy phép")
_QUALIFIERS = ("", " cho tổ chức", " cho cá nhân", " lần đầu", " do thay đổi nội dung",
               " trong trường hợp bị mất, hỏng")
_FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Phan", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
           "Dương", "Lý", "Đào", "Đinh", "Trịnh", "Tạ", "Khổng", "Kim")
_FAMILY_WEIGHTS = (38, 11, 9, 7, 5, 4, 4, 2, 2, 2, 2, 2, 2, 1, 2, 2, 1, 1, 1, 1)
_MIDDLE = (("Văn", "Đức", "Minh", "Quang", "Hữu", "Xuân", "Thanh", "Mạnh", "Công", "Tiến"),
           ("Thị", "Thu", "Ngọc", "Thanh", "Hồng", "Minh", "Phương", "Kim", "Thùy", "Mai"))
_GIVEN = (("An", "Bình", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hùng", "Khánh", "Long", "Nam",
           "Phong", "Quân", "Sơn", "Thắng", "Trung", "Tuấn", "Việt", "Vinh", "Hưng"),
          ("Anh", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hoa", "Huyền", "Hương", "Lan",
           "Liên", "Linh", "Mai", "Nga", "Ngân", "Nhung", "Phương", "Thảo", "Trang", "Yến"))
_COMPANY_FORMS = ("Công ty TNHH", "Công ty Cổ phần", "Công ty TNHH MTV", "Doanh nghiệp tư nhân")
_COMPANY_LINES = ("Thương mại và Dịch vụ", "Xây dựng", "Đầu tư và Phát triển",
                  "Sản xuất và Thương mại", "Vận tải", "Công nghệ", "Cơ khí",
                  "Nông nghiệp công nghệ cao", "In và Quảng cáo", "Môi trường")
_COMPANY_CORES = ("Thành Đạt", "Hoàng Long", "Phúc An", "Minh Khang", "Tam Đảo", "Sông Lô",
                  "Việt Hưng", "Đại Phát", "An Bình", "Hưng Thịnh", "Tân Phú", "Bảo Ngọc",
                  "Trường Sơn", "Kim Ngân", "Thái Dương", "Hải Đăng", "Vĩnh Thịnh", "Phúc Lộc",
                  "Đông Á", "Hợp Thành")
_STATE_BODIES = ("Trường Tiểu học", "Trường Trung học cơ sở", "Trường Mầm non", "Trạm Y tế",
                 "Ban Quản lý dự án xã", "Nhà Văn hóa")
_ORGANISATIONS = ("Hội Nông dân", "Hội Cựu chiến binh", "Hội Phụ nữ", "Hợp tác xã Nông nghiệp",
                  "Đoàn Thanh niên")
_FEE_CHOICES = (0, 0, 0, 0, 20000, 30000, 50000, 100000, 150000, 200000, 500000)
# fmt: on


def load_records(path: Path | str) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file, in file order (blank lines skipped)."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def fee_total(items: object) -> int | None:
    """The sum of a `DanhSachLePhi` list in VND; None when it lists no fee."""
    if not isinstance(items, list) or not items:
        return None
    return sum(int(float(str(item.get("Gia") or 0))) for item in items)


def level_on(levels: Iterable[dict[str, str]], day: date) -> int | None:
    """The online level in force on `day` per a `LichSuMucDo` list; None before its first entry."""
    stamp = day.strftime("%Y%m%d") + "235959"
    current = None
    for entry in levels:
        if entry["TuNgay"] <= stamp:
            current = int(entry["MucDo"])
    return current


def generate_province(
    out_dir: Path, seed: int = 2017, filler_dossiers: int = 20000
) -> dict[str, Any]:
    """Write `procedures.jsonl`, `dossiers.jsonl` (serving order), `ground_truth.json` to `out_dir`.

    Deterministic for a seed: the same arguments give the same bytes.
    Returns the ground truth (the content of `ground_truth.json`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The build keeps about a million small dicts alive and creates no cycles: the cyclic
    # collector would only rescan them over and over (it doubles the run time), so pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        procedures, dossier_lines, truth = _ProvinceBuilder(seed, filler_dossiers).build()
    finally:
        if collecting:
            gc.enable()
    _write_lines(out_dir / "procedures.jsonl", (_dump(p) for p in procedures))
    _write_lines(out_dir / "dossiers.jsonl", dossier_lines)
    (out_dir / "ground_truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return truth


# One encoder for every line: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dump(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{line}\n" for line in lines)


def _fmt(moment: datetime | None) -> str:
    if moment is None:
        return ""
    # %-formatting is 3-4x faster than strftime or an f-string here, and this runs ~400k times
    m = moment
    return "%04d%02d%02d%02d%02d%02d" % (m.year, m.month, m.day, m.hour, m.minute, m.second)  # noqa: UP031


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _working_days(first: date, last: date) -> list[date]:
    """Monday–Friday days of [first, last] that are not public holidays."""
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return [d for d in days if d.weekday() < 5 and d not in HOLIDAYS]


def _months() -> list[str]:
    out = []
    year, month = PERIOD_START.year, PERIOD_START.month
    while (year, month) <= (PERIOD_END.year, PERIOD_END.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in plain if not unicodedata.combining(c))


class _FastRandom(random.Random):
    """Mersenne Twister whose integer draws come from `random()`: much faster, still seeded."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq: Any) -> Any:
        return seq[int(self.random() * len(seq))]


@dataclass
class _Procedure:
    record: dict[str, Any]
    levels: list[tuple[int, date]]
    published: date
    abolished: date | None
    scope: str
    fee: int
    days: int
    seed: bool

    def level(self, day: date) -> int:
        current = 0
        for level, since in self.levels:
            if since <= day:
                current = level
        return current


@dataclass
class _Draft:
    """One dossier before it becomes a portal record."""

    procedure: _Procedure
    agency: str
    unit: str
    channel: str
    received: datetime
    submitted: datetime
    applicant_type: str
    applicant: str
    id_type: str
    id_number: str
    filler: bool
    outcome: str = "normal"  # normal | rejected (status 3) | pending (status 1)
    code: str = ""
    record: dict[str, Any] = field(default_factory=dict)


class _ProvinceBuilder:
    """Builds the province in a fixed order of random draws, so a seed gives the same data."""

    def __init__(self, seed: int, filler_dossiers: int) -> None:
        if filler_dossiers < 0:
            raise ValueError(f"filler_dossiers must be >= 0, got {filler_dossiers}")
        self.seed = seed
        self.filler_count = filler_dossiers
        self.rng = _FastRandom(seed)
        self.agencies = standards.load_codelist("agencies")
        self.agency_codes = {row["agency_code"] for row in self.agencies}
        self.units = standards.load_codelist("admin_units")
        self.groups = standards.load_codelist("procedure_groups")
        self.departments = [
            r["agency_code"]
            for r in self.agencies
            if r["level"] == "2" and r["admin_unit_code"] == PROVINCE_UNIT
        ]
        self.district_agencies = [
            (r["agency_code"], r["admin_unit_code"])
            for r in self.agencies
            if r["level"] == "2" and r["admin_unit_code"] != PROVINCE_UNIT
        ]
        self.commune_agencies = [
            (r["agency_code"], r["admin_unit_code"]) for r in self.agencies if r["level"] == "3"
        ]
        self.commune_names = [
            r["name"][len(r["type_name"]) + 1 :] for r in self.units if r["unit_type"] == "commune"
        ]
        self.fields = {code: (name, agency, scopes) for code, name, agency, scopes in FIELDS}
        self.workdays = _working_days(date(2013, 12, 1), date(2018, 3, 31))
        self.workday_set = frozenset(self.workdays)
        self.officers = [self._person_name(self.rng.random() < 0.5) for _ in range(80)]
        self.procedures: dict[str, _Procedure] = {}
        self.base_codes: set[str] = set()

    # -- the whole province ---------------------------------------------------------------
    def build(self) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        self._build_seed_procedures()
        self._build_filler_procedures()
        drafts = self._seed_dossiers()
        filler = self._filler_dossiers()
        drafts.extend(filler)
        self._assign_codes(drafts)
        for draft in drafts:
            draft.record = self._to_record(draft)
        defects, expected_rules = self._plant_defects(drafts, filler)

        duplicated = set(defects["duplicate_record"]["keys"])
        records = sorted((d.record for d in drafts), key=lambda r: (r["NgayCapNhat"], r["MaHoSo"]))
        lines: list[str] = []
        for record in records:
            line = _dump(record)
            lines.append(line)
            if record["MaHoSo"] in duplicated:
                lines.append(line)

        procedures = sorted(
            (p.record for p in self.procedures.values()),
            key=lambda r: (r["NgayCapNhat"], r["MaTTHC"]),
        )
        quarantined = len(expected_rules)
        rule_counts = Counter(rule for rules in expected_rules.values() for rule in rules)
        truth = {
            "seed": self.seed,
            "cutoff": CUTOFF_ISO,
            "procedures": {
                "records": len(procedures),
                "active_on": {
                    day.isoformat(): self._active_counts(procedures, day) for day in ACTIVE_ON
                },
            },
            "dossiers": {
                "records_served": len(lines),
                "distinct": len(records),
                "expected_quarantined": quarantined,
                "expected_loaded_distinct": len(records) - quarantined,
            },
            "defects": defects,
            "expected_rules": {key: expected_rules[key] for key in sorted(expected_rules)},
            "rule_counts": {rule: rule_counts[rule] for rule in sorted(rule_counts)},
            "figures": self._figures(records),
        }
        return procedures, lines, truth

    # -- procedures -----------------------------------------------------------------------
    def _procedure_record(
        self,
        code: str,
        name: str,
        field_code: str,
        agency: str,
        scope: str,
        levels: list[tuple[int, date]],
        fee: int,
        days: int,
        published: date,
        abolished: date | None,
    ) -> dict[str, Any]:
        changes = [_day_start(since) for _, since in levels] + [_day_start(published)]
        if abolished is not None:
            changes.append(_day_start(abolished))
        return {
            "MaTTHC": code,
            "TenTTHC": name,
            "MaLinhVuc": field_code,
            "TenLinhVuc": self.fields[field_code][0],
            "MaCoQuanThucHien": agency,
            "CapThucHien": scope,
            "MucDo": str(levels[-1][0]),
            "LichSuMucDo": [
                {"MucDo": str(level), "TuNgay": _fmt(_day_start(since))} for level, since in levels
            ],
            "PhiLePhi": str(fee),
            "ThoiHanGiaiQuyet": str(days),
            "NgayCongBo": _fmt(_day_start(published)),
            "NgayBaiBo": _fmt(_day_start(abolished)) if abolished else "",
            "NgayCapNhat": _fmt(max(changes)),
        }

    def _build_seed_procedures(self) -> None:
        for group in self.groups:
            code = group["procedure_code"]
            field_code, fee, days = SEED_TERMS[code]
            levels = list(SEED_LEVELS[code])
            published = levels[0][1]
            record = self._procedure_record(
                code,
                group["name_vi"],
                field_code,
                group["agency_code"],
                "1",
                levels,
                fee,
                days,
                published,
                None,
            )
            self.procedures[code] = _Procedure(
                record, levels, published, None, "1", fee, days, True
            )
            self.base_codes.add(code)

    def _new_code(self) -> str:
        rng = self.rng
        while True:
            code = f"{rng.choice('1112223')}.{rng.randrange(1000, 1000000):06d}"
            if code not in self.base_codes:
                self.base_codes.add(code)
                return code

    def _build_filler_procedures(self) -> None:
        rng = self.rng
        names: set[str] = set()
        by_scope = {s: [f for f in FIELDS if s in f[3] and (s != "1" or f[2])] for s in "123"}
        active_filler = ACTIVE_PROCEDURES - len(self.procedures)
        for i in range(active_filler + ABOLISHED_PROCEDURES):
            abolishing = i >= active_filler
            scope = rng.choices("123", weights=(72, 18, 10))[0]
            field_code, field_name, department, _ = rng.choice(by_scope[scope])
            agency = department if scope == "1" else PROVINCE_AGENCY
            name = self._procedure_name(field_name, names)
            base = self._new_code()
            code = f"{base}.{agency}" if rng.random() < 0.10 else base
            draw = rng.random()
            if abolishing or draw < 0.90:
                published = self._random_day(date(2008, 8, 1), date(2013, 12, 31))
            elif draw < 0.97:
                published = self._random_day(date(2014, 1, 1), date(2016, 12, 31))
            else:
                published = self._random_day(date(2017, 1, 1), date(2017, 8, 20))
            abolished = (
                self._random_day(date(2015, 1, 1), date(2017, 8, 30)) if abolishing else None
            )
            levels = [(1 if rng.random() < 0.55 else 2, published)]
            last_day = (abolished - timedelta(days=1)) if abolished else PERIOD_END
            first_change = max(published + timedelta(days=30), PERIOD_START)
            if levels[0][0] == 1 and rng.random() < 0.25 and first_change < last_day:
                levels.append((2, self._random_day(first_change, last_day)))
            fee = rng.choice(_FEE_CHOICES)
            days = rng.randint(1, 30)
            record = self._procedure_record(
                code, name, field_code, agency, scope, levels, fee, days, published, abolished
            )
            self.procedures[code] = _Procedure(
                record, levels, published, abolished, scope, fee, days, False
            )

    def _procedure_name(self, field_name: str, taken: set[str]) -> str:
        rng = self.rng
        while True:
            name = (
                f"{rng.choice(_VERBS)} {rng.choice(_DOCUMENTS)} lĩnh vực {field_name.lower()}"
                f"{rng.choice(_QUALIFIERS)}"
            )
            if name not in taken:
                taken.add(name)
                return name

    @staticmethod
    def _active_counts(procedures: list[dict[str, Any]], day: date) -> dict[str, Any]:
        stamp = day.strftime("%Y%m%d") + "235959"
        by_level: Counter[int | None] = Counter()
        for record in procedures:
            if record["NgayCongBo"] > stamp or (
                record["NgayBaiBo"] and record["NgayBaiBo"] <= stamp
            ):
                continue
            by_level[level_on(record["LichSuMucDo"], day)] += 1
        return {
            "total": sum(by_level.values()),
            "by_level": {str(lv): by_level[lv] for lv in (1, 2, 3, 4)},
        }

    # -- people and times -----------------------------------------------------------------
    def _random_day(self, first: date, last: date) -> date:
        return first + timedelta(days=self.rng.randint(0, (last - first).days))

    def _work_time(self, day: date) -> datetime:
        """A moment in office hours (07:30–17:00) of `day`."""
        return datetime(day.year, day.month, day.day, 7, 30) + timedelta(
            seconds=self.rng.randrange(34200)
        )

    def _later(self, moment: datetime, low_minutes: int, high_minutes: int) -> datetime:
        """A moment some minutes later, moved into office hours of a working day."""
        t = moment + timedelta(minutes=self.rng.randint(low_minutes, high_minutes))
        day = t.date()
        if day in self.workday_set and (7, 30) <= (t.hour, t.minute) and t.hour < 17:
            return t
        if day not in self.workday_set or t.hour >= 17:
            day = self.workdays[bisect.bisect_right(self.workdays, day)]
        return datetime(day.year, day.month, day.day, 7, 30) + timedelta(
            seconds=self.rng.randrange(5400)
        )

    def _add_workdays(self, day: date, n: int) -> date:
        """The n-th working day after (n > 0) or before (n < 0) `day`."""
        i = bisect.bisect_right(self.workdays, day) - 1  # last working day on or before `day`
        if n < 0 and self.workdays[i] != day:
            i += 1
        return self.workdays[i + n]

    def _person_name(self, female: bool) -> str:
        rng = self.rng
        family = rng.choices(_FAMILY, weights=_FAMILY_WEIGHTS)[0]
        return f"{family} {rng.choice(_MIDDLE[female])} {rng.choice(_GIVEN[female])}"

    def _applicant(self, applicant_type: str) -> str:
        rng = self.rng
        if applicant_type == "1":
            return self._person_name(rng.random() < 0.5)
        if applicant_type == "2":
            form, line = rng.choice(_COMPANY_FORMS), rng.choice(_COMPANY_LINES)
            return f"{form} {line} {rng.choice(_COMPANY_CORES)}"
        if applicant_type == "3":
            return f"{rng.choice(_STATE_BODIES)} {rng.choice(self.commune_names)}"
        return f"{rng.choice(_ORGANISATIONS)} {rng.choice(self.commune_names)}"

    def _id_number(self, received: date) -> tuple[str, str]:
        """(LoaiDinhDanh, number) of the applicant or its representative: CCCD only from 2016."""
        rng = self.rng
        cccd_share = 0.0 if received.year < 2016 else (0.15 if received.year == 2016 else 0.35)
        if rng.random() < cccd_share:
            return "1", f"026{rng.choice('01')}{rng.randint(40, 99):02d}{rng.randrange(10**6):06d}"
        return "2", f"135{rng.randrange(10**6):06d}"

    # -- dossiers -------------------------------------------------------------------------
    def _draft(
        self,
        procedure: _Procedure,
        day: date,
        channel: str,
        applicant_type: str,
        filler: bool,
        agency: str | None = None,
        unit: str = PROVINCE_UNIT,
        outcome: str = "normal",
    ) -> _Draft:
        rng = self.rng
        received = self._work_time(day)
        submitted = received
        if channel == "2":
            # submitted online up to two days earlier, but not before the procedure went online
            online_since = next(since for level, since in procedure.levels if level >= 3)
            submitted = max(
                received - timedelta(minutes=rng.randint(5, 2880)),
                _day_start(online_since) + timedelta(minutes=rng.randint(1, 300)),
            )
            submitted = min(submitted, received)
            if outcome == "pending":
                received = submitted
        id_type, id_number = self._id_number(day)
        return _Draft(
            procedure=procedure,
            agency=agency or procedure.record["MaCoQuanThucHien"],
            unit=unit,
            channel=channel,
            received=received,
            submitted=submitted,
            applicant_type=applicant_type,
            applicant=self._applicant(applicant_type),
            id_type=id_type,
            id_number=id_number,
            filler=filler,
            outcome=outcome,
        )

    def _days_of(
        self, month: str, procedure: _Procedure | None = None, min_level: int = 0
    ) -> list[date]:
        year, mon = int(month[:4]), int(month[5:])
        days = [d for d in self._month_workdays(year, mon) if d <= PERIOD_END]
        if procedure is not None:
            days = [d for d in days if procedure.level(d) >= min_level]
        return days

    def _month_workdays(self, year: int, month: int) -> list[date]:
        lo = bisect.bisect_left(self.workdays, date(year, month, 1))
        hi = bisect.bisect_left(self.workdays, date(year + month // 12, month % 12 + 1, 1))
        return self.workdays[lo:hi]

    def _spread(
        self, total: int, months: list[str], weights: list[float], minimum: int
    ) -> dict[str, int]:
        """`total` split over `months` with at least `minimum` each, the rest drawn by weight."""
        counts = dict.fromkeys(months, minimum)
        for month in self.rng.choices(months, weights=weights, k=total - minimum * len(months)):
            counts[month] += 1
        return counts

    def _split(self, total: int) -> tuple[int, int]:
        """`total` split at random in two (the two business-registration procedures)."""
        first = sum(self.rng.random() < 0.6 for _ in range(total))
        return first, total - first

    def _seed_dossiers(self) -> list[_Draft]:
        rng = self.rng
        p = self.procedures
        business = (p["1.005190"], p["1.005191"])
        judicial, printing, bulletin = p["2.000488"], p["1.003725"], p["1.004555"]
        driving, budget = p["1.002835"], p["1.001204"]
        months = _months()
        online_business = {
            **self._spread(46, months[24:36], [1 + i * 0.5 for i in range(12)], 1),
            **self._spread(244, months[36:44], [1 + i * 0.15 for i in range(8)], 15),
        }
        drafts: list[_Draft] = []

        def add(
            procedure: _Procedure,
            days: list[date],
            n: int,
            channels: str,
            applicant_types: str,
            outcome: str = "normal",
        ) -> None:
            """n dossiers on random `days`, channel and applicant type drawn from the options."""
            for _ in range(n if days else 0):
                day, channel, applicant = (
                    rng.choice(days),
                    rng.choice(channels),
                    rng.choice(applicant_types),
                )
                drafts.append(
                    self._draft(procedure, day, channel, applicant, False, outcome=outcome)
                )

        for month in months:
            days = self._days_of(month)
            # business registration: many in person or by post, online only from 2016
            for code, n in zip(business, self._split(rng.randint(40, 80)), strict=True):
                add(code, days, n, "1113", "2")
            for code, n in zip(business, self._split(online_business.get(month, 0)), strict=True):
                add(code, days, n, "2", "2")
            if month >= "2016-01":
                add(rng.choice(business), days, rng.randint(0, 2), "2", "2", "rejected")
            # judicial record: 150–250 in person a month (a few by post), 3–5 online a month
            # once it reached level 3
            add(judicial, days, rng.randint(150, 250), "1", "1")
            add(judicial, days, rng.randint(0, 8), "3", "1")
            online_days = self._days_of(month, judicial, 3)
            if month == "2016-06":
                add(judicial, online_days, 2, "2", "1")
            elif month >= "2016-07":
                add(judicial, online_days, rng.randint(3, 5), "2", "1")
                add(judicial, online_days, rng.choice((0, 0, 1)), "2", "1", "rejected")
            # printing licence: a few, never online although it reached level 3
            add(printing, days, rng.randint(0, 3), "1", "24")
            # bulletin licence: in person until it went online in 2014-12, then online only
            if month < "2014-12":
                add(bulletin, days, rng.randint(0, 2), "1", "24")
            else:
                add(bulletin, days, rng.randint(0, 3), "2", "24")
            # international driving licence: online from 2016-09, more at level 4 from 2017-03
            add(driving, days, rng.randint(15, 30), "1113", "1")
            online_days = self._days_of(month, driving, 3)
            if month >= "2017-03":
                add(driving, online_days, rng.randint(5, 12), "2", "1")
            elif month >= "2016-09":
                add(driving, online_days, rng.randint(1, 4), "2", "1")
            # budget-unit code: state bodies, online from 2017-05-15 at level 4
            add(budget, days, rng.randint(5, 15), "1", "3")
            add(budget, self._days_of(month, budget, 3), rng.randint(3, 8), "2", "3")
        # submitted online on the last evening, not yet looked at by the cut-off
        for procedure, applicant_type in ((business[0], "2"), (driving, "1"), (budget, "3")):
            draft = self._draft(
                procedure, PERIOD_END, "2", applicant_type, False, outcome="pending"
            )
            draft.submitted = draft.received = datetime(2017, 8, 31, 19, 0) + timedelta(
                seconds=rng.randrange(14400)
            )
            drafts.append(draft)
        return drafts

    def _filler_dossiers(self) -> list[_Draft]:
        rng = self.rng
        filler = [p for p in self.procedures.values() if not p.seed]
        order = list(range(len(filler)))
        rng.shuffle(order)
        weights = [0.0] * len(filler)
        for rank, index in enumerate(order):
            weights[index] = 1.0 / (rank + 5) ** 0.9
        cumulative = []
        running = 0.0
        for w in weights:
            running += w
            cumulative.append(running)
        drafts: list[_Draft] = []
        while len(drafts) < self.filler_count:
            procedure = rng.choices(filler, cum_weights=cumulative)[0]
            first = max(procedure.published, PERIOD_START)
            last = (
                min(procedure.abolished - timedelta(days=1), PERIOD_END)
                if procedure.abolished
                else PERIOD_END
            )
            lo = bisect.bisect_left(self.workdays, first)
            hi = bisect.bisect_right(self.workdays, last)
            if lo >= hi:
                continue
            day = self.workdays[rng.randrange(lo, hi)]
            if procedure.scope == "1":
                agency, unit = procedure.record["MaCoQuanThucHien"], PROVINCE_UNIT
            elif procedure.scope == "2":
                agency, unit = rng.choice(self.district_agencies)
            else:
                agency, unit = rng.choice(self.commune_agencies)
            applicant_type = rng.choices("1234", weights=(80, 12, 4, 4))[0]
            channel = "3" if rng.random() < 0.08 else "1"
            drafts.append(self._draft(procedure, day, channel, applicant_type, True, agency, unit))
        return drafts

    def _assign_codes(self, drafts: list[_Draft]) -> None:
        """MaHoSo = agency-yyMMdd-seq, the sequence counted per agency and day of receipt."""
        order = sorted(range(len(drafts)), key=lambda i: (drafts[i].agency, drafts[i].received, i))
        seq: Counter[tuple[str, date]] = Counter()
        for i in order:
            draft = drafts[i]
            key = (draft.agency, draft.received.date())
            seq[key] += 1
            draft.code = f"{draft.agency}-{draft.received:%y%m%d}-{seq[key]:04d}"

    def _timeline(self, draft: _Draft, due: datetime) -> list[tuple[datetime, str]]:
        """The status steps of a dossier, cut at the cut-off."""
        rng = self.rng
        steps: list[tuple[datetime, str]] = []
        if draft.channel == "2":
            steps.append((draft.submitted, "1"))
            if draft.outcome == "pending":
                return steps
            if draft.outcome == "rejected":
                return steps + [(draft.received, "3")]
        steps.append((draft.received, "2"))
        t = self._later(draft.received, 15, 240)
        steps.append((t, "4"))
        draw = rng.random()
        if draw < 0.01:
            steps.append((self._later(t, 600, 6000), "7"))
        elif draw < 0.02:
            steps.append((self._later(t, 600, 6000), "8"))
        else:
            if draw < 0.07:
                t = self._later(t, 240, 4320)
                steps.append((t, "5"))
                t = self._later(t, 1440, 14400)
                steps.append((t, "4"))
            if draft.procedure.fee and rng.random() < 0.04:
                t = self._later(t, 60, 2880)
                steps.append((t, "6"))
                t = self._later(t, 600, 4320)
                steps.append((t, "4"))
            draw = rng.random()
            if draw < 0.10:
                finish_day = self._add_workdays(due.date(), rng.randint(1, 10))
            elif draw < 0.40:
                finish_day = max(self._add_workdays(due.date(), -rng.randint(1, 3)), t.date())
            else:
                finish_day = due.date()
            finish = self._work_time(finish_day)
            if finish <= t:
                finish = self._later(t, 10, 120)
            steps.append((finish, "9"))
            if rng.random() < 0.92:
                steps.append((self._later(finish, 30, 4320), "10"))
        return [step for step in steps if step[0] <= CUTOFF]

    def _to_record(self, draft: _Draft) -> dict[str, Any]:
        rng = self.rng
        procedure = draft.procedure
        proc = procedure.record
        due = datetime.combine(
            self._add_workdays(draft.received.date(), procedure.days), draft.received.time()
        )
        steps = self._timeline(draft, due)
        status_times = {status: moment for moment, status in steps}
        status = steps[-1][1]
        received = status not in ("1", "3")
        online = draft.channel == "2"
        level = procedure.level(draft.received.date())
        fee = procedure.fee
        if fee == 0:
            paid = "0"
        elif online and level >= 4 and rng.random() < 0.85:
            paid = "1"
        else:
            paid = "3"
        base = sum(map(ord, draft.agency))  # the same few officers always work for one agency
        officers = [self.officers[(base + 7 * k) % len(self.officers)] for k in range(3)]
        history = [self._step(moment, code, draft, officers) for moment, code in steps]
        extra_docs = []
        if "5" in status_times:
            resumed = [m for m, s in steps if s == "4" and m > status_times["5"]]
            extra_docs.append(
                {
                    "NgayYeuCau": _fmt(status_times["5"]),
                    "NoiDungYeuCau": "Bổ sung bản sao có chứng thực giấy tờ còn thiếu",
                    "NgayBoSung": _fmt(resumed[0]) if resumed else "",
                }
            )
        by_post = draft.channel == "3" or (online and level >= 4 and rng.random() < 0.5)
        email = ""
        if draft.applicant_type == "1" and (online or rng.random() < 0.2):
            email = (
                f"{_ascii(draft.applicant).lower().replace(' ', '.')}{rng.randint(1, 99)}@gmail.com"
            )
        phone = (
            f"09{rng.randrange(10**8):08d}"
            if rng.random() < 0.7
            else f"016{rng.randrange(10**8):08d}"
        )
        return {
            "MaHoSo": draft.code,
            "MaTTHC": proc["MaTTHC"],
            "TenTTHC": proc["TenTTHC"],
            "MaLinhVuc": proc["MaLinhVuc"],
            "TenLinhVuc": proc["TenLinhVuc"],
            "SoBienNhan": draft.code,
            "ChuHoSo": draft.applicant,
            "LoaiDoiTuong": draft.applicant_type,
            "MaDoiTuong": "",
            "ThongTinKhac": "",
            "Email": email,
            "Fax": "",
            "SoDienThoai": phone,
            "TrichYeuHoSo": f"Đề nghị {_lower_first(proc['TenTTHC'])} - {draft.applicant}",
            "NgayTiepNhan": _fmt(draft.received),
            "NgayHenTra": _fmt(due) if received else "",
            "TrangThaiHoSo": status,
            "NgayTra": _fmt(status_times.get("10")),
            "ThongTinTra": (
                ""
                if "10" not in status_times
                else "Trả qua dịch vụ bưu chính công ích"
                if by_post
                else "Trả trực tiếp tại Bộ phận một cửa"
            ),
            "HinhThuc": "1" if by_post else "0",
            "NgayKetThucXuLy": _fmt(status_times.get("9")),
            "DonViXuLy": draft.agency,
            "GhiChu": "",
            "TaiLieuNop": (
                [
                    {"TepDinhKemId": f"{draft.code}-{n:02d}", "TenTepDinhKem": name}
                    for n, name in enumerate(("Don_de_nghi.pdf", "Giay_to_kem_theo.pdf"), 1)
                ]
                if online
                else []
            ),
            "DanhSachLePhi": (
                [
                    {
                        "TenPhiLePhi": "Lệ phí giải quyết thủ tục hành chính",
                        "MaPhiLePhi": f"LP-{proc['MaTTHC']}",
                        "HinhThucThu": "2" if paid == "1" else "1",
                        "Gia": str(fee),
                        "LoaiPhiLePhi": "2",
                    }
                ]
                if fee
                else []
            ),
            "DanhSachHoSoBoSung": extra_docs,
            "DanhSachGiayToKetQua": (
                [{"TenGiayTo": "Kết quả giải quyết", "MaGiayTo": f"{draft.code}-KQ"}]
                if "9" in status_times
                else []
            ),
            "KenhThucHien": draft.channel,
            "SoGiayToChuHoSo": draft.id_number,
            "NoiNopHoSo": draft.unit,
            "HoSoCoThanhPhanSoHoa": "1" if online else "0",
            "TaiKhoanDuocXacThucVoiVNeID": "0",
            "DuocThanhToanTrucTuyen": paid,
            "NgayTuChoi": _fmt(status_times.get("3")),
            "NgayNopHoSo": _fmt(draft.submitted),
            "DinhDanhCHS": [{"LoaiDinhDanh": draft.id_type, "SoDinhDanh": draft.id_number}],
            "QuaTrinhXuLy": history,
            "NgayCapNhat": _fmt(steps[-1][0]),
        }

    _STEP_TEXT = {
        "1": "Nộp hồ sơ trực tuyến",
        "2": "Tiếp nhận hồ sơ",
        "3": "Từ chối tiếp nhận: hồ sơ không đủ điều kiện",
        "4": "Chuyển xử lý",
        "5": "Yêu cầu bổ sung giấy tờ",
        "6": "Yêu cầu thực hiện nghĩa vụ tài chính",
        "7": "Công dân yêu cầu rút hồ sơ",
        "8": "Dừng xử lý hồ sơ",
        "9": "Hoàn thành xử lý, ký duyệt kết quả",
        "10": "Trả kết quả",
    }

    def _step(
        self, moment: datetime, status: str, draft: _Draft, officers: list[str]
    ) -> dict[str, str]:
        if status in ("1", "7"):
            who, title, unit = draft.applicant, "", ""
        elif status in ("2", "3", "10"):
            who, title, unit = officers[0], "Cán bộ một cửa", "Bộ phận Tiếp nhận và Trả kết quả"
        elif status == "9":
            who, title, unit = officers[2], "Phó Thủ trưởng", "Lãnh đạo cơ quan"
        else:
            who, title, unit = officers[1], "Chuyên viên", "Phòng chuyên môn"
        return {
            "ThoiDiemXuLy": _fmt(moment),
            "TrangThai": status,
            "NoiDungXuLy": self._STEP_TEXT[status],
            "NguoiXuLy": who,
            "ChucDanh": title,
            "PhongBanXuLy": unit,
        }

    # -- defects --------------------------------------------------------------------------
    def _plant_defects(
        self, drafts: list[_Draft], filler: list[_Draft]
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        rng = self.rng
        sizes = {name: round(rate * self.filler_count) for name, (_, rate) in DEFECTS.items()}
        quarantine = [n for n, (outcome, _) in DEFECTS.items() if outcome == "quarantined"]
        repaired = [n for n, (outcome, _) in DEFECTS.items() if outcome == "repaired"]
        pool = list(filler)
        rng.shuffle(pool)
        chosen: dict[str, list[_Draft]] = {}
        for name in quarantine:
            chosen[name], pool = pool[: sizes[name]], pool[sizes[name] :]
        if any(len(chosen[n]) < sizes[n] for n in quarantine):
            raise ValueError(
                f"filler_dossiers={self.filler_count} is too small for the planted defects"
            )
        used = {id(d) for group in chosen.values() for d in group}
        rest = [d for d in drafts if id(d) not in used]
        rng.shuffle(rest)
        for name in repaired:
            chosen[name], rest = rest[: sizes[name]], rest[sizes[name] :]

        expected: dict[str, list[str]] = {}
        missing_fields = list(MISSING_FIELD_RULES)
        for i, draft in enumerate(chosen["missing_required"]):
            name = missing_fields[i % len(missing_fields)]
            draft.record[name] = ""
            expected[draft.code] = [MISSING_FIELD_RULES[name]]
        for draft in chosen["unknown_procedure"]:
            draft.record["MaTTHC"] = self._new_code()
            expected[draft.code] = list(DEFECT_RULES["unknown_procedure"])
        for name in ("unknown_agency", "due_before_receipt", "multi"):
            for draft in chosen[name]:
                if name in ("unknown_agency", "multi"):
                    draft.record["DonViXuLy"] = rng.choice(UNKNOWN_AGENCIES)
                if name in ("due_before_receipt", "multi"):
                    early = draft.received - timedelta(days=rng.randint(1, 30))
                    draft.record["NgayHenTra"] = _fmt(early)
                expected[draft.code] = list(DEFECT_RULES[name])
        for draft in chosen["malformed_date"]:
            r = draft.received
            draft.record["NgayTiepNhan"] = rng.choice(
                (
                    f"{r.year}0230{r:%H%M%S}",
                    f"{r.year}1345{r:%H%M%S}",
                    f"{r.year}0431{r:%H%M%S}",
                    f"{r:%Y%m%d}25{r:%M%S}",
                )
            )
            expected[draft.code] = list(DEFECT_RULES["malformed_date"])
        for draft in chosen["bad_id_number"]:
            number = draft.id_number
            bad = (
                number + str(rng.randint(0, 9)) * rng.randint(1, 2)
                if len(number) == 9
                else number[: rng.choice((10, 11))]
            )
            self._set_id(draft.record, draft.id_type, bad)
            expected[draft.code] = list(DEFECT_RULES["bad_id_number"])
        for draft in chosen["nfd_text"]:
            record = draft.record
            for name in ("TenTTHC", "TrichYeuHoSo", "ChuHoSo"):
                text = unicodedata.normalize("NFD", record[name])
                if rng.random() < 0.5:
                    text = text.replace(" ", "  ", 1) + " "
                record[name] = text
        for draft in chosen["cmnd_mislabelled"]:
            number = f"135{rng.randrange(10**6):06d}"
            if rng.random() < 0.5:
                self._set_id(draft.record, "1", number)
            else:
                sep = rng.choice((" ", "."))
                self._set_id(draft.record, "2", f"{number[:3]}{sep}{number[3:6]}{sep}{number[6:]}")

        defects = {}
        for name, (outcome, _) in DEFECTS.items():
            keys = sorted(d.code for d in chosen[name])
            defects[name] = {"outcome": outcome, "count": len(keys), "keys": keys}
        return defects, {key: sorted(rules) for key, rules in expected.items()}

    @staticmethod
    def _set_id(record: dict[str, Any], id_type: str, number: str) -> None:
        record["SoGiayToChuHoSo"] = number
        record["DinhDanhCHS"] = [{"LoaiDinhDanh": id_type, "SoDinhDanh": number}]

    # -- figures --------------------------------------------------------------------------
    def _figures(self, records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
        """Online dossiers received (status not 1/3) per month of receipt, per procedure group."""
        wanted = (
            "business_registration",
            "judicial_record",
            "printing_licence",
            "bulletin_licence",
        )
        group_of = {
            g["procedure_code"]: g["group_code"] for g in self.groups if g["group_code"] in wanted
        }
        months = _months()
        figures = {f"{g}_online": dict.fromkeys(months, 0) for g in wanted}
        for record in records:
            group = group_of.get(record["MaTTHC"])
            if (
                group is None
                or record["KenhThucHien"] != "2"
                or record["TrangThaiHoSo"] in ("1", "3")
            ):
                continue
            month = f"{record['NgayTiepNhan'][:4]}-{record['NgayTiepNhan'][4:6]}"
            if month in figures[f"{group}_online"]:
                figures[f"{group}_online"][month] += 1
        return figures


def main(argv: list[str] | None = None) -> int:
    """`python -m simulators.generator --out DIR [--seed N] [--filler-dossiers N]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory for the jsonl files")
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--filler-dossiers", type=int, default=20000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    truth = generate_province(args.out, seed=args.seed, filler_dossiers=args.filler_dossiers)
    print(
        f"{truth['procedures']['records']} procedures, "
        f"{truth['dossiers']['records_served']} dossier "
        f"records into {args.out} in {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
