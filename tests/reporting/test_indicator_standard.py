"""The indicator standard (standards/indicators.yaml): every indicator against a hand-computed value.

A small fixed province — 4 procedures with level history, 16 dossiers of 2 agencies, one commune
report — is written straight into the warehouse with the BatchWriter. Each indicator's value is
read from its generated view `mart_<id>` and from the report (`compute_indicators`), and compared
with a figure worked out by hand below (the arithmetic is in the comments).

The data set (A = 000.00.04.H62, admin unit 243; B = 000.00.03.H62, admin unit 244; all 2017):

  procedures  P1 1.005190 (A, business registration): level 2, level 3 from 15 Feb
              P2 1.005191 (A, business registration): level 4 since 2016
              P3 2.000488 (B, judicial record): level 1, level 3 from 1 Mar
              P4 1.000004 (B): level 3 since 2016, abolished 10 Feb

  dossier  ag proc ch status          received  due    finished  paid_online
  D1       A  P1   1  10 returned     01-05     01-10  01-09     3   early
  D2       A  P1   2  10              01-06     01-12  01-12     1   on time
  D3       A  P2   2   9 processed    01-10     01-16  02-03     1   late
  D4       A  P2   1   4 in progress  01-20     02-10  -         0
  D5       B  P3   3  10              01-25     02-05  02-05     0   on time
  D6       B  P4   1   1 not received 01-26     -      -         0   (never counted)
  D7       B  P3   2   3 not accepted 01-27     -      -         0   (never counted)
  D8       A  P1   2   5 paused       02-01     02-20  -         0
  D9       A  P1   2  10              02-14     02-28  03-02     1   late
  D10      A  P1   1   7 withdrawn    02-15     03-01  02-16     3   early
  D11      B  P3   1   2 received     02-20     03-20  -         0
  D12      B  P3   1  10              02-21     -      02-22     0   (no due date)
  D13      A  P2   2  10              03-01     03-05  03-05     1   on time
  D14      A  P2   2   4 in progress  03-10     04-10  -         3
  D15      B  P3   2   9              03-15     03-20  04-02     1   late
  D16      B  P3   1   8 stopped      03-20     -      -         None

Open (received, not finished) at each period's end, within due (due month after the period's
last month, or no due date) or past due:
  end of Jan: D3 past (due 01-16); D4 within (02-10); D5 within (02-05)  → within 2, past 1
  end of Feb: D4 past, D8 past (02-20), D9 past (02-28), D11 within      → within 1, past 3
  end of Mar: D4, D8, D11 (03-20), D15 (03-20) past; D14 (04-10), D16 (no due) within
                                                                          → within 2, past 4
  end of 2017 (= end of Apr, last data month): D4, D8, D11, D14 past; D16 within → 1, 4
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

import standards
from reporting.indicators import INDICATORS, IndicatorValue, compute_indicators, refresh_marts
from reporting.report import render_report
from tests.warehouse.frames import dossier, dossier_frame, local, procedure, procedure_frame
from transforms.service_stat import service_stats_to_frame
from warehouse.db import create_engine, upgrade
from warehouse.indicator_sql import build_select, view_name
from warehouse.load import BatchWriter

A, B = "000.00.04.H62", "000.00.03.H62"
P1, P2, P3, P4 = "1.005190", "1.005191", "2.000488", "1.000004"


def _d(n, agency, proc, channel, status, received, due, finished, paid):
    """One dossier of the table above (dates are (month, day) of 2017, at 09:00 local)."""
    def at(md):
        return local(2017, md[0], md[1], 9) if md else None
    return dossier(n, n - 1, updated=local(2017, 4, 30), agency=agency, procedure=proc, channel=channel,
                   status=status, received=at(received), due=at(due), finished=at(finished),
                   paid_online=paid, fee=None if paid in (0, None) else 50000.0,
                   admin_unit_code="243" if agency == A else "244")


DOSSIERS = [
    _d(1, A, P1, 1, 10, (1, 5), (1, 10), (1, 9), 3),
    _d(2, A, P1, 2, 10, (1, 6), (1, 12), (1, 12), 1),
    _d(3, A, P2, 2, 9, (1, 10), (1, 16), (2, 3), 1),
    _d(4, A, P2, 1, 4, (1, 20), (2, 10), None, 0),
    _d(5, B, P3, 3, 10, (1, 25), (2, 5), (2, 5), 0),
    _d(6, B, P4, 1, 1, (1, 26), None, None, 0),
    _d(7, B, P3, 2, 3, (1, 27), None, None, 0),
    _d(8, A, P1, 2, 5, (2, 1), (2, 20), None, 0),
    _d(9, A, P1, 2, 10, (2, 14), (2, 28), (3, 2), 1),
    _d(10, A, P1, 1, 7, (2, 15), (3, 1), (2, 16), 3),
    _d(11, B, P3, 1, 2, (2, 20), (3, 20), None, 0),
    _d(12, B, P3, 1, 10, (2, 21), None, (2, 22), 0),
    _d(13, A, P2, 2, 10, (3, 1), (3, 5), (3, 5), 1),
    _d(14, A, P2, 2, 4, (3, 10), (4, 10), None, 3),
    _d(15, B, P3, 2, 9, (3, 15), (3, 20), (4, 2), 1),
    _d(16, B, P3, 1, 8, (3, 20), None, None, None),
]

PROCEDURES = [
    procedure(P1, 0, levels=[(2, date(2010, 1, 1)), (3, date(2017, 2, 15))], updated=local(2017, 2, 15), agency=A),
    procedure(P2, 1, levels=[(4, date(2016, 1, 1))], updated=local(2016, 1, 1), agency=A),
    procedure(P3, 2, levels=[(1, date(2010, 1, 1)), (3, date(2017, 3, 1))], updated=local(2017, 3, 1), agency=B),
    procedure(P4, 3, levels=[(3, date(2016, 6, 1))], updated=local(2017, 2, 10), agency=B,
              abolished=date(2017, 2, 10)),
]

# Commune 24399 reports January for P3: 2 received, 1 online, 2 pending; it has no dossier.
REPORT = [{"commune_code": "24399", "month": "2017-01", "procedure_code": P3, "received": 2,
           "online": 1, "on_time": 0, "late": 0, "pending": 2, "_file": "baocao_24399_2017-01.xlsx"}]


@dataclass(frozen=True)
class Hand:
    """A hand-computed value. `source`: "view" (mart_<id>) or "report" (compute_indicators);
    `scope`: province | agency | admin_unit with `code`; `as_of` for the report's snapshots."""

    source: str
    period: str
    value: float | None
    scope: str = "province"
    code: str | None = None
    dimension: str | None = None
    group: str | None = None
    as_of: date | None = None


