"""The crash harness's kill points: per source, where the sync is killed (stage, function, when, N-th call).

N counts the calls of one run of the source's sync command (`crash_harness.SOURCES`); a negative N
counts from the last call of an uninterrupted run (-1 = the last), resolved against the call counts
of the reference run. Chunks are `CHUNK_SIZE` records, portal pages `PAGE_SIZE` records
(crash_harness), so "the 2nd call of split" is the second chunk of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.reliability.crash_child import KillPoint

STAGES = ("extract", "transform", "validate", "load", "commit", "after commit")

# Shorthands for the targets (dotted paths the child wraps).
REQUEST = "connectors.base.HttpJsonConnector.request"
DOSSIER_FRAMES = "transforms.portal.dossiers_to_frames"
PROCEDURE_FRAMES = "transforms.portal.procedures_to_frame"
STAT_FRAMES = "transforms.service_stat.service_stats_to_frame"
SPLIT = "quality.gate.QualityGate.split"
FINISH = "quality.gate.QualityGate.finish"
WRITER = "warehouse.load.BatchWriter"
COPY_ROWS = "warehouse.load._copy_rows"
TXN_COMMIT = "sqlalchemy.engine.base.RootTransaction.commit"  # every COMMIT the run sends
ACK = "connectors.lgsp.LgspConnector.ack"
COMMIT_FILES = "connectors.filedrop.FileDropConnector.commit_files"
MOVE = "shutil.move"


@dataclass(frozen=True)
class Point:
    """One kill point of a source, with the stage it interrupts and what is then half done."""

    stage: str
    target: str
    when: str
    nth: int
    note: str

    def resolve(self, counts: dict[str, int]) -> KillPoint | None:
        """The concrete point for a run whose uninterrupted calls are `counts`; None if never reached."""
        calls = counts.get(self.target, 0)
        nth = self.nth if self.nth > 0 else calls + 1 + self.nth
        return KillPoint(self.target, self.when, nth) if 1 <= nth <= calls else None

    def __str__(self) -> str:
        return f"{self.target}:{self.when}:{self.nth}"


def _p(stage: str, target: str, when: str, nth: int, note: str) -> Point:
    return Point(stage, target, when, nth, note)


# Common to the dossier batches of every source (N counted over the whole run).
def _load_and_commit(batches: int) -> tuple[Point, ...]:
    """Points inside the last dossier batch of a run: staging, publishing, the COMMIT itself."""
    return (
        _p("load", f"{WRITER}.__enter__", "after", batches, "batch open: its `running` row committed, nothing staged"),
        _p("load", f"{WRITER}.add", "after", -1, "every chunk staged, publish not begun"),
        _p("load", COPY_ROWS, "before", -2, "mid-staging: the last chunk's rows half copied"),
        _p("commit", f"{WRITER}.commit", "before", batches, "staged, publish not begun"),
        _p("commit", f"{WRITER}._record_lineage", "after", -1, "lineage written, facts not yet"),
        _p("commit", f"{WRITER}._upsert_target", "after", -1, "facts upserted inside the transaction"),
        _p("commit", f"{WRITER}._replace_events", "after", -1, "events replaced inside the transaction"),
        _p("commit", f"{WRITER}._write_manifest", "after", -1, "`loaded` manifest written, not committed"),
        _p("commit", f"{WRITER}._advance_sync_state", "after", -1, "sync state advanced, not committed"),
        _p("commit", TXN_COMMIT, "before", -1, "the batch's COMMIT not yet sent"),
        _p("commit", TXN_COMMIT, "after", -1, "COMMIT done, the writer not yet told"),
        _p("after commit", f"{WRITER}.commit", "after", batches, "committed, nothing after it run"),
    )


PORTAL = (
    _p("extract", REQUEST, "before", 1, "before the login"),
    _p("extract", REQUEST, "after", 2, "first procedure page read"),
    _p("extract", REQUEST, "before", -2, "mid dossier paging"),
    _p("transform", PROCEDURE_FRAMES, "after", 1, "procedures transformed, not validated"),
    _p("transform", DOSSIER_FRAMES, "before", 1, "dossier batch open, first chunk read"),
    _p("transform", DOSSIER_FRAMES, "after", 2, "second dossier chunk transformed"),
    _p("validate", SPLIT, "before", 1, "procedure batch: first validation"),
    _p("validate", SPLIT, "after", -1, "last dossier chunk validated, not staged"),
    _p("load", f"{WRITER}.__enter__", "after", 1, "procedure batch open"),
    _p("load", f"{WRITER}._quarantine", "after", 1, "first quarantined rows staged"),
    _p("commit", f"{WRITER}._replace_levels", "after", 1, "procedure level history replaced, not committed"),
    _p("commit", TXN_COMMIT, "after", -3, "procedure batch committed, the run not told"),
    _p("after commit", f"{WRITER}.commit", "after", 1, "procedures committed, dossiers not begun"),
    *_load_and_commit(batches=2),
    _p("after commit", FINISH, "before", -1, "both batches committed: the run's last step"),
)

ONE_STOP = (
    _p("extract", "connectors.onestop.OneStopConnector._record", "before", 5, "first database, mid-read"),
    _p("extract", "connectors.onestop.OneStopConnector._record", "before", -3, "second database, mid-read"),
    _p("extract", "connectors.onestop.OneStopConnector._national_codes", "after", 2, "second database opened"),
    _p("transform", DOSSIER_FRAMES, "before", 1, "first database's batch open, rows read"),
    _p("transform", DOSSIER_FRAMES, "after", -1, "second database's rows transformed"),
    _p("validate", SPLIT, "before", 1, "first validation"),
    _p("validate", SPLIT, "after", -1, "second database validated, not staged"),
    _p("load", f"{WRITER}.add", "before", 1, "first database: nothing staged yet"),
    _p("commit", f"{WRITER}.commit", "before", 1, "first database staged, publish not begun"),
    _p("commit", f"{WRITER}._upsert_target", "after", 1, "first database's facts upserted"),
    _p("after commit", f"{WRITER}.commit", "after", 1, "first database committed, second not begun"),
    *_load_and_commit(batches=2),
    _p("after commit", FINISH, "before", -1, "both databases committed"),
)

LGSP = (
    _p("extract", REQUEST, "before", 1, "before the index is asked"),
    _p("extract", REQUEST, "before", 3, "message 2 not yet downloaded"),
    _p("extract", "connectors.lgsp.check_message", "after", 3, "message 3 checked, not read"),
    _p("transform", DOSSIER_FRAMES, "before", 1, "first chunk read"),
    _p("transform", DOSSIER_FRAMES, "after", -1, "last chunk transformed"),
    _p("validate", SPLIT, "before", -1, "last chunk not validated"),
    _p("validate", SPLIT, "after", 1, "first chunk validated, not staged"),
    *_load_and_commit(batches=1),
    _p("after commit", FINISH, "before", 1, "committed, not acknowledged"),
    _p("after commit", ACK, "before", 1, "committed, acknowledgement not sent"),
    _p("after commit", REQUEST, "after", -1, "acknowledged by the platform, the answer not checked"),
    _p("after commit", ACK, "after", 1, "acknowledged: the run's last step"),
)

FILES = (
    _p("extract", "connectors.filedrop._sha256", "before", 2, "second Justice CSV found"),
    _p("extract", "connectors.filedrop.FileDropConnector._parse_justice_csv", "before", 2,
       "first CSV checked, its records not yet read"),
    _p("extract", "connectors.filedrop.FileDropConnector._parse_service_stat", "before", 4,
       "reports: second workbook's records being read"),
    _p("transform", DOSSIER_FRAMES, "before", 1, "Justice CSV rows read"),
    _p("transform", STAT_FRAMES, "after", 1, "report rows transformed"),
    _p("validate", SPLIT, "after", 1, "Justice rows validated, not staged"),
    _p("validate", SPLIT, "before", 2, "report rows not validated"),
    _p("load", f"{WRITER}.add_reports", "after", 1, "reports declared, not published"),
    _p("commit", f"{WRITER}._replace_reports", "after", 1, "reports replaced inside the transaction"),
    _p("commit", TXN_COMMIT, "before", -3, "Justice batch's COMMIT not yet sent"),
    _p("commit", TXN_COMMIT, "after", -3, "Justice batch committed, files not archived"),
    _p("after commit", f"{WRITER}.commit", "after", 1, "Justice batch committed, CSVs not archived"),
    _p("after commit", COMMIT_FILES, "before", 1, "Justice batch committed, archiving not begun"),
    _p("after commit", MOVE, "after", 1, "first CSV archived, its .encoding sidecar not"),
    _p("after commit", MOVE, "after", 2, "first CSV and sidecar archived, second CSV not"),
    _p("after commit", COMMIT_FILES, "after", 1, "CSVs archived, reports batch not begun"),
    *_load_and_commit(batches=2)[:4],
    _p("commit", f"{WRITER}._write_manifest", "after", -1, "reports' `loaded` manifest written, not committed"),
    _p("commit", TXN_COMMIT, "before", -1, "reports batch's COMMIT not yet sent"),
    _p("after commit", f"{WRITER}.commit", "after", 2, "reports committed, workbooks not archived"),
    _p("after commit", MOVE, "before", -2, "reports half archived"),
    _p("after commit", MOVE, "after", -1, "every file archived: the run's last move"),
)

POINTS: dict[str, tuple[Point, ...]] = {"portal": PORTAL, "one-stop": ONE_STOP, "lgsp": LGSP, "files": FILES}


def targets(source: str) -> list[str]:
    """Every function a source's points wrap (counted in the reference run)."""
    return sorted({point.target for point in POINTS[source]})
