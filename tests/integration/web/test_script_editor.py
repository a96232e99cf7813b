"""话术 editing in the browser: a step's words and routes, Chinese messages naming the step,
audio status and listening, versions kept by campaigns."""

import pytest
import sqlalchemy as sa
import yaml
from markupsafe import escape

from callcenter.storage.models import ScriptVersion
from callcenter.storage.web_models import ConsoleJob
from web import jobs

pytestmark = pytest.mark.integration


def test_supervisor_edits_a_step_and_a_version_is_kept(console, client_for, csrf, db, settings):
    client = client_for("sup_all")  # a group-wide supervisor: scripts are every store's
    assert "售后服务回访" in client.get("/scripts/").get_data(as_text=True)
    page = client.get("/scripts/post_service/edit").get_data(as_text=True)
    assert 'data-testid="step-identity"' in page and "第1步" in page and 'class="frag ok"' in page
    audio = client.get("/scripts/post_service/steps/identity/audio.wav")
    assert audio.status_code == 200 and audio.mimetype == "audio/wav" and audio.data[:4] == b"RIFF"
    response = client.post("/scripts/post_service/edit", data={
        "csrf_token": csrf, "note": "更亲切的开场",
        "identity.say": "{customer}您好,我是{store}的客服小李,想耽误您一分钟做个回访,现在方便吗?"})
    assert response.status_code == 302
    saved = yaml.safe_load((settings.data_dir / "scripts" / "post_service.yaml").read_text(encoding="utf-8"))
    assert saved["steps"]["identity"]["say"].startswith("{customer}您好,我是{store}的客服小李")
    from dialog.script import load_script, shipped_scripts

    edited, shipped = load_script(settings.data_dir / "scripts" / "post_service.yaml"), shipped_scripts()["post_service"]
    assert edited.steps["satisfaction"].say == shipped.steps["satisfaction"].say  # the other steps are kept
    assert dict(edited.steps["identity"].on) == dict(shipped.steps["identity"].on)
    with db.session() as s:
        versions = s.scalars(sa.select(ScriptVersion).where(ScriptVersion.script_id == "post_service")
                             .order_by(ScriptVersion.version)).all()
        assert [v.version for v in versions] == [1, 2] and versions[1].note == "更亲切的开场"
        render = s.scalar(sa.select(ConsoleJob.id).where(ConsoleJob.target == "script:post_service"))
    page = client.get("/scripts/post_service/edit").get_data(as_text=True)
    assert "第 2 版" in page
    if render is not None:  # the render tool is installed: the new sentence gets its audio
        assert jobs.wait(render, db, timeout=120).error is None


@pytest.mark.parametrize("field, value, message", [
    ("identity.say", "", "请填写机器人要说的话"),
    ("identity.say", "您好 OK 吗", "拉丁字母"),
    ("identity.say", "{nobody}您好", "未知变量"),
    ("identity.say", "您好{store", "花括号不成对"),
    ("identity.on.affirm", "no_such_step", "不存在"),
])
def test_bad_edits_name_the_step_in_chinese_and_nothing_is_saved(console, client_for, csrf, db, settings, field,
                                                                  value, message):
    form = {"csrf_token": csrf, "identity.say": "{customer}您好,现在方便吗?", field: value}
    response = client_for("sup_all").post("/scripts/post_service/edit", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page and "第1步" in page
    assert not (settings.data_dir / "scripts" / "post_service.yaml").exists()
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ScriptVersion)) == 0


SATISFACTION = "请问您对这次服务的总体满意度打几分?一到五分,五分是非常满意。"


@pytest.mark.parametrize("field, value, message, step", [
    ("identity.say", "您好" * 251, "最多 500 个字", "第1步"),
    ("identity.say", "   ", "请填写机器人要说的话", "第1步"),
    ("identity.say", "{customer}您好,{}现在方便吗?", "花括号里要写变量名", "第1步"),  # the parser said it in English
    ("identity.say", "{store!r}您好", "花括号里要写变量名", "第1步"),
    ("identity.say", "您好}现在方便吗?", "花括号不成对", "第1步"),
    ("identity.say", "您好,您的VIN尾号是几?", "拉丁字母", "第1步"),
    ("identity.expect", "mumble", "请选择这一步期待的回答", "第1步"),
    ("identity.on.deny", "end_nowhere", "不存在", "第1步"),
    ("identity.on.affirm", "", "请指定回答“是”和“否”各转到哪一步", "第1步"),  # a yes with nowhere to go
    ("identity.goto", "nowhere", "下一步不存在", "第1步"),
    ("satisfaction.branch.0", "nowhere", "该分数段转到的步骤不存在", "第3步"),
    ("satisfaction.goto", "void", "下一步不存在", "第3步"),
])
def test_each_field_of_a_step_names_the_step_next_to_the_field_and_nothing_is_saved(
        console, client_for, csrf, db, settings, field, value, message, step):
    form = {"csrf_token": csrf, "note": "改开场白", "identity.say": "{customer}您好,现在方便吗?",
            "satisfaction.say": SATISFACTION, field: value}
    response = client_for("sup_all").post("/scripts/post_service/edit", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = page.split(f'data-testid="error-{field}"')[1].split("</div>")[0]
    assert message in error and step in error  # next to the field, naming the step
    assert 'data-testid="script-field-errors"' in page
    if field.endswith(".say") and value.strip():
        assert f">{escape(value)}</textarea>" in page  # what was typed is kept
    assert 'value="改开场白"' in page
    assert not (settings.data_dir / "scripts" / "post_service.yaml").exists()
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ScriptVersion)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0