def view(period, value, scope="province", code=None, dimension=None):
    return Hand("view", period, value, scope, code, dimension)


def report(period, value, agency=None, dimension=None, group=None, as_of=None):
    return Hand("report", period, value, "agency" if agency else "province", agency, dimension, group, as_of)


HAND: dict[str, list[Hand]] = {
    # In force at the end of Jan: P1 (2), P2 (4), P3 (1), P4 (3; abolished 10 Feb) = 4;
    # end of Feb: P4 abolished = 3 (P1 3, P2 4, P3 1). On 20 Feb (report, as of a day): 3.
    "procedures_total": [
        view("2017-01", 4), view("2017-02", 3), view("2017-01", 2, "agency", B),
        report("2017-01-31", 4, as_of=date(2017, 1, 31)), report("2017-02-20", 3, as_of=date(2017, 2, 20)),
        report("2017-02-09", 2, B, as_of=date(2017, 2, 9)),  # P3 and P4 (abolished the next day)
    ],
    # end of Feb: level_1 P3, level_3 P1 (from 15 Feb), level_4 P2; end of Mar: level_3 P1, P3.
    "procedures_by_level": [
        view("2017-02", 1, dimension="level_1"), view("2017-02", 1, dimension="level_3"),
        view("2017-03", 2, dimension="level_3"), view("2017-Q1", 1, dimension="level_4"),
        report("2017-02-14", 1, dimension="level_2", as_of=date(2017, 2, 14)),  # P1 still level 2
        report("2017-02-14", 0, dimension="level_1", agency=A, as_of=date(2017, 2, 14)),
    ],
    # end of Jan: toan_trinh P2, mot_phan P4, not_online P1 + P3 = 2; end of 2017: mot_phan P1 + P3.
    "procedures_by_decree42_level": [
        view("2017-01", 2, dimension="not_online"), view("2017-01", 1, dimension="mot_phan"),
        view("2017", 2, dimension="mot_phan"), view("2017", 1, dimension="toan_trinh"),
        report("2017-03-31", 2, dimension="mot_phan", as_of=date(2017, 3, 31)),
    ],
    # level >= 3 and an online dossier that period: Jan P2 (D3; P4 none) = 1; Feb P1 (D8, D9; P2
    # none) = 1; Mar P2 (D13, D14), P3 (D15), not P1 = 2; 2017: P1, P2, P3 = 3.
    "procedures_online_used": [
        view("2017-01", 1), view("2017-02", 1), view("2017-03", 2), view("2017", 3),
        view("2017-03", 1, "agency", B), report("2017-03", 2), report("2017-02", 0, B),
    ],
    # Jan 1 / 2 (P2, P4) = 50.0; Mar 2 / 3 (P1, P2, P3) = 66.67; 2017 3 / 3 = 100.0;
    # Feb B: no procedure at level >= 3 → no value.
    "procedures_online_used_share": [
        view("2017-01", 50.0), view("2017-03", 66.67), view("2017", 100.0), view("2017-01", 0.0, "agency", B),
        view("2017-02", None, "agency", B), report("2017-03", 66.67), report("2017-01", 100.0, A),
    ],
    # Jan D1-D5 = 5 (D6, D7 not received); Feb D8-D12 = 5; Mar D13-D16 = 4; 2017: 14; A 2017: 9.
    "dossiers_received": [
        view("2017-01", 5), view("2017-Q1", 14), view("2017", 9, "agency", A),
        view("2017-02", 2, "admin_unit", "244"), report("2017-01", 5), report("2017", 5, B),
    ],
    # channel 2: Jan D2, D3 = 2; Mar D13, D14, D15 = 3 (B: D15 = 1); 2017 = 7; Jan B = 0.
    "dossiers_received_online": [
        view("2017-03", 3), view("2017", 7), view("2017-03", 1, "agency", B),
        report("2017-01", 2), report("2017-01", 0, B),
    ],
    # Jan: channel_1 D1, D4 = 2, channel_3 D5 = 1; Feb channel_1 D10, D11, D12 = 3; 2017: 6 / 7 / 1.
    "dossiers_received_by_channel": [
        view("2017-01", 2, dimension="channel_1"), view("2017-01", 1, dimension="channel_3"),
        view("2017-02", 3, dimension="channel_1"), view("2017", 7, dimension="channel_2"),
        report("2017", 6, dimension="channel_1"), report("2017-01", 1, B, dimension="channel_3"),
    ],
    # Jan 2 / 5 = 40.0; Mar 3 / 4 = 75.0; 2017 7 / 14 = 50.0; A 2017 6 / 9 = 66.67; B 2017 1 / 5 = 20.0.
    "online_share": [
        view("2017-01", 40.0), view("2017-03", 75.0), view("2017", 50.0),
        report("2017", 66.67, A), report("2017", 20.0, B),
    ],
    # business_registration (P1, P2) online: Jan D2 + D3 = 2, Feb D8 + D9 = 2, Mar D13 + D14 = 2,
    # 2017 = 6; judicial_record (P3) online: Mar D15 = 1 (D7 not accepted), Jan 0.
    "online_dossiers_by_group": [
        report("2017-01", 2, A, group="business_registration"), report("2017", 6, A, group="business_registration"),
        report("2017-03", 1, B, group="judicial_record"), report("2017-01", 0, B, group="judicial_record"),
    ],
    # paid 1 / paid 1 or 3: Jan D2, D3 / D1, D2, D3 = 66.67; Feb D9 / D9, D10 = 50.0;
    # 2017 D2, D3, D9, D13, D15 = 5 / + D1, D10, D14 = 8 → 62.5 (D16's unknown flag left out).
    "online_payment_share": [
        view("2017-01", 66.67), view("2017-02", 50.0), view("2017", 62.5), report("2017-02", 50.0),
    ],
    # by finish month: Jan D1, D2 = 2; Feb D3, D5, D10, D12 = 4 (A D3, D10; B D5, D12);
    # Mar D9, D13 = 2; Apr D15 = 1; 2017 = 9.
    "dossiers_finished": [
        view("2017-02", 4), view("2017-04", 1), view("2017", 9), view("2017-02", 2, "admin_unit", "244"),
        report("2017-02", 2, A), report("2017", 9),
    ],
    # finish date < due date: Jan D1, Feb D10 → 2017 = 2; Mar 0.
    "finished_early": [view("2017-01", 1), view("2017-03", 0), view("2017", 2), report("2017-02", 1, A)],
    # = due date: Jan D2, Feb D5 (B), Mar D13 → 2017 = 3.
    "finished_on_time": [view("2017-02", 1), view("2017", 3), report("2017-02", 1, B), report("2017-01", 1)],
    # > due date: Feb D3, Mar D9, Apr D15 → 2017 = 3; Jan 0.
    "finished_late": [view("2017-01", 0), view("2017-04", 1), view("2017", 3), report("2017-03", 1, A)],
    # (early + on time) / with a due date: Jan 2/2 = 100.0; Feb D5, D10 / D3, D5, D10 = 66.67
    # (D12 has none); Feb A 1/2 = 50.0; Feb B 1/1 = 100.0; Apr 0/1 = 0.0; 2017 5/8 = 62.5.
    "finished_on_time_rate": [
        view("2017-01", 100.0), view("2017-02", 66.67), view("2017-04", 0.0), view("2017", 62.5),
        report("2017-02", 50.0, A), report("2017-02", 100.0, B),
    ],
    # See the module docstring: within due at the end of Jan 2 (A D4, B D5), Feb 1, Mar 2, 2017 1.
    "in_progress_within_due": [
        view("2017-01", 2), view("2017-01", 1, "agency", B), view("2017-02", 1), view("2017-Q1", 2),
        view("2017", 1), report("2017-03", 1, A),
    ],
    # past due at the end of Jan 1 (D3), Feb 3 (A: D4, D8, D9), Mar 4 (A D4, D8; B D11, D15), 2017 4.
    "in_progress_past_due": [
        view("2017-01", 1), view("2017-02", 3), view("2017-03", 2, "admin_unit", "244"),
        view("2017", 4), report("2017-02", 3, A),
    ],
    # Cohort received in the period, at its end (finished early/on time, or open within due):
    # Jan D1 ✓ D2 ✓ D3 ✗ (open, past due) D4 ✓ D5 ✓ → 4 / 5 × 20 = 16.0; A: 3 / 4 × 20 = 15.0;
    # Feb D8 ✗ D9 ✗ (open, due 02-28) D10 ✓ D11 ✓ D12 ✓ (no due date) → 3 / 5 × 20 = 12.0;
    # Mar D13 ✓ D14 ✓ D15 ✗ D16 ✓ → 3 / 4 × 20 = 15.0;
    # 2017: D1, D2, D5, D10, D12, D13, D16 → 7 / 14 × 20 = 10.0 (D14 is past due by then).
    "d766_progress_score": [
        view("2017-01", 16.0), view("2017-02", 12.0), view("2017-03", 15.0), view("2017", 10.0),
        report("2017-01", 15.0, A), report("2017-01", 20.0, B),
    ],
    # online / received × 20: Jan 2/5 → 8.0; Mar 3/4 → 15.0; 2017 7/14 → 10.0; B 2017 1/5 → 4.0.
    "d766_online_score": [view("2017-01", 8.0), view("2017-03", 15.0), view("2017", 10.0), report("2017", 4.0, B)],
    # 24399 / 2017-01 / P3: reported received 2, online 1, pending 2, counted 0 each → +2, +1, +2;
    # on_time and late agree (0 = 0): no row.
    "reconciliation_gap": [
        report("2017-01", 2, group=P3, dimension="24399/received"),
        report("2017-01", 1, group=P3, dimension="24399/online"),
        report("2017-01", 2, group=P3, dimension="24399/pending"),
        report("2017-01", None, group=P3, dimension="24399/on_time"),
    ],
}


