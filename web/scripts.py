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
import functools
import logging
import re
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from campaigns.scripts import SCRIPT_ID_RE, available_scripts
from web.services import settings

logger = logging.getLogger(__name__)

# The campaigns package decides which script ids exist (campaigns.scripts); the console lists
# and uploads with the same rules so that an uploaded script is one a campaign can name.
SCRIPT_ID = SCRIPT_ID_RE
MAX_SCRIPT_BYTES = 256 * 1024
# Keys whose string values are what the robot (or the agent) says, in the script's order.
_SPOKEN_KEYS = ("say", "prompt", "text", "speak", "question", "intro", "reprompt")


@dataclass(frozen=True)
class ScriptFile:
    id: str
    path: Path
    source: str  # "shipped" | "uploaded"
    modified: dt.datetime


def uploaded_dir() -> Path:
    return Path(settings().data_dir) / "scripts"


def list_scripts() -> list[ScriptFile]:
    uploads = uploaded_dir().resolve()
    out = []
    for script_id, path in sorted(available_scripts(settings().data_dir).items()):
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
        source = "uploaded" if path.resolve().parent == uploads else "shipped"
        out.append(ScriptFile(script_id, path, source, modified))
    return out


def find(script_id: str | None) -> ScriptFile | None:
    if not script_id or not SCRIPT_ID.fullmatch(script_id):
        return None
    return next((f for f in list_scripts() if f.id == script_id), None)


def validate(text: str, name: str = "script.yaml") -> list[str]:
    """Problems in a script, each naming its line; empty when the script is valid.

    The dialog package's parser (``dialog.script.parse_script``) checks everything the robot
    relies on (steps, transitions, variables, templates); without it only the YAML is checked.
    """
    script_id = Path(name).stem
    try:
        from dialog.script import ScriptError, parse_script
    except ImportError:
        return _yaml_problems(text, name)
    try:
        script = parse_script(text, name)
    except ScriptError as exc:
        return [f"{name}: line {line}: {message}" for line, message in exc.problems]
    if script.id != script_id:
        return [f"{name}: line 1: the script's id is {script.id!r} but the file is {script_id!r}: they must match"]
    return []


def _yaml_problems(text: str, name: str) -> list[str]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return [f"{name}: {where}{getattr(exc, 'problem', None) or exc}"]
    if not isinstance(data, dict):
        return [f"{name}: line 1: a script is a YAML mapping (id, name, steps ...)"]
    return []


def save_upload(script_id: str, text: str) -> Path:
    """Write a validated upload to the uploads folder (atomically).

    Raises:
        ValueError: a bad id.
    """
    if not SCRIPT_ID.fullmatch(script_id):
        raise ValueError("script id: a lower-case letter, then lower-case letters, digits and _ (at most 64)")
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


def agent_script(script_id: str | None, variables: dict[str, str]) -> list[tuple[str, str]]:
    """The script's steps in the order they are written, as ``(step id, text)`` with the
    customer's data filled in; empty when the script is unknown or unreadable (the workspace
    then shows the customer's file only)."""
    script = find(script_id)
    if script is None:
        return []
    try:
        from dialog.script import ScriptError, load_script
    except ImportError:
        return _generic_lines(script.path, variables)
    try:
        parsed = _parsed(script.path, script.path.stat().st_mtime_ns, load_script)
    except (ScriptError, OSError) as exc:
        logger.warning("script %s unusable: %s", script_id, exc)
        return []
    values = {name: v.fallback or "" for name, v in parsed.variables.items()}
    values.update({k: v for k, v in variables.items() if v})
    values.setdefault("customer", (variables.get("surname", "") + variables.get("title", "")) or values.get("customer", ""))
    steps = sorted(parsed.steps.values(), key=lambda st: st.line)
    return [(st.id, fill(st.say, values)) for st in steps if st.say]


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, mtime_ns: int, loader):
    """A parsed script, kept until its file changes (parsing costs ~10 ms; the workspace shows it
    on every task)."""
    return loader(path)


def _generic_lines(path: Path, variables: dict[str, str]) -> list[tuple[str, str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("script %s unreadable: %s", path.name, exc)
        return []
    lines: list[str] = []
    _collect(data, lines)
    return [("", fill(line, variables)) for line in lines]


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
