"""The OpenAPI description and the API's routes agree, both ways."""

import re

from callcenter.config import Settings
from web import create_app
from web.openapi import spec


def test_every_api_route_is_described_and_every_description_is_a_route(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, env="testing", secret_key="k" * 32))
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((path, method.lower()))
    described = {(path, method) for path, ops in spec()["paths"].items() for method in ops}
    assert routes == described


def test_every_reference_resolves():
    doc = spec()
    refs = set(re.findall(r"#/components/schemas/(\w+)", str(doc)))
    assert refs <= set(doc["components"]["schemas"])
    assert doc["openapi"].startswith("3.1")
