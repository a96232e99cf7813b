"""``callcenter serve``: the console behind gunicorn's threaded workers, over real HTTP."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]
CLI = [sys.executable, "-m", "callcenter"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, template: Path, **extra) -> dict:
    db = tmp_path / "callcenter.db"
    shutil.copyfile(template, db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_DATA_DIR": str(tmp_path), "CALLCENTER_DATABASE_URL": f"sqlite:///{db}",
                "CALLCENTER_REDIS_URL": os.environ.get("CALLCENTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
                "CALLCENTER_LOG_LEVEL": "warning", **extra})
    return env


def test_production_without_a_secret_key_does_not_start(tmp_path, _sqlite_template):
    env = _env(tmp_path, _sqlite_template, CALLCENTER_ENV="production")
    result = subprocess.run([*CLI, "serve", "--port", str(_free_port())], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "CALLCENTER_SECRET_KEY" in result.stderr


def test_gunicorn_serves_the_console_with_its_security_headers(tmp_path, _sqlite_template):
    port = _free_port()
    env = _env(tmp_path, _sqlite_template, CALLCENTER_ENV="production", CALLCENTER_SECRET_KEY="k" * 40,
               CALLCENTER_COOKIE_SECURE="false", CALLCENTER_LOG_LEVEL="info")
    create = subprocess.run([*CLI, "users", "create", "boss", "--role", "admin", "--password-stdin"], env=env,
                            input="a-long-password-9\n", capture_output=True, text=True, timeout=60)
    assert create.returncode == 0, create.stderr
    server = subprocess.Popen([*CLI, "serve", "--port", str(port), "--workers", "1", "--threads", "4"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(base + "/healthz", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("the console did not answer on /healthz")
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login")
        assert page.headers["Server"].startswith("gunicorn")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        html = page.read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        body = f"username=boss&password=a-long-password-9&csrf_token={token}".encode()
        reports = opener.open(urllib.request.Request(base + "/login", data=body))
        assert reports.url.endswith("/reports/") and "智能回访中心" in reports.read().decode()
        asset = opener.open(base + "/static/vendor/echarts.min.js")
        assert asset.status == 200 and int(asset.headers["Content-Length"]) > 500_000
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Using worker: gthread" in output and "Booting worker" in output
    assert "POST /login 302" in output  # requests are logged by the console itself, path only
