"""``callcenter campaign ...`` end to end through the CLI, bad input included (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from callcenter.storage.models import Customer

pytestmark = pytest.mark.integration

TODAY = dt.date.today()


@pytest.fixture
def cli(run_cli, campaign_settings, db):
    env = {"CALLCENTER_DATA_DIR": str(campaign_settings.data_dir), "CALLCENTER_DATABASE_URL": db.url}

    def call(*args):
        return run_cli("campaign", *args, env=env)

    return call


def visitors(world, n, **kw):
    out = []
    for i in range(n):
        cid = world.customer(f"客户{i}", **kw)
        world.visit(cid, world.vehicle(cid), TODAY - dt.timedelta(days=2))
        out.append(cid)
    return out


def test_create_start_pause_resume_status_list(cli, world, db):
    visitors(world, 3)
    no_phone = visitors(world, 1, phone=None)
    bad_phone = visitors(world, 1, phone="110")
    on_dnc = visitors(world, 1)[0]
    with db.session() as s:
        world.dnc(s.get(Customer, on_dnc).phone)
    result = cli("create", "--type", "post_service", "--store", "S1", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == {"id", "audience", "excluded"}
    assert created["audience"] == 3
    assert created["excluded"] == {"dnc": 1, "frequency_cap": 0, "no_phone": len(no_phone) + len(bad_phone)}
    cid = str(created["id"])

    assert json.loads(cli("start", cid, "--json").output) == {"id": created["id"], "status": "running",
                                                              "previous": "draft"}
    assert json.loads(cli("pause", cid, "--json").output)["status"] == "paused"
    assert "paused -> 进行中 running" in cli("resume", cid).output
    status = json.loads(cli("status", cid, "--json").output)
    assert status["status"] == "running" and status["tasks"]["pending"] == 3 and status["tasks"]["total"] == 3
    assert status["excluded"] == created["excluded"] and status["store"] == "S1"
    human = cli("status", cid).output
    assert "待拨 pending 3" in human and "post_service" in human
    listing = json.loads(cli("list", "--json").output)
    assert [(c["id"], c["status"], c["tasks"], c["done"]) for c in listing] == [(created["id"], "running", 3, 0)]
    assert cli("list", "--status", "paused", "--json").output.strip() == "[]"
    assert "已取消 cancelled" in cli("cancel", cid).output


def test_dry_run_creates_nothing(cli, world):
    visitors(world, 2)
    result = cli("create", "--type", "post_service", "--dry-run", "--json")
    assert json.loads(result.output) == {"id": None, "audience": 2, "excluded": {"dnc": 0, "frequency_cap": 0,
                                                                                  "no_phone": 0}}
    assert json.loads(cli("list", "--json").output) == []


def test_parameters_and_custom_filters_from_the_command_line(cli, world, campaign_settings):
    visitors(world, 2)
    result = cli("create", "--type", "post_service", "--param", "window_days=[2, 2]", "--param",
                 "windows=10:00-11:00", "--max-channels", "8", "--json")
    assert result.exit_code == 0, result.output
    (campaign_settings.data_dir / "filters").mkdir()
    (campaign_settings.data_dir / "filters" / "changsha.yaml").write_text("cities: [长沙市]\n", encoding="utf-8")
    custom = cli("create", "--type", "custom", "--script", "nps", "--filter", "changsha", "--json")
    assert custom.exit_code == 0, custom.output
    assert json.loads(custom.output)["audience"] == 2


@pytest.mark.parametrize("args, message", [
    (("--type", "post_service"), "the audience is empty"),
    (("--type", "post_service", "--script", "no_such_script"), "unknown script 'no_such_script'"),
    (("--type", "post_service", "--store", "S9"), "unknown store 'S9' (stores: S1, S2)"),
    (("--type", "custom"), "no default script"),
    (("--type", "custom", "--script", "nps"), "need a filter"),
    (("--type", "post_service", "--filter", '{"cities": ["长沙市"]}'), "only custom campaigns take a filter"),
    (("--type", "custom", "--script", "nps", "--filter", '{"colour": 1}'), "unknown key 'colour'"),
    (("--type", "post_service", "--param", "window_days=[5, 1]"), "window_days"),
    (("--type", "post_service", "--param", "windows=25:00-26:00"), "not a time of day"),
    (("--type", "post_service", "--param", "nonsense"), "expected KEY=VALUE"),
    (("--type", "post_service", "--param", "touches=[day3]"), "does not apply to post_service"),
    (("--type", "weather"), "Invalid value for '--type'"),
])
def test_bad_input_is_refused_with_a_reason(cli, world, args, message):
    result = cli("create", *args)
    assert result.exit_code != 0
    assert message in result.output


def test_an_empty_audience_reports_its_exclusions_as_json(cli, world, db):
    only = visitors(world, 1)[0]
    with db.session() as s:
        world.dnc(s.get(Customer, only).phone)
    result = cli("create", "--type", "post_service", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"id": None, "audience": 0,
                                         "excluded": {"dnc": 1, "frequency_cap": 0, "no_phone": 0}}
    assert "1 on the do-not-call list" in result.stderr


@pytest.mark.parametrize("command", ["start", "pause", "resume", "cancel", "status"])
def test_unknown_campaign(cli, command):
    result = cli(command, "4242")
    assert result.exit_code == 1 and "campaign 4242 does not exist" in result.output
