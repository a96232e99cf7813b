"""DMS import in the browser: upload, dry-run preview with the rejected rows, import with progress,
the error list as CSV, the history with who imported what; bad input; store scope."""

import io
import re

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Customer, ImportRun
from callcenter.storage.web_models import ConsoleJob, JobStatus
from web import jobs

pytestmark = pytest.mark.integration

HEADER = "客户编号,姓名,手机号,VIN,车型,门店\n"
GOOD = "D100,赵女士,13900001111,LVGBE40K38G000111,卡罗拉,S1\nD101,钱先生,139-0000-2222,,,S1\n"
BAD = "D102,孙先生,12345,,,S1\n"


def _upload(client, csrf, body: bytes, name="客户.csv", kind="customers", **extra):
    from io import BytesIO

    return client.post("/admin/imports/", data={"csrf_token": csrf, "kind": kind, "file": (BytesIO(body), name),
                                                 **extra}, content_type="multipart/form-data")


def _job_id(response) -> int:
    return int(re.search(r"/admin/imports/(\d+)$", response.headers["Location"]).group(1))


def test_preview_then_import_with_errors_csv_and_history(console, client_for, csrf, db, settings):
    client = client_for("admin")
    response = _upload(client, csrf, (HEADER + GOOD + BAD).encode("gb18030"))  # what Chinese Excel saves
    assert response.status_code == 302
    preview_id = _job_id(response)
    job = jobs.wait(preview_id, db)
    assert job.status is JobStatus.DONE and job.dry_run and job.username == "admin"
    stored = list((settings.data_dir / "imports").iterdir())
    assert len(stored) == 1 and re.fullmatch(r"[0-9a-f]{32}\.csv", stored[0].name)  # a random name
    page = client.get(f"/admin/imports/{preview_id}").get_data(as_text=True)
    assert "将被拒绝的行" in page and "手机号" in page and "12345" in page and 'data-testid="import-run"' in page
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Customer).where(Customer.external_id.like("D1%"))) == 0
    progress = client.get(f"/admin/imports/{preview_id}.json").json
    assert progress["status"] == "done"
    csv = client.get(f"/admin/imports/{preview_id}/errors.csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    lines = csv.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == "行号,列,取值,原因" and lines[1].startswith("4,手机号,12345,")
    run = client.post(f"/admin/imports/{preview_id}/run", data={"csrf_token": csrf})
    real_id = _job_id(run)
    job = jobs.wait(real_id, db)
    assert job.status is JobStatus.DONE and not job.dry_run, job.error
    assert (job.result["imported"], job.result["rejected"]) == (2, 1)
    with db.session() as s:
        assert {c.external_id for c in s.scalars(sa.select(Customer).where(Customer.external_id.like("D1%")))} \
            == {"D100", "D101"}
        assert s.scalar(sa.select(ImportRun.rejected).order_by(ImportRun.id.desc())) == 1
    history = client.get("/admin/imports/").get_data(as_text=True)
    assert "客户.csv" in history and "admin" in history and "已导入" in history
    # The file goes with its import: a second "import" of the same preview is refused, not repeated.
    assert not list((settings.data_dir / "imports").iterdir())
    again = client.post(f"/admin/imports/{preview_id}/run", data={"csrf_token": csrf})
    assert again.status_code == 410 and "重新上传" in again.get_data(as_text=True)


@pytest.mark.parametrize("name, body, kind, message", [
    ("客户.csv", b"", "customers", "文件是空的"),
    ("notes.pdf", b"%PDF-1.4", "customers", "不是 CSV 或 Excel 文件"),
    ("客户.csv", b"a,b\n1,2\n", "parcels", "请选择文件内容"),
])
def test_bad_uploads_are_named_next_to_the_field(console, client_for, csrf, db, settings, name, body, kind,
                                                  message):
    response = _upload(client_for("admin"), csrf, body, name=name, kind=kind)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0
    assert not (settings.data_dir / "imports").exists() or not list((settings.data_dir / "imports").iterdir())


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@pytest.mark.parametrize("field, name, body, extra, message", [
    ("file", "客户.xlsx", b"PK\x03\x04" + b"\x00" * 200, {}, "无法读取的 Excel 文件"),  # a cut-off download
    ("file", "客户.xlsx", _zip({"word/document.xml": b"<w/>"}), {}, "无法读取的 Excel 文件"),  # a Word file renamed
    ("file", "客户.xlsx", _zip({"xl/workbook.xml": b"<workbook><sheets>"}), {}, "无法读取的 Excel 文件"),
    ("file", "客户.xls", OLE2 + b"\x00" * 600, {}, "无法读取的 Excel 文件"),
    ("file", "客户.csv", b"%PDF-1.4\n\x00\x01\x02binary", {}, "不是 CSV 或 Excel 文件"),  # a PDF renamed
    ("file", "客户.csv", "客戶編號,姓名,手機號\nD1,陳先生,13900001111\n".encode("big5") * 20, {}, "无法识别的文本编码"),
    ("file", "客户.csv", b"\xef\xbb\xbf" + "客户编号,姓名".encode() + b"\xff\xfe\n", {}, "无法识别的文本编码"),
    ("file", "", (HEADER + GOOD).encode(), {}, "请选择文件"),  # no file chosen
    ("file", "客户.numbers", (HEADER + GOOD).encode(), {}, "不是 CSV 或 Excel 文件"),
    ("store", "客户.csv", (HEADER + GOOD).encode(), {"store": "999999"}, "未知门店"),
    ("kind", "客户.csv", (HEADER + GOOD).encode(), {"kind": ""}, "请选择文件内容"),
])
def test_a_bad_upload_is_named_next_to_its_field_and_nothing_is_stored(console, client_for, csrf, db, settings,
                                                                       field, name, body, extra, message):
    """Whatever fails the whole file is said on the form, before a preview is queued."""
    response = _upload(client_for("admin"), csrf, body, name=name, **{"kind": "customers", **extra})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and f'data-testid="error-{field}"' in page and message in page
    assert page.split(f'data-testid="error-{field}"')[1].split("</div>")[0].count(message) == 1  # next to it
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Customer)) == 2  # the seeded ones
    assert not (settings.data_dir / "imports").exists() or not list((settings.data_dir / "imports").iterdir())


