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


def display_name(script_id: str | None) -> str:
    """What pages call a script: its ``name`` (``name_en`` in English), never the bare id unless
    the script is gone or unreadable (then the id, so that the reference is still traceable)."""
    if not script_id:
        return ""
    script = find(script_id)
    if script is None:
        return script_id
    try:
        from dialog.script import ScriptError, load_script

        parsed = _parsed(script.path, script.path.stat().st_mtime_ns, load_script)
    except (ImportError, ScriptError, OSError):
        return script_id
    from web.i18n import select_locale

    return (parsed.name_en if select_locale() == "en" and parsed.name_en else parsed.name) or script_id


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


# The robot's parser (dialog.script) names problems in English, with YAML keys and step ids
# quoted; the console says them in the user's language. Keys, ids and values stay as they are
# in the file (the template shows quoted parts as code). Patterns are tried in order.
_WHERE = (
    (re.compile(r"^step '([^']+)' (no_input|no_match)$"), "step_reprompt"),
    (re.compile(r"^step '([^']+)'$"), "step"),
    (re.compile(r"^variable '([^']+)'$"), "variable"),
    (re.compile(r"^step '([^']+)': branch$"), "branch"),
)
_PROBLEMS: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), key) for p, key in (
    (r"^not valid YAML: .*$", "yaml"),
    (r"^a script is a mapping with id, name, start and steps$", "mapping"),
    (r"^duplicate key '([^']+)' \(first at line (\d+)\)$", "duplicate"),
    (r"^(?P<w>.+): unknown key '([^']+)' \(allowed: (.+)\)$", "unknown_key"),
    (r"^(?P<w>.+): missing '([^']+)'$", "missing"),
    (r"^(?P<w>.+): '([^']+)' must be non-empty text$", "empty"),
    (r"^id '([^']+)': use lower-case letters, digits and _$", "bad_id"),
    (r"^id '([^']+)' differs from the file name '([^']+)'$", "id_file"),
    (r"^start '([^']+)' is not a step$", "start"),
    (r"^(?P<w>.+): leads nowhere: .*$", "nowhere"),
    (r"^(?P<w>.+): (?:on\.\w+|branch goto|goto) .*'([^']+)'.*(?:not a step|unknown step).*$", "unknown_step"),
    (r"^handlers: (\w+) goes to unknown step '([^']+)'$", "handler_step"),
    (r"^(?P<w>.+): variable \{(\w+)\} is not declared under variables$", "undeclared"),
    (r"^(?P<w>.+): expect must be one of .*$", "expect"),
    (r"^steps (.+) form a loop that never listens$", "loop"),
))


def _where(text: str) -> str:
    for pattern, kind in _WHERE:
        m = pattern.match(text)
        if m:
            return _where_text(kind, m.group(1))
    return f"'{text}'"


def _where_text(kind: str, name: str) -> str:
    from flask_babel import gettext as _

    return {"step": lambda: _("step '%(id)s'", id=name),
            "step_reprompt": lambda: _("step '%(id)s' (re-prompt)", id=name),
            "variable": lambda: _("variable '%(name)s'", name=name),
            "branch": lambda: _("a branch of step '%(id)s'", id=name)}[kind]()


def explain(line: int, message: str) -> str:
    """One parser problem in the user's language: "第 3 行：步骤 'identity'：缺少 'say'"."""
    from flask_babel import gettext as _

    for pattern, kind in _PROBLEMS:
        m = pattern.match(message)
        if not m:
            continue
        w = _where(m.group("w")) if "w" in pattern.groupindex else ""
        g = [x for i, x in enumerate(m.groups(), start=1) if i != pattern.groupindex.get("w")]
        return _("Line %(line)s: %(problem)s", line=line, problem=_problem_text(kind, w, g))
    return _("Line %(line)s: the script check failed: '%(detail)s'", line=line, detail=message)


def _problem_text(kind: str, w: str, g: list[str]) -> str:
    """The message of one kind of parser problem; ``w`` names where, ``g`` the quoted parts."""
    from flask_babel import gettext as _

    return {
        "yaml": lambda: _("not valid YAML (check the indentation, colons and brackets here)"),
        "mapping": lambda: _("a script is a mapping with 'id', 'name', 'start' and 'steps'"),
        "duplicate": lambda: _("'%(key)s' appears twice (first on line %(n)s)", key=g[0], n=g[1]),
        "unknown_key": lambda: _("%(where)s: unknown key '%(key)s'", where=w, key=g[0]),
        "missing": lambda: _("%(where)s: '%(key)s' is missing", where=w, key=g[0]),
        "empty": lambda: _("%(where)s: '%(key)s' must be non-empty text", where=w, key=g[0]),
        "bad_id": lambda: _("id '%(id)s': use lower-case letters, digits and _", id=g[0]),
        "id_file": lambda: _("the id '%(id)s' differs from the file name '%(file)s'", id=g[0], file=g[1]),
        "start": lambda: _("'start' names '%(id)s', which is not a step", id=g[0]),
        "nowhere": lambda: _("%(where)s leads nowhere: add 'goto' (or 'on' for both answers, or 'branches')",
                             where=w),
        "unknown_step": lambda: _("%(where)s goes to '%(id)s', which is not a step", where=w, id=g[-1]),
        "handler_step": lambda: _("'handlers': '%(intent)s' goes to '%(id)s', which is not a step",
                                  intent=g[0], id=g[1]),
        "undeclared": lambda: _("%(where)s: the variable '%(name)s' is not declared under 'variables'",
                                where=w, name=g[0]),
        "expect": lambda: _("%(where)s: 'expect' is not a known kind of answer", where=w),
        "loop": lambda: _("steps '%(steps)s' go round in a loop without listening", steps=g[0]),
    }[kind]()


def problems_for_people(text: str, name: str) -> list[str]:
    """:func:`validate`, said in the user's language (uploads and the script page)."""
    from flask_babel import gettext as _

    script_id = Path(name).stem
    try:
        from dialog.script import ScriptError, parse_script
    except ImportError:
        return [_("Line 1: the script check failed: '%(detail)s'", detail=p) for p in _yaml_problems(text, name)]
    try:
        script = parse_script(text, name)
    except ScriptError as exc:
        return [explain(line, message) for line, message in exc.problems]
    if script.id != script_id:
        return [explain(1, f"id {script.id!r} differs from the file name {script_id!r}")]
    return []
