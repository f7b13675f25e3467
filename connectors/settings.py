"""Connection settings of a source endpoint, read the way Airflow Connections are (URI or env)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import SecretStr

from connectors.errors import ConnectionConfigError, MissingConnection

__all__ = [
    "ConnectionSettings",
    "MissingConnection",
    "connection_from_env",
    "connection_from_uri",
    "env_var_name",
]

# Airflow keeps a JSON-encoded `extra` in this query parameter of a connection URI.
_EXTRA_KEY = "__extra__"
_WEB_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and as whom to connect: the fields of an Airflow Connection, password kept secret.

    `scheme` is Airflow's `conn_type` (the URI scheme); `schema` is Airflow's `schema` (the URI
    path). The password is a `SecretStr`: `repr()`/`str()` show `**********`, never the value.
    """

    host: str
    port: int | None = None
    scheme: str = "http"
    schema: str = ""
    login: str | None = None
    password: SecretStr | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.password, str):
            object.__setattr__(self, "password", SecretStr(self.password))
        if self.port is not None and not isinstance(self.port, int):
            object.__setattr__(self, "port", _to_port(self.port))
        object.__setattr__(self, "extra", dict(self.extra or {}))

    @classmethod
    def from_airflow(cls, conn: Any) -> ConnectionSettings:
        """Build the settings from an Airflow `Connection` (duck-typed: no Airflow import here)."""
        extra = getattr(conn, "extra_dejson", None)
        if extra is None:
            extra = _extra_from_text(getattr(conn, "extra", None) or "")
        return cls(
            host=conn.host or "",
            port=conn.port,
            scheme=conn.conn_type or "http",
            schema=conn.schema or "",
            login=conn.login or None,
            password=conn.password,
            extra=extra,
        )

    def get_password(self) -> str | None:
        """The password in clear, for the one place that sends it."""
        return None if self.password is None else self.password.get_secret_value()

    @property
    def base_url(self) -> str:
        """`scheme://host[:port]` for an HTTP client.

        The web scheme is the connection type when it is http/https, else the `schema` field when
        that is http/https (Airflow's HttpHook convention), else http. A host that already carries
        a scheme is used as is.
        """
        if not self.host:
            raise ConnectionConfigError("connection has no host")
        host = self.host.rstrip("/")
        if "://" not in host:
            if self.scheme in _WEB_SCHEMES:
                web = self.scheme
            elif self.schema in _WEB_SCHEMES:
                web = self.schema
            else:
                web = "http"
            host = f"{web}://{host}"
        return f"{host}:{self.port}" if self.port else host

    @property
    def local_path(self) -> str:
        """The local folder of a `file://` connection, e.g. `file:///srv/drop` → `/srv/drop`.

        As in Airflow, the URI path (less its first `/`) is the `schema`; an extra `path` (the
        field Airflow's `fs` connections use) takes precedence.
        """
        if self.extra.get("path"):
            return str(self.extra["path"])
        if self.scheme not in ("file", "fs"):
            raise ConnectionConfigError(
                f"connection {self.safe_uri()} is not a folder: use file:///absolute/path")
        if self.host not in ("", "localhost"):
            raise ConnectionConfigError(
                f"file connection names host {self.host!r}: a drop folder is local, "
                "file:///absolute/path (three slashes)")
        return "/" + self.schema.lstrip("/")

    def safe_uri(self) -> str:
        """The connection as a URI without its password (for logs and messages)."""
        user = f"{quote(self.login, safe='')}@" if self.login else ""
        port = f":{self.port}" if self.port else ""
        path = f"/{quote(self.schema, safe='')}" if self.schema else ""
        return f"{self.scheme}://{user}{self.host}{port}{path}"


def connection_from_uri(uri: str) -> ConnectionSettings:
    """Parse an Airflow-style connection URI, e.g. `http://user:p%40ss@127.0.0.1:8080`.

    Login and password are percent-decoded; the path is the `schema`; query parameters become
    `extra` (or, as in Airflow, the JSON object in `__extra__`). A `-` in the scheme becomes `_`.
    """
    if "://" not in uri:
        raise ConnectionConfigError(f"connection URI has no scheme: {_redacted(uri)}")
    parts = urlsplit(uri)
    scheme = parts.scheme.replace("-", "_")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConnectionConfigError(f"connection URI has a bad port: {_redacted(uri)}") from exc
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = _extra_from_text(query[_EXTRA_KEY]) if _EXTRA_KEY in query else query
    else:
        extra = {}
    return ConnectionSettings(
        host=unquote(parts.hostname or ""),
        port=port,
        scheme=scheme,
        schema=unquote(parts.path[1:]) if parts.path else "",
        login=unquote(parts.username) if parts.username else None,
        password=SecretStr(unquote(parts.password)) if parts.password is not None else None,
        extra=extra,
    )


def env_var_name(conn_id: str) -> str:
    """The environment variable Airflow reads for `conn_id`: `AIRFLOW_CONN_<CONN_ID upper>`."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_from_env(
    conn_id: str, environ: Mapping[str, str] | None = None
) -> ConnectionSettings:
    """Read connection `conn_id` from `AIRFLOW_CONN_<CONN_ID>` (a URI or Airflow's JSON form).

    A missing or blank variable raises `MissingConnection` naming the variable: a missing secret
    is an error, never an empty default.
    """
    env = os.environ if environ is None else environ
    name = env_var_name(conn_id)
    value = (env.get(name) or "").strip()
    if not value:
        raise MissingConnection(
            f"connection {conn_id!r} is not configured: set the environment variable {name} "
            f"to a connection URI such as http://user:password@host:port"
        )
    if value.startswith("{"):
        return _connection_from_json(value, name)
    return connection_from_uri(value)


def _connection_from_json(text: str, name: str) -> ConnectionSettings:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectionConfigError(f"{name} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConnectionConfigError(f"{name} must be a JSON object")
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        extra = _extra_from_text(extra)
    return ConnectionSettings(
        host=data.get("host") or "",
        port=data.get("port"),
        scheme=(data.get("conn_type") or "http").replace("-", "_"),
        schema=data.get("schema") or "",
        login=data.get("login") or None,
        password=data.get("password"),
        extra=extra,
    )


def _extra_from_text(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectionConfigError(f"connection extra is not valid JSON ({exc.msg})") from None
    if not isinstance(extra, dict):
        raise ConnectionConfigError("connection extra must be a JSON object")
    return extra


def _to_port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConnectionConfigError(f"connection port is not a number: {value!r}") from None
    if not 0 < port < 65536:
        raise ConnectionConfigError(f"connection port out of range: {port}")
    return port


def _redacted(uri: str) -> str:
    """`uri` with any `user:password@` reduced to `user:***@`, safe for a message."""
    head, sep, rest = uri.partition("://")
    if not sep:
        head, rest = "", uri
    # Cut at the last "@": hiding too much (an "@" in the path) is better than leaking.
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        rest = f"{userinfo.split(':', 1)[0]}:***@{hostpart}"
    return f"{head}{sep}{rest}"
