"""Revisit scripts (话术) as the console shows them: the list, one script's YAML, uploads with
validation, and the agent's version of a script with the customer's data filled in.

Scripts ship with the dialog package (``dialog/scripts/*.yaml``); uploaded ones live in
``<data dir>/scripts`` and take precedence over a shipped script of the same id. Validation is
the dialog package's own (it names the line of each error) when it offers one, otherwise the
YAML parse with its line numbers. Script ids are checked against a strict pattern and files are
only ever looked up inside those two folders (no path from a request reaches the filesystem).
Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import re
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from web.services import settings

logger = logging.getLogger(__name__)

SCRIPT_ID = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
MAX_SCRIPT_BYTES = 256 * 1024
# Keys whose string values are what the robot (or the agent) says, in the script's order.
_SPOKEN_KEYS = ("say", "prompt", "text", "speak", "question", "intro", "reprompt")


@dataclass(frozen=True)
class ScriptFile:
    id: str
    path: Path
    source: str  # "shipped" | "uploaded"
    modified: dt.datetime


def shipped_dir() -> Path | None:
    try:
        import dialog
    except ImportError:
        return None
    path = Path(dialog.__file__).resolve().parent / "scripts"
    return path if path.is_dir() else None


def uploaded_dir() -> Path:
    return Path(settings().data_dir) / "scripts"


def list_scripts() -> list[ScriptFile]:
    found: dict[str, ScriptFile] = {}
    for source, folder in (("shipped", shipped_dir()), ("uploaded", uploaded_dir())):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            if path.suffix not in (".yaml", ".yml") or not SCRIPT_ID.fullmatch(path.stem):
                continue
            modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
            found[path.stem] = ScriptFile(path.stem, path, source, modified)
    return sorted(found.values(), key=lambda f: f.id)


def find(script_id: str | None) -> ScriptFile | None:
    if not script_id or not SCRIPT_ID.fullmatch(script_id):
        return None
    return next((f for f in list_scripts() if f.id == script_id), None)


def validate(text: str, name: str = "script.yaml") -> list[str]:
    """Problems in a script, each naming its line; empty when the script is valid."""
    validator = _dialog_validator()
    if validator is not None:
        try:
            result = validator(text, name)
        except Exception as exc:  # the validator's own error type carries the line
            return [str(exc)]
        if result is None:
            return []
        if isinstance(result, (list, tuple)):
            return [str(p) for p in result]
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return [f"{name}: {where}{getattr(exc, 'problem', None) or exc}"]
    if not isinstance(data, dict):
        return [f"{name}: line 1: a script is a YAML mapping (id, name, steps ...)"]
    return []


def _dialog_validator():
    """The dialog package's text validator, when it has one (``dialog.scripts``)."""
    try:
        module = importlib.import_module("dialog.scripts")
    except ImportError:
        return None
    for name in ("validate_text", "validate_script_text", "validate_source"):
        func = getattr(module, name, None)
        if callable(func):
            return func
    return None


def save_upload(script_id: str, text: str) -> Path:
    """Write a validated upload to the uploads folder (atomically).

    Raises:
        ValueError: a bad id.
    """
    if not SCRIPT_ID.fullmatch(script_id):
        raise ValueError("script id: lower-case letters, digits, _ and -, at most 64 characters")
    folder = uploaded_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{script_id}.yaml"
    tmp = folder / f".{script_id}.yaml.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "____"  # a gap the agent sees and fills by ear, never a KeyError


def fill(text: str, variables: dict[str, str]) -> str:
    """``{surname}{title}`` and ``${surname}`` placeholders replaced by the customer's data."""
    text = re.sub(r"\$\{(\w+)\}", r"{\1}", text)
    try:
        return string.Formatter().vformat(text, (), _Blank(variables))
    except (ValueError, IndexError):
        return text


def agent_script(script_id: str | None, variables: dict[str, str]) -> list[str]:
    """The lines of a script, in order, with the customer's data filled in (empty when the
    script is unknown or unreadable: the workspace then shows the customer's file only)."""
    script = find(script_id)
    if script is None:
        return []
    try:
        data = yaml.safe_load(script.path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("script %s unreadable: %s", script_id, exc)
        return []
    lines: list[str] = []
    _collect(data, lines)
    return [fill(line, variables) for line in lines]


def _collect(node, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _SPOKEN_KEYS and isinstance(value, str):
                out.append(value.strip())
            elif key in _SPOKEN_KEYS and isinstance(value, list) and all(isinstance(v, str) for v in value):
                out.extend(v.strip() for v in value[:1])
            else:
                _collect(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect(item, out)
