"""API keys on the wire: the header a client sends, the server's check, the environment variable, and the hint a
command prints when a key was given as a flag (never the key itself)."""

from evalkit.wire.auth import (
    API_KEY_ENV,
    auth_headers,
    hint_if_key_on_command_line,
    is_authorized,
    key_from_environment,
)


def test_header_round_trip():
    headers = auth_headers("k3y")
    assert headers == {"Authorization": "Api-Key k3y"}
    assert is_authorized(headers, "k3y")
    assert not is_authorized(headers, "k3")
    assert not is_authorized({}, "k3y") and not is_authorized({"Authorization": "k3y"}, "k3y")
    assert auth_headers(None) is None and auth_headers("") is None


def test_key_from_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert key_from_environment() == "from-env"
    monkeypatch.setenv(API_KEY_ENV, "")
    assert key_from_environment() is None
    monkeypatch.delenv(API_KEY_ENV)
    assert key_from_environment() is None


def test_hint_is_one_line_on_stderr(capsys):
    hint_if_key_on_command_line("serve")
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("evalkit serve: note:") and API_KEY_ENV in err and "ps" in err
