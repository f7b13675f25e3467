"""The generated province: deterministic, coherent, and its ground truth matches a recount."""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest

import standards
from simulators.generator import generate_province, load_records

SMALL = 2000
CUTOFF = "20170831235959"
SEED_CODES = {row["procedure_code"] for row in standards.load_codelist("procedure_groups")}
AGENCIES = {row["agency_code"]: row for row in standards.load_codelist("agencies")}
UNITS = {row["unit_code"]: row for row in standards.load_codelist("admin_units")}
QUARANTINED = (
    "missing_required",
    "unknown_procedure",
    "unknown_agency",
    "due_before_receipt",
    "malformed_date",
    "bad_id_number",
    "multi",
)
MONTHS = [f"{y}-{m:02d}" for y in range(2014, 2018) for m in range(1, 13)][:44]
PROCEDURE_CODE = re.compile(r"^[0-9]\.[0-9]{6}(\.[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2})?$")
AGENCY_CODE = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$")


@pytest.fixture(scope="module")
def province(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("province")
    generate_province(out, seed=2017, filler_dossiers=SMALL)
    return out


@pytest.fixture(scope="module")
def truth(province) -> dict:
    return json.loads((province / "ground_truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lines(province) -> list[str]:
    return (province / "dossiers.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def dossiers(province) -> dict[str, dict]:
    """Distinct dossiers by MaHoSo (duplicates served twice are one dossier)."""
    return {r["MaHoSo"]: r for r in load_records(province / "dossiers.jsonl")}


@pytest.fixture(scope="module")
def procedures(province) -> dict[str, dict]:
    return {r["MaTTHC"]: r for r in load_records(province / "procedures.jsonl")}


def _parse(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _level_on(procedure: dict, day: date) -> int:
    level = 0
    for entry in procedure["LichSuMucDo"]:
        if entry["TuNgay"][:8] <= day.strftime("%Y%m%d"):
            level = int(entry["MucDo"])
    return level


def _quarantined_keys(truth: dict) -> set[str]:
    return {k for name in QUARANTINED for k in truth["defects"][name]["keys"]}


def test_same_seed_gives_the_same_bytes(province, tmp_path):
    generate_province(tmp_path, seed=2017, filler_dossiers=SMALL)
    for name in ("procedures.jsonl", "dossiers.jsonl", "ground_truth.json"):
        assert (tmp_path / name).read_bytes() == (province / name).read_bytes(), name


def test_another_seed_gives_another_province(province, tmp_path):
    generate_province(tmp_path, seed=7, filler_dossiers=SMALL)
    assert (tmp_path / "dossiers.jsonl").read_bytes() != (province / "dossiers.jsonl").read_bytes()


def test_ground_truth_has_exactly_the_agreed_keys(truth):
    assert list(truth) == [
        "seed",
        "cutoff",
        "procedures",
        "dossiers",
        "defects",
        "expected_rules",
        "rule_counts",
        "figures",
    ]
    assert truth["seed"] == 2017
    assert truth["cutoff"] == "2017-08-31T23:59:59+07:00"
    assert set(truth["dossiers"]) == {
        "records_served",
        "distinct",
        "expected_quarantined",
        "expected_loaded_distinct",
    }
    assert set(truth["figures"]) == {
        "business_registration_online",
        "judicial_record_online",
        "printing_licence_online",
        "bulletin_licence_online",
    }
    for figure in truth["figures"].values():
        assert list(figure) == MONTHS


def test_procedure_levels_match_a_recount(procedures, truth):
    assert truth["procedures"]["records"] == len(procedures)
    for day_text, expected in truth["procedures"]["active_on"].items():
        day = date.fromisoformat(day_text)
        stamp = day.strftime("%Y%m%d")
        by_level: Counter[str] = Counter()
        for p in procedures.values():
            published = p["NgayCongBo"][:8] <= stamp
            abolished = p["NgayBaiBo"] != "" and p["NgayBaiBo"][:8] <= stamp
            if published and not abolished:
                by_level[str(_level_on(p, day))] += 1
        assert expected["total"] == sum(by_level.values())
        assert expected["by_level"] == {lv: by_level[lv] for lv in "1234"}
    on_cutoff = truth["procedures"]["active_on"]["2017-08-31"]
    assert on_cutoff["total"] == 1975
    assert (on_cutoff["by_level"]["3"], on_cutoff["by_level"]["4"]) == (5, 2)
    end_2016 = truth["procedures"]["active_on"]["2016-12-31"]
    assert (end_2016["by_level"]["3"], end_2016["by_level"]["4"]) == (6, 0)


def test_catalogue_has_abolished_procedures_and_unique_codes(procedures):
    abolished = [p for p in procedures.values() if p["NgayBaiBo"]]
    assert 30 <= len(abolished) <= 40
    assert all("20150101" <= p["NgayBaiBo"][:8] < "20170831" for p in abolished)
    bases = [code[:8] for code in procedures]
    assert len(bases) == len(set(bases))
    suffixed = [code for code in procedures if len(code) > 8]
    assert 0.05 * len(procedures) < len(suffixed) < 0.15 * len(procedures)
    assert all(PROCEDURE_CODE.match(code) for code in procedures)
    assert SEED_CODES <= set(procedures)


def test_procedures_are_coherent(procedures):
    for p in procedures.values():
        history = p["LichSuMucDo"]
        assert [h["TuNgay"] for h in history] == sorted(h["TuNgay"] for h in history)
        assert p["MucDo"] == history[-1]["MucDo"]
        assert history[0]["TuNgay"] == p["NgayCongBo"]
        assert p["NgayCapNhat"] <= CUTOFF and p["NgayCongBo"] <= CUTOFF
        assert 1 <= int(p["ThoiHanGiaiQuyet"]) <= 30
        assert p["CapThucHien"] in {"1", "2", "3"}
        if p["CapThucHien"] == "1":
            assert AGENCIES[p["MaCoQuanThucHien"]]["level"] == "2"
        else:
            assert p["MaCoQuanThucHien"] == "000.00.00.H62"
    fields = {p["MaLinhVuc"] for p in procedures.values()}
    assert 25 <= len(fields) <= 40


def test_seed_procedures_have_the_agreed_history(procedures):
    def history(code):
        return [(h["MucDo"], h["TuNgay"][:8]) for h in procedures[code]["LichSuMucDo"]]

    assert history("1.003725")[-2:] == [("2", "20080801"), ("3", "20141201")]
    assert history("1.004555")[-1] == ("3", "20141201")
    assert history("1.005190")[-1] == ("3", "20150501")
    assert history("2.000488")[-1] == ("3", "20160601")
    assert [lv for lv, _ in history("1.002835")] == ["2", "3", "4"]
    assert history("1.002835")[1:] == [("3", "20160901"), ("4", "20170301")]
    assert history("1.001204")[-1] == ("4", "20170515")
    for group in standards.load_codelist("procedure_groups"):
        assert procedures[group["procedure_code"]]["MaCoQuanThucHien"] == group["agency_code"]


def test_figures_match_a_recount(dossiers, truth):
    groups = {
        row["procedure_code"]: f"{row['group_code']}_online"
        for row in standards.load_codelist("procedure_groups")
    }
    recount = {name: dict.fromkeys(MONTHS, 0) for name in truth["figures"]}
    for d in dossiers.values():
        name = groups.get(d["MaTTHC"])
        if name in recount and d["KenhThucHien"] == "2" and d["TrangThaiHoSo"] not in ("1", "3"):
            recount[name][f"{d['NgayTiepNhan'][:4]}-{d['NgayTiepNhan'][4:6]}"] += 1
    assert recount == truth["figures"]


def test_figures_are_the_articles(truth, dossiers):
    business = truth["figures"]["business_registration_online"]
    assert all(business[m] == 0 for m in MONTHS if "2015-06" <= m <= "2015-12")
    assert sum(n for m, n in business.items() if m.startswith("2016")) == 46
    assert sum(n for m, n in business.items() if m.startswith("2017")) == 244
    judicial = truth["figures"]["judicial_record_online"]
    assert all(3 <= judicial[m] <= 5 for m in MONTHS if m >= "2016-07")
    assert all(judicial[m] == 0 for m in MONTHS if m < "2016-06")
    assert all(n == 0 for m, n in truth["figures"]["printing_licence_online"].items())
    in_person = Counter(
        d["NgayTiepNhan"][:6]
        for d in dossiers.values()
        if d["MaTTHC"] == "2.000488" and d["KenhThucHien"] == "1"
    )
    assert all(150 <= n <= 250 for n in in_person.values()) and len(in_person) == 44
    bulletin = [
        d
        for d in dossiers.values()
        if d["MaTTHC"] == "1.004555" and d["NgayTiepNhan"] >= "20141201"
    ]
    assert bulletin and all(d["KenhThucHien"] == "2" for d in bulletin)
    printing = [d for d in dossiers.values() if d["MaTTHC"] == "1.003725"]
    assert printing and all(d["KenhThucHien"] != "2" for d in printing)


def test_online_only_where_the_level_allows(dossiers, procedures):
    online = [d for d in dossiers.values() if d["KenhThucHien"] == "2"]
    assert online
    for d in online:
        received = _parse(d["NgayTiepNhan"])
        assert _level_on(procedures[d["MaTTHC"]], received.date()) >= 3, d["MaHoSo"]
        assert d["MaTTHC"] in SEED_CODES


def test_planted_keys_exist_and_do_not_overlap(truth, dossiers):
    seen: set[str] = set()
    for name, defect in truth["defects"].items():
        assert defect["count"] == len(defect["keys"]) == len(set(defect["keys"]))
        assert defect["outcome"] == ("quarantined" if name in QUARANTINED else "repaired")
        assert set(defect["keys"]) <= set(dossiers), name
        assert not seen & set(defect["keys"]), name
        seen |= set(defect["keys"])
    rates = {"missing_required": 0.015, "multi": 0.005, "nfd_text": 0.02}
    for name, defect in truth["defects"].items():
        assert defect["count"] == round(rates.get(name, 0.01) * SMALL), name


def test_expected_rules_cover_every_quarantined_dossier(truth):
    quarantined = _quarantined_keys(truth)
    assert set(truth["expected_rules"]) == quarantined
    assert truth["dossiers"]["expected_quarantined"] == len(quarantined)
    assert (
        truth["dossiers"]["expected_loaded_distinct"]
        == truth["dossiers"]["distinct"] - truth["dossiers"]["expected_quarantined"]
    )
    recount = Counter(rule for rules in truth["expected_rules"].values() for rule in rules)
    assert truth["rule_counts"] == dict(recount)
    for key in truth["defects"]["multi"]["keys"]:
        assert truth["expected_rules"][key] == [
            "agency_code.in_codelist",
            "due_at.not_before_received_at",
        ]
    assert all(rules == sorted(rules) for rules in truth["expected_rules"].values())


def test_quarantine_defects_hit_filler_dossiers_only(truth, dossiers):
    for key in _quarantined_keys(truth):
        assert dossiers[key]["MaTTHC"] not in SEED_CODES


def test_defects_look_as_planted(truth, dossiers, procedures):
    required = {
        "MaTTHC": "procedure_code.required",
        "DonViXuLy": "agency_code.required",
        "NgayTiepNhan": "received_at.required",
        "KenhThucHien": "channel.required",
        "TrangThaiHoSo": "status.required",
    }
    keys = {name: truth["defects"][name]["keys"] for name in truth["defects"]}
    for key in keys["missing_required"]:
        empty = [f for f in required if dossiers[key][f] == ""]
        assert len(empty) == 1 and truth["expected_rules"][key] == [required[empty[0]]]
    for key in keys["unknown_procedure"]:
        code = dossiers[key]["MaTTHC"]
        assert PROCEDURE_CODE.match(code) and code not in procedures
    for key in keys["unknown_agency"] + keys["multi"]:
        agency = dossiers[key]["DonViXuLy"]
        assert AGENCY_CODE.match(agency) and agency not in AGENCIES
        assert key.rsplit("-", 2)[0] in AGENCIES  # MaHoSo keeps the agency it was made with
    for key in keys["due_before_receipt"] + keys["multi"]:
        d = dossiers[key]
        assert _parse(d["NgayHenTra"]).date() < _parse(d["NgayTiepNhan"]).date()
    for key in keys["malformed_date"]:
        text = dossiers[key]["NgayTiepNhan"]
        assert len(text) == 14 and text.isdigit() and _parse(text) is None
    for key in keys["bad_id_number"]:
        d = dossiers[key]
        assert len(d["SoGiayToChuHoSo"]) in (10, 11) and d["SoGiayToChuHoSo"].isdigit()
        assert d["DinhDanhCHS"][0]["SoDinhDanh"] == d["SoGiayToChuHoSo"]
    for key in keys["nfd_text"]:
        d = dossiers[key]
        texts = [d["TenTTHC"], d["TrichYeuHoSo"], d["ChuHoSo"]]
        assert any(unicodedata.normalize("NFC", t) != t or "  " in t for t in texts)
    for key in keys["cmnd_mislabelled"]:
        ident = dossiers[key]["DinhDanhCHS"][0]
        digits = re.sub(r"[ .]", "", ident["SoDinhDanh"])
        assert len(digits) == 9 and (ident["LoaiDinhDanh"] == "1" or digits != ident["SoDinhDanh"])


def test_clean_dossiers_pass_every_rule(truth, dossiers, procedures):
    """Only the planted records may fail a rule: the rest must load."""
    quarantined = _quarantined_keys(truth)
    statuses = {row["code"] for row in standards.load_codelist("dossier_status")}
    for key, d in dossiers.items():
        if key in quarantined:
            continue
        for name in ("MaHoSo", "MaTTHC", "DonViXuLy", "NgayTiepNhan", "KenhThucHien"):
            assert d[name], (key, name)
        assert d["MaTTHC"] in procedures and d["DonViXuLy"] in AGENCIES, key
        assert d["KenhThucHien"] in {"1", "2", "3"} and d["TrangThaiHoSo"] in statuses
        assert d["LoaiDoiTuong"] in {"1", "2", "3", "4"} and d["NoiNopHoSo"] in UNITS
        received = _parse(d["NgayTiepNhan"])
        assert received is not None and date(2014, 1, 1) <= received.date() <= date(2017, 8, 31)
        if d["NgayHenTra"]:
            assert _parse(d["NgayHenTra"]) >= received, key
        digits = re.sub(r"[ .]", "", d["SoGiayToChuHoSo"])
        assert len(digits) in (9, 12) and digits.isdigit(), key
        assert d["DuocThanhToanTrucTuyen"] in {"0", "1", "3"}


def test_agency_and_place_agree(truth, dossiers, procedures):
    quarantined = _quarantined_keys(truth)
    for key, d in dossiers.items():
        if key in quarantined:
            continue
        scope = procedures[d["MaTTHC"]]["CapThucHien"]
        agency = AGENCIES[d["DonViXuLy"]]
        if scope == "1":
            assert d["DonViXuLy"] == procedures[d["MaTTHC"]]["MaCoQuanThucHien"]
            assert d["NoiNopHoSo"] == "26"
        else:
            assert agency["admin_unit_code"] == d["NoiNopHoSo"]
            expected_type = "district" if scope == "2" else "commune"
            assert UNITS[d["NoiNopHoSo"]]["unit_type"] == expected_type


def test_duplicates_are_byte_identical_copies_served_right_after(truth, lines):
    duplicated = set(truth["defects"]["duplicate_record"]["keys"])
    keys = [json.loads(line)["MaHoSo"] for line in lines]
    counts = Counter(keys)
    assert {k for k, n in counts.items() if n > 1} == duplicated
    assert max(counts.values()) == 2
    for i, key in enumerate(keys):
        if key in duplicated and keys[i - 1] != key:
            assert lines[i + 1] == lines[i]
    assert truth["dossiers"]["records_served"] == len(lines)
    assert truth["dossiers"]["distinct"] == len(counts)


def test_dossiers_are_in_serving_order(lines):
    keys = [(r["NgayCapNhat"], r["MaHoSo"]) for r in map(json.loads, lines)]
    assert keys == sorted(keys)


def test_nothing_happens_after_the_cutoff(dossiers):
    for d in dossiers.values():
        events = [step["ThoiDiemXuLy"] for step in d["QuaTrinhXuLy"]]
        assert events and events == sorted(events)
        assert d["NgayCapNhat"] == events[-1] <= CUTOFF
        for name in ("NgayTra", "NgayKetThucXuLy", "NgayNopHoSo", "NgayTuChoi"):
            assert d[name] <= CUTOFF


def test_status_history_is_coherent(truth, dossiers):
    status_missing = {
        k
        for k in truth["defects"]["missing_required"]["keys"]
        if dossiers[k]["TrangThaiHoSo"] == ""
    }
    finished_statuses = Counter()
    for key, d in dossiers.items():
        steps = [s["TrangThai"] for s in d["QuaTrinhXuLy"]]
        if key not in status_missing:
            assert d["TrangThaiHoSo"] == steps[-1]
        assert steps[0] in ("1", "2")
        assert bool(d["NgayKetThucXuLy"]) == ("9" in steps)
        assert bool(d["NgayTra"]) == ("10" in steps)
        if "10" in steps:
            assert d["NgayTra"] >= d["NgayKetThucXuLy"]
        finished_statuses[steps[-1]] += 1
    # every kind of ending shows up: received, processing, paused, withdrawn, finished, rejected
    assert set(finished_statuses) >= {"1", "2", "3", "4", "5", "7", "8", "9", "10"}


def test_finishing_is_mostly_on_time(truth, dossiers):
    outcomes = Counter()
    for d in dossiers.values():
        if d["NgayKetThucXuLy"] and _parse(d["NgayHenTra"] or "x"):
            finished, due = d["NgayKetThucXuLy"][:8], d["NgayHenTra"][:8]
            outcomes["early" if finished < due else "on_time" if finished == due else "late"] += 1
    total = sum(outcomes.values())
    assert outcomes["on_time"] > outcomes["early"] > outcomes["late"] > 0.03 * total


def test_dossier_codes_follow_agency_day_sequence(truth, dossiers):
    pattern = re.compile(r"^(\d{3}\.\d{2}\.\d{2}\.H62)-(\d{6})-(\d{4})$")
    malformed = set(truth["defects"]["malformed_date"]["keys"])
    by_agency_day = defaultdict(list)
    for key, d in dossiers.items():
        match = pattern.match(key)
        assert match, key
        agency, day, seq = match.groups()
        assert agency in AGENCIES
        if key not in malformed and d["NgayTiepNhan"]:
            assert d["NgayTiepNhan"][2:8] == day, key
        by_agency_day[(agency, day)].append(int(seq))
    for seqs in by_agency_day.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_cccd_appears_only_from_2016(truth, dossiers):
    planted = _quarantined_keys(truth) | set(truth["defects"]["cmnd_mislabelled"]["keys"])
    cccd_years = Counter()
    for key, d in dossiers.items():
        if key in planted:
            continue
        ident = d["DinhDanhCHS"][0]
        digits = {"1": 12, "2": 9}[ident["LoaiDinhDanh"]]
        assert len(ident["SoDinhDanh"]) == digits and ident["SoDinhDanh"] == d["SoGiayToChuHoSo"]
        if digits == 12:
            cccd_years[d["NgayTiepNhan"][:4]] += 1
    assert set(cccd_years) == {"2016", "2017"}


@pytest.mark.slow
def test_default_size_province(tmp_path):
    started = time.perf_counter()
    truth = generate_province(tmp_path)
    elapsed = time.perf_counter() - started
    assert elapsed < 30
    assert {n: d["count"] for n, d in truth["defects"].items()} == {
        "missing_required": 300,
        "unknown_procedure": 200,
        "unknown_agency": 200,
        "due_before_receipt": 200,
        "malformed_date": 200,
        "bad_id_number": 200,
        "multi": 100,
        "nfd_text": 400,
        "cmnd_mislabelled": 200,
        "duplicate_record": 200,
    }
    assert truth["dossiers"]["expected_quarantined"] == 1400
    served = sum(1 for _ in load_records(tmp_path / "dossiers.jsonl"))
    assert served == truth["dossiers"]["records_served"] == truth["dossiers"]["distinct"] + 200
    business = truth["figures"]["business_registration_online"]
    assert sum(n for m, n in business.items() if m.startswith("2017")) == 244