def load(engine: sa.Engine) -> None:
    with BatchWriter(engine, "national_portal", "procedures", "procedure", None, None, "p1") as w:
        w.add(procedure_frame(PROCEDURES), None)
        w.commit(None)
    with BatchWriter(engine, "national_portal", "dossiers", "dossier", None, None, "d1") as w:
        w.add(dossier_frame(DOSSIERS), None)
        w.commit(None)
    with BatchWriter(engine, "file_drop", "service_stat", "service_stat", None, None, "r1") as w:
        w.add(service_stats_to_frame(REPORT), None)
        w.add_reports([(r["commune_code"], r["month"], r["_file"]) for r in REPORT])
        w.commit(None)


@pytest.fixture
def province(warehouse_url: str) -> Iterator[sa.Engine]:
    upgrade(warehouse_url)
    engine = create_engine(warehouse_url)
    try:
        load(engine)
        yield engine
    finally:
        engine.dispose()


def _view_rows(conn: sa.Connection, indicator: str, hand: Hand) -> list:
    code_column = {"agency": "agency_code", "admin_unit": "admin_unit_code"}.get(hand.scope)
    sql = (f"SELECT value FROM {view_name(indicator)} WHERE period = :period AND scope = :scope"
           + (f" AND {code_column} = :code" if code_column else "")
           + (" AND dimension = :dimension" if hand.dimension else " AND dimension IS NULL"))
    return [row[0] for row in conn.execute(sa.text(sql), {"period": hand.period, "scope": hand.scope,
                                                          "code": hand.code, "dimension": hand.dimension})]


