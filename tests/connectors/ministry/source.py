"""The ministry's business-registration API as a source: its connector's stream and its `SourcePlan`.

`GET /api/v1/registrations?updated_from=…&updated_to=…&limit=…[&after=…]` answers
`{"items": [...], "next": "<updated_at>,<registration_id>" | null}`, the items sorted by
(updated_at, registration_id); `next` asks for the items after the last one. Everything else
(key-set paging, retries, deadlines, chunks, state, quality, load) is inherited.
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.base import HttpJsonConnector, HttpStreamSpec, Page, PageCallback, Window
from connectors.errors import SourceProtocolError
from connectors.settings import ConnectionSettings
from pipeline.settings import PipelineSettings
from pipeline.sources import SourcePlan, StreamPlan
from tests.connectors.ministry.mapping import registrations_to_frames


class MinistryRegistrationConnector(HttpJsonConnector):
    """Reads the ministry's business registrations, newest changes last."""

    source: ClassVar[str] = "ministry_registry"
    streams: ClassVar[tuple[HttpStreamSpec, ...]] = (
        HttpStreamSpec(
            name="registrations",
            entity="dossier",
            key=("registration_id",),
            replication_key="updated_at",
            required_fields=("registration_id", "procedure_code", "office_code", "channel", "submitted_at",
                             "status", "updated_at"),
            endpoint="registrations",
            method="GET",
            paging="keyset",
        ),
    )
    max_page_size: ClassVar[int | None] = 500  # the API's `limit`

    def page_request(
        self, spec: HttpStreamSpec, window: Window | None, page: str | None, session: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The query of one page: the window, and after the previous page's `next` cursor."""
        params: dict[str, Any] = {"limit": self.page_size}
        if window is not None:
            params["updated_from"] = window.start.isoformat()
            params["updated_to"] = window.end.isoformat()
        if page is not None:
            params["after"] = page
        return f"/api/v1/{spec.endpoint}", params

    def parse_page(self, spec: HttpStreamSpec, answer: Any, where: str) -> Page:
        """`items` (a list of objects) and `next` (a cursor, or null on the last page)."""
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise SourceProtocolError(self.source, where, "answer lacks an 'items' list of objects")
        following = answer.get("next")
        if following is not None and not isinstance(following, str):
            raise SourceProtocolError(self.source, where, f"'next' is not a cursor: {following!r}")
        return Page(records=items, next_page=following)


def open_connector(connection: ConnectionSettings, settings: PipelineSettings,
                   on_page: PageCallback | None) -> MinistryRegistrationConnector:
    """The connector with the pipeline's page size, chunk size, deadline and retries."""
    return MinistryRegistrationConnector(connection, page_size=settings.page_size, chunk_size=settings.chunk_size,
                                         timeout=settings.http_timeout, max_retries=settings.max_retries,
                                         on_page=on_page)


# The connection is AIRFLOW_CONN_MINISTRY_REGISTRY, e.g. https://user:secret@dkkd.example.gov.vn
PLAN = SourcePlan("ministry_registry", "ministry_registry", open_connector,
                  streams={"registrations": StreamPlan("dossier", registrations_to_frames)})
