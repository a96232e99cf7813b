"""The application factory: secret key rules, cookie flags, headers, access rules on every view."""

import os
import stat

import pytest
from flask import Flask

from callcenter.config import ConfigError, Settings
from web import create_app
from web.security import check_every_view_has_a_rule, public


def _settings(tmp_path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "var", redis_url="redis://127.0.0.1:1/0", **kw)


@pytest.mark.parametrize("env", ["production", "testing"])
def test_no_secret_key_outside_development_is_a_startup_error(tmp_path, env):
    with pytest.raises(ConfigError) as err:
        create_app(_settings(tmp_path, env=env))
    assert "CALLCENTER_SECRET_KEY" in str(err.value)


def test_development_keeps_one_private_random_key_in_the_data_dir(tmp_path):
    first = create_app(_settings(tmp_path, env="development"))
    second = create_app(_settings(tmp_path, env="development"))
    key_file = tmp_path / "var" / ".dev-secret-key"
    assert first.secret_key == second.secret_key == key_file.read_text().strip()
    assert len(first.secret_key) >= 40
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_production_cookies_are_secure_httponly_and_samesite(tmp_path):
    app = create_app(_settings(tmp_path, env="production", secret_key="k" * 32))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    plain = create_app(_settings(tmp_path, env="production", secret_key="k" * 32, cookie_secure=False))
    assert plain.config["SESSION_COOKIE_SECURE"] is False


def test_the_login_page_sets_a_secure_session_cookie_and_strict_headers(tmp_path):
    app = create_app(_settings(tmp_path, env="production", secret_key="k" * 32))
    response = app.test_client().get("/login", base_url="https://console.example")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csp = response.headers["Content-Security-Policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert script_src.strip() == "script-src 'self'"  # no inline script, no CDN
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert 'name="username"' in response.text and 'name="password"' in response.text
    assert 'name="csrf_token"' in response.text


def test_a_view_without_an_access_rule_stops_the_application():
    app = Flask("x")
    app.add_url_rule("/open", "open", lambda: "ok")
    app.add_url_rule("/fine", "fine", public(lambda: "ok"))
    with pytest.raises(RuntimeError, match="open"):
        check_every_view_has_a_rule(app)


def test_json_clients_get_json_errors(tmp_path):
    app = create_app(_settings(tmp_path, env="testing", secret_key="k" * 32))
    client = app.test_client()
    response = client.get("/api/v1/stores")
    assert response.status_code == 401
    assert response.json["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.json["error"] == "Not Found"