def _report_rows(values: list[IndicatorValue], indicator: str, hand: Hand) -> list:
    return [v.value for v in values if v.indicator == indicator and v.period == hand.period
            and v.agency_code == hand.code and v.dimension == hand.dimension and v.group_code == hand.group]


def test_every_indicator_of_the_standard_has_a_hand_computed_value():
    ids = [d["id"] for d in standards.load_indicators()]
    assert sorted(HAND) == sorted(ids) == sorted(INDICATORS)
    for indicator, hands in HAND.items():
        assert any(h.value is not None for h in hands), indicator
        if INDICATORS[indicator].definition.get("formula"):
            assert any(h.source == "view" for h in hands), f"{indicator}: its view is not checked"


def test_each_indicator_equals_its_hand_computed_value(province):
    failures = []
    computed: dict[date | None, list[IndicatorValue]] = {}
    with province.connect() as conn:
        for indicator, hands in HAND.items():
            for hand in hands:
                if hand.source == "view":
                    found = _view_rows(conn, indicator, hand)
                else:
                    if hand.as_of not in computed:
                        computed[hand.as_of] = compute_indicators(province, as_of=hand.as_of)
                    found = _report_rows(computed[hand.as_of], indicator, hand)
                want = [] if hand.value is None and hand.source == "report" else [hand.value]
                got = [None if v is None else round(float(v), 2) for v in found]
                if got != want:
                    failures.append(f"{indicator} {hand}: got {got}")
    assert not failures, "\n".join(failures)


