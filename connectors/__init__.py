"""Extract: one connector per source system, declared streams on a base that pages, retries and chunks.
May import transforms/ and standards/ only (and its own modules)."""

from __future__ import annotations

from connectors.base import Connector, HttpJsonConnector, HttpStreamSpec, StreamSpec, Window
from connectors.errors import (
    ConnectionConfigError,
    MissingConnection,
    SourceAuthError,
    SourceError,
    SourceIncomplete,
    SourceProtocolError,
    SourceUnavailable,
)
from connectors.portal import PortalConnector, format_portal_time, parse_portal_time
from connectors.settings import ConnectionSettings, connection_from_env, connection_from_uri

__all__ = [
    "ConnectionConfigError",
    "ConnectionSettings",
    "Connector",
    "HttpJsonConnector",
    "HttpStreamSpec",
    "MissingConnection",
    "PortalConnector",
    "SourceAuthError",
    "SourceError",
    "SourceIncomplete",
    "SourceProtocolError",
    "SourceUnavailable",
    "StreamSpec",
    "Window",
    "connection_from_env",
    "connection_from_uri",
    "format_portal_time",
    "parse_portal_time",
]
