"""Security helpers: redirects, session stamps, tokens, script-safe page data."""


import pytest

from callcenter.domain import Role
from callcenter.storage.models import User
from web.auth import _safe_next
from web.security import TOKEN_PREFIX, hash_token, new_api_token, session_stamp
from web.views import json_script


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "http:/evil", "\\\\evil", "javascript:x",
                                    "", None, "calls"])
def test_next_refuses_anything_but_a_local_path(target):
    assert _safe_next(target) is None


def test_next_keeps_a_local_path_with_its_query():
    assert _safe_next("/calls/?q=洗车&score=low") == "/calls/?q=洗车&score=low"


def _user(**kw) -> User:
    base = {"id": 1, "password_hash": "scrypt:a", "role": Role.AGENT, "store_id": 1, "active": True}
    return User(**{**base, **kw})


@pytest.mark.parametrize("change", [{"password_hash": "scrypt:b"}, {"role": Role.ADMIN}, {"store_id": 2},
                                    {"store_id": None}, {"active": False}])
def test_the_session_stamp_changes_when_access_changes(change):
    assert session_stamp(_user()) != session_stamp(_user(**change))
    assert session_stamp(_user()) == session_stamp(_user())


def test_api_tokens_are_random_prefixed_and_stored_as_a_hash():
    token, digest = new_api_token()
    other, _ = new_api_token()
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40 and token != other
    assert digest == hash_token(token) and len(digest) == 64 and token not in digest


def test_page_data_cannot_close_its_script_block():
    html = str(json_script({"text": "</script><script>alert(1)</script> & 价格"}, "d"))
    assert html.count("</script>") == 1  # only the block's own end
    assert "\\u003c/script\\u003e" in html and "\\u0026" in html and "价格" in html