def test_a_statement_without_a_next_step_is_named(console, client_for, csrf, db, settings):
    response = client_for("sup_all").post("/scripts/post_service/edit", data={
        "csrf_token": csrf, "identity.say": "{customer}您好,这里是回访。", "identity.expect": "none",
        "identity.on.affirm": "", "identity.on.deny": ""})
    assert response.status_code == 400
    error = response.get_data(as_text=True).split('data-testid="error-identity.goto"')[1].split("</div>")[0]
    assert "陈述句需要指定下一步" in error and "第1步" in error
    assert not (settings.data_dir / "scripts" / "post_service.yaml").exists()


def test_roles_and_unknown_scripts(console, client_for, csrf):
    assert client_for("agent_s1").get("/scripts/").status_code == 403
    assert client_for("agent_s1").get("/scripts/post_service/steps/identity/audio.wav").status_code == 403
    assert client_for(None).get("/scripts/post_service/steps/identity/audio.wav").status_code == 302
    assert client_for("sup_s1").get("/scripts/..%2Fetc/edit").status_code == 404
    assert client_for("sup_s1").get("/scripts/post_service/steps/nope/audio.wav").status_code == 404
    assert client_for("sup_s1").post("/scripts/post_service/edit", data={"identity.say": "x"}).status_code == 400


def test_a_store_supervisor_sees_the_script_but_cannot_save_it(console, client_for):
    page = client_for("sup_s1").get("/scripts/post_service/edit").get_data(as_text=True)
    assert 'data-testid="group-only"' in page and 'data-testid="save-script"' not in page
    assert "{customer}" not in page.split('data-testid="step-identity"')[1].split("</h3>")[0]  # no raw variables


def test_without_the_render_tool_new_sentences_are_marked_and_nothing_is_queued(console, client_for, csrf, db,
                                                                               monkeypatch, tmp_path):
    from web import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "tts_python", lambda: tmp_path / "no-venv" / "bin" / "python")
    client = client_for("sup_all")
    response = client.post("/scripts/post_service/edit", data={
        "csrf_token": csrf, "identity.say": "{customer}您好,这是一句还没有录音的新开场白,现在方便吗?"})
    assert response.status_code == 302
    page = client.get("/scripts/post_service/edit").get_data(as_text=True)
    assert 'data-testid="no-render-tool"' in page and 'class="frag missing"' in page
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0


def test_a_failed_commit_leaves_neither_the_file_nor_the_version(console, client_for, csrf, db, settings,
                                                                  monkeypatch):
    from sqlalchemy.orm import Session

    def broken_commit(self):
        raise sa.exc.OperationalError("COMMIT", {}, Exception("database went away"))

    monkeypatch.setattr(Session, "commit", broken_commit)
    with pytest.raises(sa.exc.OperationalError):
        client_for("sup_all").post("/scripts/post_service/edit", data={
            "csrf_token": csrf, "identity.say": "{customer}您好,现在方便吗?"})
    monkeypatch.undo()
    assert not (settings.data_dir / "scripts" / "post_service.yaml").exists()
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ScriptVersion)) == 0


def test_the_robot_parsers_problems_are_said_in_chinese_naming_the_step(console, client_for, csrf, settings):
    """Turning the score question into free text leaves its score ranges without a score."""
    response = client_for("sup_all").post("/scripts/post_service/edit", data={
        "csrf_token": csrf, "satisfaction.say": "请问您对这次服务满意吗?", "satisfaction.expect": "text"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "第2步" in page and "分数段只适用于打分的回答" in page and "branches" not in page
    assert not (settings.data_dir / "scripts" / "post_service.yaml").exists()
