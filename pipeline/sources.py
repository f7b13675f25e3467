"""The sources the pipeline syncs, declared: each a connection, a connector and its streams.

A source is a `SourcePlan`; the runner (`pipeline/sync.py`) knows nothing else of it. The built-in
sources are declared here; a source declared elsewhere (the exchange packages of `exchange/`, a
source added by a deployment) is handed to the runner as its `SourcePlan` or registered by name
with `register_source` — adding a source never changes the runner (docs/adding_a_source.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from connectors.settings import ConnectionSettings
from pipeline.settings import PipelineSettings

if TYPE_CHECKING:
    from connectors.base import Connector, PageCallback
    from transforms.identity import PseudonymKey

# to_frames(records, key=…, first_row=…, source_system=…) → (standard frame, events frame or None)
FrameMapper = Callable[..., "tuple[pd.DataFrame, pd.DataFrame | None]"]
# open_connector(connection, settings, on_page) → a connector (connectors.base.Connector)
ConnectorFactory = Callable[[ConnectionSettings, PipelineSettings, Any], Any]


@dataclass(frozen=True)
class StreamPlan:
    """How the pipeline runs one stream of a source: its standard entity and transform."""

    entity: str
    to_frames: FrameMapper


def _dossier_frames(records: Sequence[dict[str, Any]], *, key: PseudonymKey, first_row: int,
                    source_system: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from transforms.portal import dossiers_to_frames
    return dossiers_to_frames(records, key=key, first_row=first_row, source_system=source_system)


def _procedure_frames(records: Sequence[dict[str, Any]], *, key: PseudonymKey, first_row: int,
                      source_system: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from transforms.portal import procedures_to_frame
    return procedures_to_frame(records, first_row=first_row, source_system=source_system), None


def _service_stat_frames(records: Sequence[dict[str, Any]], *, key: PseudonymKey, first_row: int,
                         source_system: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from transforms.service_stat import service_stats_to_frame
    return service_stats_to_frame(records, first_row=first_row), None


DOSSIERS = StreamPlan("dossier", _dossier_frames)
PROCEDURES = StreamPlan("procedure", _procedure_frames)
SERVICE_STATS = StreamPlan("service_stat", _service_stat_frames)


@dataclass(frozen=True)
class SourcePlan:
    """A source the pipeline can sync: its connection, connector and streams in load order.

    `name` is how the CLI and the DAGs call it (`lienthong sync <name with dashes>`); the connector
    names the records' `source_system` itself (e.g. `one_stop:000.00.03.H62`).

    `windowed` sources replicate by time (watermark minus look-back); the others (LGSP) by a
    cursor the source keeps and the pipeline acknowledges once a batch has loaded.
    """

    name: str
    connection_id: str
    open_connector: ConnectorFactory
    streams: dict[str, StreamPlan]
    windowed: bool = True


def _portal_connector(connection: ConnectionSettings, settings: PipelineSettings,
                      on_page: PageCallback | None) -> Connector:
    from connectors.portal import PortalConnector
    return PortalConnector(connection, page_size=settings.page_size, chunk_size=settings.chunk_size,
                           timeout=settings.http_timeout, max_retries=settings.max_retries,
                           on_page=on_page)


def _onestop_connector(connection: ConnectionSettings, settings: PipelineSettings,
                       on_page: PageCallback | None) -> Connector:
    from connectors.onestop import OneStopConnector

    mapping = connection.extra.get("mapping")
    if not mapping:
        raise ValueError("a one-stop-shop connection needs its mapping in the connection extra "
                         "(e.g. `?mapping=onestop_variant_a`)")
    # the mapping is ours, not a driver option: keep it out of the database URL
    database = dataclasses.replace(connection, extra={k: v for k, v in connection.extra.items() if k != "mapping"})
    return OneStopConnector(database, mapping, chunk_size=settings.chunk_size)


def _lgsp_connector(connection: ConnectionSettings, settings: PipelineSettings,
                    on_page: PageCallback | None) -> Connector:
    from connectors.lgsp import LgspConnector
    return LgspConnector(connection, chunk_size=settings.chunk_size, timeout=settings.http_timeout,
                         max_retries=settings.max_retries)


def _filedrop_connector(connection: ConnectionSettings, settings: PipelineSettings,
                        on_page: PageCallback | None) -> Connector:
    from pathlib import Path

    from connectors.filedrop import FileDropConnector

    folder = Path(connection.local_path)
    if not folder.is_dir():  # said before any batch opens: nothing to record as failed
        raise FileNotFoundError(f"file_drop: drop folder {folder} does not exist "
                                "(connection file_drop, e.g. AIRFLOW_CONN_FILE_DROP=file:///srv/drop)")
    return FileDropConnector(folder, chunk_size=settings.chunk_size, stable_seconds=settings.file_stable_seconds,
                             agency=connection.extra.get("agency") or None)


SOURCES: dict[str, SourcePlan] = {
    # procedures first: dossiers are checked against the catalogue
    "national_portal": SourcePlan("national_portal", "national_portal", _portal_connector,
                                  {"procedures": PROCEDURES, "dossiers": DOSSIERS}),
    # An agency database's dossiers; the catalogue's authority is the national portal, whose level
    # history an agency's copy would overwrite, so its procedures are not synced from here.
    "one_stop": SourcePlan("one_stop", "one_stop", _onestop_connector, {"dossiers": DOSSIERS}),
    "lgsp": SourcePlan("lgsp", "lgsp", _lgsp_connector, {"dossiers": DOSSIERS}, windowed=False),
    # Files dropped in a folder: the Department of Justice export (dossiers, the agency's own
    # system: precedence as one-stop), then the communes' monthly reports, reconciled against the
    # dossiers (indicator reconciliation_gap). The connector's procedure_catalogue stream is left
    # out on purpose: the catalogue's authority is the national portal, and a catalogue workbook
    # has no level history, so loading it would overwrite the portal's (as for one_stop).
    # Files are archived only once their batch is committed (`commit_files`).
    "file_drop": SourcePlan("file_drop", "file_drop", _filedrop_connector,
                            {"justice_csv": DOSSIERS, "service_stat": SERVICE_STATS}, windowed=False),
}


def register_source(plan: SourcePlan) -> SourcePlan:
    """Declare a source by name for `lienthong sync` and the task entry points; returns it."""
    known = SOURCES.get(plan.name)
    if known is not None and known != plan:
        raise ValueError(f"a different source is already declared as {plan.name!r}")
    SOURCES[plan.name] = plan
    return plan


def source_plan(source: str | SourcePlan) -> SourcePlan:
    """The declared source of that name (or the plan itself)."""
    if isinstance(source, SourcePlan):
        return source
    try:
        return SOURCES[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r} (declared: {', '.join(SOURCES)})") from None


def stream_names(source: str | SourcePlan) -> Iterable[str]:
    """A source's streams in load order."""
    return list(source_plan(source).streams)