def test_the_report_gives_what_the_views_give(province):
    """The report's SQL indicators are the views' rows at the report's grain (months and years,
    province and agencies), value for value."""
    values = compute_indicators(province)
    with province.connect() as conn:
        for definition in INDICATORS.values():
            if definition.kind != "sql":
                continue
            rows = conn.execute(sa.text(
                f"SELECT period, agency_code, dimension, value FROM {view_name(definition.id)} "
                "WHERE period_kind IN ('month', 'year') AND scope IN ('province', 'agency') "
                "AND value IS NOT NULL")).all()
            from_views = sorted((p, a or "", d or "", round(float(v), 2)) for p, a, d, v in rows)
            from_report = sorted((v.period, v.agency_code or "", v.dimension or "", round(float(v.value), 2))
                                 for v in values if v.indicator == definition.id)
            assert from_report == from_views, definition.id


def test_the_report_and_the_marts_list_every_indicator(province):
    """`lienthong report --indicator <id> --format json` answers for every id of the standard, and
    refresh_marts materialises every indicator that has a value in the data set."""
    for indicator in INDICATORS:
        rows = json.loads(render_report(fmt="json", indicator=indicator, engine=province))
        assert rows, indicator
        assert {r["indicator"] for r in rows} == {indicator}
    refresh_marts(province)
    with province.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT DISTINCT indicator FROM mart_indicator")).scalars())
    assert stored == set(INDICATORS)