def test_an_unreadable_file_fails_whole_and_names_why(console, client_for, csrf, db):
    client = client_for("admin")
    job = jobs.wait(_job_id(_upload(client, csrf, "姓名,城市\n张三,长沙\n".encode())), db)
    assert job.status is JobStatus.FAILED and "customer_id" in job.error
    page = client.get(f"/admin/imports/{job.id}").get_data(as_text=True)
    assert "文件无法导入" in page and "缺少必需的列：客户编号" in page and 'data-testid="import-run"' not in page


def test_store_admin_imports_their_store_only_and_sees_only_their_imports(console, client_for, csrf, db):
    client = client_for("admin_s1")
    job = jobs.wait(_job_id(_upload(client, csrf, (HEADER + "D200,周先生,13900003333,,,S2\n"
                                                   "D201,吴女士,13900004444,,,S1\n").encode())), db)
    assert job.status is JobStatus.DONE, job.error
    assert job.result["rejected"] == 1 and job.result["errors"][0]["row"] == 2
    page = client.get(f"/admin/imports/{job.id}").get_data(as_text=True)
    assert "其他门店" in page and "S2" in page
    other = jobs.wait(_job_id(_upload(client_for("admin"), csrf, (HEADER + GOOD).encode())), db)
    assert client.get(f"/admin/imports/{other.id}").status_code == 404
    assert client_for("sup_all").get("/admin/imports/").status_code == 403
    assert client.post("/admin/imports/", data={"kind": "customers"}).status_code == 400  # no CSRF token


def test_reasons_are_said_in_chinese(console):
    from web.imports import failure_text, reason_text

    app, _world = console
    with app.test_request_context():
        assert "手机号" in reason_text("not a valid mainland mobile number (11 digits starting 13-19)")
        assert "2027-01-01" in reason_text("date 2027-01-01 is in the future")
        assert reason_text("something new from the importer") == "something new from the importer"
        assert "客户编号" in failure_text("a.csv: missing required column(s): customer_id; found: 姓名, 城市")


