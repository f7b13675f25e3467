"""Connection settings: Airflow-style URIs, env variables, and a password that never shows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from connectors.errors import ConnectionConfigError, MissingConnection
from connectors.settings import ConnectionSettings, connection_from_env, connection_from_uri


def test_uri_gives_host_port_login_and_percent_decoded_password():
    conn = connection_from_uri("http://c%C3%A1n%20b%E1%BB%99:p%40ss%3Aw%2Fo%25rd@127.0.0.1:8765")

    assert conn.scheme == "http"
    assert conn.host == "127.0.0.1"
    assert conn.port == 8765
    assert conn.login == "cán bộ"
    assert conn.get_password() == "p@ss:w/o%rd"
    assert conn.schema == ""
    assert conn.extra == {}
    assert conn.base_url == "http://127.0.0.1:8765"


def test_uri_query_parameters_become_extra_and_path_the_schema():
    conn = connection_from_uri("https://demo:demo@portal.example.vn/dvcqg?madonvi=000.00.00.H62&x=")

    assert conn.scheme == "https"
    assert conn.port is None
    assert conn.schema == "dvcqg"
    assert conn.extra == {"madonvi": "000.00.00.H62", "x": ""}
    assert conn.base_url == "https://portal.example.vn"


def test_uri_extra_as_airflow_json_parameter():
    conn = connection_from_uri("http://h:1?__extra__=%7B%22verify%22%3A+false%2C+%22n%22%3A+2%7D")

    assert conn.extra == {"verify": False, "n": 2}


def test_uri_without_credentials():
    conn = connection_from_uri("http://127.0.0.1:9000")

    assert conn.login is None
    assert conn.password is None
    assert conn.get_password() is None


@pytest.mark.parametrize("render", [repr, str])
def test_password_is_hidden_in_repr_and_str(render):
    conn = connection_from_uri("http://demo:s%C3%AAcr%C3%AAt-42@127.0.0.1:8765")

    text = render(conn)

    assert "sêcrêt-42" not in text
    assert "s%C3%AAcr%C3%AAt-42" not in text
    assert "**********" in text
    assert "demo" in text and "8765" in text
    assert conn.get_password() == "sêcrêt-42"


def test_safe_uri_leaves_the_password_out():
    conn = ConnectionSettings(host="127.0.0.1", port=80, login="demo", password="hunter2")

    assert conn.safe_uri() == "http://demo@127.0.0.1:80"


def test_bad_port_error_does_not_leak_the_password():
    with pytest.raises(ConnectionConfigError) as caught:
        connection_from_uri("http://demo:hunter2@127.0.0.1:notaport")

    assert "hunter2" not in str(caught.value)
    assert "demo:***@" in str(caught.value)


def test_env_connection_is_read_from_airflow_conn_variable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", "http://demo:d%23mo@127.0.0.1:8123")

    conn = connection_from_env("national_portal")

    assert (conn.host, conn.port, conn.login, conn.get_password()) == (
        "127.0.0.1",
        8123,
        "demo",
        "d#mo",
    )


def test_env_connection_in_airflow_json_form(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_NATIONAL_PORTAL",
        '{"conn_type": "http", "host": "127.0.0.1", "port": 8123, "login": "demo",'
        ' "password": "demo", "extra": {"madonvi": "000.00.00.H62"}}',
    )

    conn = connection_from_env("national_portal")

    assert conn.base_url == "http://127.0.0.1:8123"
    assert conn.extra == {"madonvi": "000.00.00.H62"}


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_env_connection_names_the_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("AIRFLOW_CONN_NATIONAL_PORTAL", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", value)

    with pytest.raises(MissingConnection) as caught:
        connection_from_env("national_portal")

    message = str(caught.value)
    assert "AIRFLOW_CONN_NATIONAL_PORTAL" in message
    assert "'national_portal'" in message
    assert "\n" not in message


def test_settings_from_an_airflow_connection_object():
    # The shape of airflow.sdk Connection, without importing Airflow.
    airflow_conn = SimpleNamespace(
        conn_type="http",
        host="127.0.0.1",
        port=8123,
        schema="",
        login="demo",
        password="demo",
        extra_dejson={"madonvi": "000.00.00.H62"},
    )

    conn = ConnectionSettings.from_airflow(airflow_conn)

    assert conn.base_url == "http://127.0.0.1:8123"
    assert conn.get_password() == "demo"
    assert "password=SecretStr('**********')" in repr(conn)
    assert conn.extra == {"madonvi": "000.00.00.H62"}