def test_the_migration_made_a_view_per_formula(warehouse_url):
    upgrade(warehouse_url)
    engine = create_engine(warehouse_url)
    try:
        present = set(sa.inspect(engine).get_view_names())
    finally:
        engine.dispose()
    wanted = {view_name(d["id"]) for d in standards.load_indicators() if d.get("formula")}
    assert wanted <= present
    assert view_name("reconciliation_gap") not in present


def _broken(tmp_path: Path, change) -> Path:
    document = yaml.safe_load(standards.INDICATORS_FILE.read_text(encoding="utf-8"))
    change({d["id"]: d for d in document["indicators"]})
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_a_definition_missing_a_field_fails_naming_the_indicator_and_field(tmp_path):
    path = _broken(tmp_path, lambda d: d["online_share"].pop("name_en"))
    with pytest.raises(standards.IndicatorDefinitionError) as caught:
        standards.load_indicators(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("indicators.yaml: indicator 'online_share': ")
    assert "name_en" in message


def test_a_bad_operator_fails_naming_the_field(tmp_path):
    path = _broken(tmp_path, lambda d: d["finished_late"]["formula"]["numerator"][0].update(op="after"))
    with pytest.raises(standards.IndicatorDefinitionError,
                       match=r"^indicators\.yaml: indicator 'finished_late': formula\.numerator\[0\]"):
        standards.load_indicators(path)


def test_a_repeated_id_fails(tmp_path):
    path = _broken(tmp_path, lambda d: d["finished_late"].update(id="finished_early"))
    with pytest.raises(standards.IndicatorDefinitionError, match="'finished_early': id: defined twice"):
        standards.load_indicators(path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f["numerator"][0].update(column="chanel"),
     r"indicator 'online_share': formula\.numerator\[0\]\.column: base dossiers_received has no column 'chanel'"),
    (lambda f: f["numerator"][0].update(value=5),
     r"indicator 'online_share': formula\.numerator\[0\]\.value: 5 is not a code of channel"),
    (lambda f: f.update(base="dossiers_paid"),
     r"indicator 'online_share': formula\.base: unknown base 'dossiers_paid'"),
])
def test_a_formula_naming_an_unknown_column_base_or_code_fails_when_built(change, message):
    definition = {**INDICATORS["online_share"].definition}
    definition["formula"] = {**definition["formula"],
                             "numerator": [dict(c) for c in definition["formula"]["numerator"]]}
    change(definition["formula"])
    with pytest.raises(standards.IndicatorDefinitionError, match=message):
        build_select(definition)
