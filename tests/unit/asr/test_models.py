"""Model store: assembling Whisper from two parts with a checksum, safe zip installs, name rules.

Uses small stand-in files instead of the real 145 MB model (the real install is an integration test).
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile

import pytest

from asr.models import ModelInstallError, ModelStore


@pytest.fixture
def parts(tmp_path):
    p1, p2 = tmp_path / "part1" / "data", tmp_path / "part2" / "data"
    p1.mkdir(parents=True)
    p2.mkdir(parents=True)
    (p1 / "model.bin.part1").write_bytes(b"A" * 1000)
    (p2 / "model.bin.part2").write_bytes(b"B" * 500)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (p1 / name).write_text("{}")
    return p1, p2, hashlib.sha256(b"A" * 1000 + b"B" * 500).hexdigest()


def test_whisper_is_assembled_verified_and_idempotent(tmp_path, parts):
    p1, p2, sha = parts
    store = ModelStore(tmp_path / "models")
    messages = []
    model = store.install_whisper(messages.append, parts=(p1, p2), expected_sha256=sha)
    assert model.verified and (model.path / "model.bin").read_bytes() == b"A" * 1000 + b"B" * 500
    assert any("sha256 verified" in m for m in messages)
    mtime = (model.path / "model.bin").stat().st_mtime_ns
    again = store.install_whisper(parts=(p1, p2), expected_sha256=sha)
    assert again.verified is None  # already there: not rebuilt
    assert (model.path / "model.bin").stat().st_mtime_ns == mtime
    assert [m.verified for m in store.check()] == [True]


def test_checksum_mismatch_installs_nothing(tmp_path, parts):
    p1, p2, _ = parts
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelInstallError, match="sha256"):
        store.install_whisper(parts=(p1, p2), expected_sha256="0" * 64)
    assert not store.whisper_dir.exists()
    assert [p.name for p in store.root.iterdir()] == []  # no temporary leftovers


def test_corrupted_model_is_reported_by_check(tmp_path, parts):
    p1, p2, sha = parts
    store = ModelStore(tmp_path / "models")
    store.install_whisper(parts=(p1, p2), expected_sha256=sha)
    with open(store.whisper_dir / "model.bin", "r+b") as f:
        f.write(b"X")
    [model] = store.check()
    assert model.verified is False and "does not match" in model.problem


def test_missing_part_is_named(tmp_path, parts):
    p1, p2, sha = parts
    (p2 / "model.bin.part2").unlink()
    with pytest.raises(ModelInstallError, match="model.bin.part2 is missing"):
        ModelStore(tmp_path / "m").install_whisper(parts=(p1, p2), expected_sha256=sha)


def fake_vosk_model(root):
    for rel in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf", "graph/HCLG.fst"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    return root


def test_vosk_model_from_a_zip_with_a_top_folder(tmp_path):
    src = fake_vosk_model(tmp_path / "vosk-model-small-cn-0.22")
    archive = tmp_path / "vosk-model-small-cn-0.22.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.rglob("*"):
            zf.write(f, f.relative_to(tmp_path))
    store = ModelStore(tmp_path / "models")
    model = store.install_vosk(archive, verify=False)
    assert model.name == "vosk-model-small-cn-0.22"
    assert (store.vosk_dir(model.name) / "am" / "final.mdl").is_file()
    assert store.vosk_models() == ["vosk-model-small-cn-0.22"]
    assert store.resolve_vosk(None) == store.vosk_dir(model.name)


def test_zip_with_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.txt", "pwned")
    with pytest.raises(ModelInstallError, match="unsafe path"):
        ModelStore(tmp_path / "models").install_vosk(archive, verify=False)
    assert not (tmp_path / "outside.txt").exists()


def test_zip_with_a_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("model/am")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc")
    with pytest.raises(ModelInstallError, match="link"):
        ModelStore(tmp_path / "models").install_vosk(archive, verify=False)


def test_not_a_model_and_not_a_zip(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelInstallError, match="not a Vosk model: missing am/final.mdl"):
        ModelStore(tmp_path / "models").install_vosk(tmp_path / "empty", verify=False)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(100))
    with pytest.raises(ModelInstallError, match="neither a directory nor a zip"):
        ModelStore(tmp_path / "models").install_vosk(junk, verify=False)


def test_model_names_cannot_escape_the_models_dir(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(ModelInstallError, match="model name"):
        store.vosk_dir("../etc")
    with pytest.raises(ModelInstallError, match="no Vosk model installed"):
        store.resolve_vosk(None)