def test_an_upload_over_the_limit_is_refused_before_anything_is_stored(console, client_for, csrf, db, settings):
    app, _world = console
    big = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = _upload(client_for("admin"), csrf, big)
    page = response.get_data(as_text=True)
    assert response.status_code == 413 and "上传文件过大" in page
    # Next to the file field, with the limit, on the upload form.
    assert 'data-testid="error-file"' in page and "最大 16 MB" in page and 'data-testid="import-form"' in page
    # Other pages and users get the plain error page.
    other = client_for("admin").post("/admin/scripts", data={"csrf_token": csrf, "file": (io.BytesIO(big), "x.yaml")},
                                     content_type="multipart/form-data")
    assert other.status_code == 413 and 'data-testid="error-file"' not in other.get_data(as_text=True)
    agent = _upload(client_for("agent_s1"), csrf, big)
    assert agent.status_code == 413 and 'data-testid="import-form"' not in agent.get_data(as_text=True)
    assert not (settings.data_dir / "imports").exists()
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0


def test_uploaded_names_never_become_paths(console, client_for, csrf, db, settings):
    job = jobs.wait(_job_id(_upload(client_for("admin"), csrf, (HEADER + GOOD).encode(),
                                    name="../../../etc/客户.csv")), db)
    assert job.filename == "客户.csv" and job.stored_name != job.filename
    assert [p.name for p in (settings.data_dir / "imports").iterdir()] == [job.stored_name]


def test_an_excel_visits_export_is_previewed_and_imported(console, client_for, csrf, db):
    """XLSX with real date cells, after the customers it refers to."""
    import datetime as dt
    import io

    from openpyxl import Workbook

    from callcenter.storage.models import ServiceVisit

    client = client_for("admin")
    jobs.wait(_job_id(_upload(client, csrf, (HEADER + GOOD).encode())), db)
    customers = jobs.wait(_job_id(client.post(f"/admin/imports/{_last_job(db)}/run", data={"csrf_token": csrf})), db)
    assert customers.status is JobStatus.DONE, customers.error
    book = Workbook()
    sheet = book.active
    sheet.append(["客户编号", "进店日期", "类型", "有偿", "金额", "工单号"])
    sheet.append(["D100", dt.date.today() - dt.timedelta(days=3), "保养", "是", 680, "RO-1"])
    sheet.append(["D101", dt.date.today() - dt.timedelta(days=2), "喷漆", "否", 0, "RO-2"])
    sheet.append(["D999", dt.date.today() - dt.timedelta(days=2), "保养", "是", 300, "RO-3"])
    out = io.BytesIO()
    book.save(out)
    preview = jobs.wait(_job_id(_upload(client, csrf, out.getvalue(), name="进店.xlsx", kind="visits")), db)
    assert preview.status is JobStatus.DONE and preview.result["rejected"] == 1, preview.error
    page = client.get(f"/admin/imports/{preview.id}").get_data(as_text=True)
    assert "D999" in page and "未知客户" in page
    real = jobs.wait(_job_id(client.post(f"/admin/imports/{preview.id}/run", data={"csrf_token": csrf})), db)
    assert real.status is JobStatus.DONE and real.result["imported"] == 2
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ServiceVisit)
                        .where(ServiceVisit.ro_number.in_(["RO-1", "RO-2"]))) == 2


def _last_job(db) -> int:
    with db.session() as s:
        return s.scalar(sa.select(sa.func.max(ConsoleJob.id)))


def test_a_store_with_its_own_customer_numbers(console, client_for, csrf, db):
    """Two stores' DMS installations both have a C0001: with the store's own numbers they stay two people."""
    _app, world = console
    client = client_for("admin")
    body = "客户编号,姓名,手机号\nC0001,{name},{phone}\n"
    for store, name, phone in (("S1", "一店的客户", "13900006001"), ("S2", "二店的客户", "13900006002")):
        preview = jobs.wait(_job_id(_upload(client, csrf, body.format(name=name, phone=phone).encode(),
                                            store=str(world.stores[store]), id_scope="store")), db)
        assert preview.status is JobStatus.DONE and preview.result["id_scope"] == "store", preview.error
        real = jobs.wait(_job_id(client.post(f"/admin/imports/{preview.id}/run", data={"csrf_token": csrf})), db)
        assert real.status is JobStatus.DONE and real.result["imported"] == 1, real.error
    with db.session() as s:
        names = {c.store_id: c.name for c in s.scalars(sa.select(Customer).where(Customer.external_id == "C0001"))}
    assert names == {world.stores["S1"]: "一店的客户", world.stores["S2"]: "二店的客户"}
    bad = _upload(client, csrf, body.encode(), id_scope="everyone")
    assert bad.status_code == 400 and 'data-testid="error-id_scope"' in bad.get_data(as_text=True)
