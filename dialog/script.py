"""Revisit scripts (话术) as data: the YAML format, loading, and validation that names the line.

A script is a YAML file (``dialog/scripts/<id>.yaml`` ships; a deployment adds or overrides
``<data dir>/scripts/<id>.yaml``). docs/scripts.md is the author's guide; in short::

    id: post_service              # = the file name
    name: 售后服务回访
    variables:                    # what the campaign fills in; every variable spoken needs a fallback
      customer: {fallback: 您}
    settings: {max_call_seconds: 240, no_input_seconds: 6, no_input_retries: 2, no_match_retries: 2}
    start: identity
    handlers: {opt_out: end_opt_out, wrong_number: end_wrong_number, ask_human: transfer,
               busy_callback: end_callback}
    steps:
      identity:
        say: "{customer}您好,我是{store}的客服……现在方便吗?"
        expect: identity          # identity | yes_no | score5 | nps | text | time | reason | none
        on: {affirm: satisfaction, deny: end_declined}
      ...
      end_thanks: {say: "感谢您的支持,再见!", end: completed}

:func:`load_script` returns a :class:`Script` or raises :class:`ScriptError` listing every problem
with its line (unknown keys, steps that lead nowhere, a broken step reference, variables that are
not declared, templates with stray braces, loops that can never end). Loading is pure: any thread.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialog.actions import CallOutcome
from dialog.datasets import CATEGORY_CODES, INTENT_CODES

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EXPECT_CONTEXT: dict[str, str | None] = {
    "identity": "id", "yes_no": "yn", "score5": "sat", "nps": "nps", "text": "open", "time": "book",
    "reason": "reason", "none": None,
}
ACTIONS = ("callback", "do_not_call", "transfer", "hangup")
VARIABLE_KINDS = ("text", "date", "digits")
ZH_NUMBERS = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十")
# Variables the engine derives from others (the campaign passes surname + title).
DERIVED = {"customer": ("surname", "title")}

# Prompts every script has; a script may override any of them under ``prompts``.
# Re-prompts differ from the question and from each other, as a person asking again would: silence
# gets "are you still there?", then "can you hear me?"; an answer that was heard but not understood
# gets the answer's form ("您直接说一到五分就可以"), then the keypad as a way out.
DEFAULT_PROMPTS: dict[str, str] = {
    "no_input": "您好,您还在听吗?",
    "no_input_again": "喂,您好,请问能听到我说话吗?",
    "no_match": "不好意思,我没有听清楚,麻烦您再说一遍。",
    "no_match_again": "不好意思,还是没有听清楚,您简单说一下就可以。",
    "no_match_score5": "不好意思,刚才没听清。您直接说一到五分就可以,五分是非常满意。",
    "no_match_score5_again": "您也可以在手机键盘上按一到五,五分是非常满意。",
    "no_match_nps": "不好意思,刚才没听清。您直接说零到十分就可以,十分是非常愿意推荐。",
    "no_match_nps_again": "您也可以在手机键盘上按零到九,十分请按星号键。",
    "no_match_yes_no": "不好意思,刚才没听清,您说是或者不是就可以。",
    "no_match_yes_no_again": "您也可以按键回答,是请按一,不是请按二。",
    "no_match_identity": "不好意思,刚才没听清。请问您现在方便接听吗?",
    "no_match_identity_again": "方便的话请按一,不方便请按二。",
    # Said before acting on an answer the robot is not sure of and that ends the call, opts out,
    # denies or opens a complaint (prompt id "<script>.<step>.confirm.<label>", see confirm_prompts).
    "confirm_declined": "跟您确认一下,您现在不方便做这个回访,对吗?",
    "confirm_wrong_number": "跟您确认一下,您不是车主本人,对吗?",
    "confirm_opt_out": "跟您确认一下,您是希望我们以后不再给您打电话,对吗?",
    "confirm_no": "跟您确认一下,您的回答是没有,对吗?",
    "confirm_complaint": "跟您确认一下,您是说有不满意的地方,对吗?",
    "confirm_misheard": "不好意思,是我听错了。",
    "goodbye_no_input": "可能信号不太好,我们稍后再联系您,再见。",
    "goodbye_timeout": "耽误您不少时间了,今天就先到这里,感谢您的支持,再见。",
    "complaint_ack": "非常抱歉给您带来不好的体验,您的意见我们已经记录,会尽快安排专人跟进处理。",
    "transfer_failed": "非常抱歉,人工客服现在都在忙,我们会尽快安排专人给您回电,再见。",
    "repeat": "好的,我再说一遍。",
}

_TOP = {"id", "name", "name_en", "version", "language", "description", "variables", "settings", "start",
        "handlers", "prompts", "steps"}
_STEP = {"say", "expect", "record", "on", "branches", "goto", "grammar", "barge_in", "no_input", "no_match",
         "timeout", "ticket", "action", "end", "note", "problem", "confirm"}
_SETTINGS = {"max_call_seconds", "no_input_seconds", "no_input_retries", "no_match_retries", "barge_in",
             "dtmf_human", "greeting_seconds", "on_machine", "callback_delay_minutes", "transfer_target"}
_VARIABLE = {"required", "fallback", "kind", "description"}


class ScriptError(ValueError):
    """A script file is not usable; ``problems`` are ``(line, message)`` pairs."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = sorted(problems)
        lines = "\n".join(f"  {path}:{line}: {msg}" for line, msg in self.problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s)\n{lines}")


# -- YAML with line numbers ------------------------------------------------------------------------
class _Map(dict):
    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class _Seq(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise _DocError(line, "mapping keys must be plain names")
        # Keys are names in this format, never booleans: YAML 1.1 would read `on:` as True.
        key = key_node.value
        if key in out:
            raise _DocError(line, f"duplicate key {key!r} (first at line {out.key_lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class _DocError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


# -- the model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variable:
    name: str
    required: bool = False
    fallback: str | None = None
    kind: str = "text"
    description: str = ""


@dataclass(frozen=True)
class Reprompt:
    retries: int
    say: str | None = None  # None: the script's default no_input / no_match prompt
    goto: str | None = None  # None: end the call politely


@dataclass(frozen=True)
class Branch:
    goto: str
    min: int | None = None
    max: int | None = None

    def matches(self, value: int) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass(frozen=True)
class Step:
    id: str
    say: str
    line: int
    expect: str = "none"
    record: str | None = None
    on: Mapping[str, str] = field(default_factory=dict)
    branches: tuple[Branch, ...] = ()
    goto: str | None = None
    grammar: tuple[str, ...] | None = None
    barge_in: bool | None = None
    no_input: Reprompt | None = None
    no_match: Reprompt | None = None
    timeout: float | None = None
    ticket: bool = False
    action: str | None = None
    end: str | None = None
    problem: str | None = None  # yes/no steps: the category a "no" (or a complaint) reports
    confirm: str | None = None  # problem steps: the sentence that restates a "no" before it opens a ticket

    @property
    def context(self) -> str | None:
        return EXPECT_CONTEXT[self.expect]

    @property
    def terminal(self) -> bool:
        return self.end is not None

    def targets(self) -> list[str]:
        out = list(self.on.values()) + [b.goto for b in self.branches]
        for extra in (self.goto, self.no_input and self.no_input.goto, self.no_match and self.no_match.goto):
            if extra:
                out.append(extra)
        return out


@dataclass(frozen=True)
class ScriptSettings:
    max_call_seconds: float = 300.0
    no_input_seconds: float = 6.0
    no_input_retries: int = 2
    no_match_retries: int = 2
    barge_in: bool = True
    dtmf_human: str | None = "0"  # the key that asks for a human; None disables it
    greeting_seconds: float = 2.5  # how long to wait for the callee's "喂" before speaking
    on_machine: str = "hangup"  # hangup | message (say the "voicemail" prompt, then hang up)
    callback_delay_minutes: int = 120  # when the customer names no time
    transfer_target: str = "agents"


@dataclass(frozen=True)
class Script:
    id: str
    name: str
    start: str
    steps: Mapping[str, Step]
    variables: Mapping[str, Variable] = field(default_factory=dict)
    settings: ScriptSettings = field(default_factory=ScriptSettings)
    handlers: Mapping[str, str] = field(default_factory=dict)
    prompts: Mapping[str, str] = field(default_factory=dict)
    name_en: str = ""
    version: int = 1
    language: str = "zh-CN"
    description: str = ""
    path: str = ""
    warnings: tuple[str, ...] = ()

    def prompt(self, name: str) -> str:
        return self.prompts.get(name) or DEFAULT_PROMPTS[name]

    def all_prompts(self) -> dict[str, str]:
        """prompt id -> template: every step's ``say`` (and re-prompts) plus the shared prompts."""
        out = {f"{self.id}.{k}": v for k, v in {**DEFAULT_PROMPTS, **self.prompts}.items()}
        for step in self.steps.values():
            out[f"{self.id}.{step.id}"] = step.say
            for name, rp in (("no_input", step.no_input), ("no_match", step.no_match)):
                if rp is not None and rp.say:
                    out[f"{self.id}.{step.id}.{name}"] = rp.say
            for label, template in self.confirm_prompts(step).items():
                out[f"{self.id}.{step.id}.confirm.{label}"] = template
        return out

    def confirm_prompts(self, step: Step) -> dict[str, str]:
        """label -> the sentence that restates that answer to ``step`` before the robot acts on it."""
        if step.expect in ("none", "time") or step.terminal:
            return {}
        out: dict[str, str] = {}
        if step.expect == "score5":
            out.update({str(n): f"跟您确认一下,您给的是{ZH_NUMBERS[n]}分,对吗?" for n in range(1, 6)})
        elif step.expect == "nps":
            out.update({str(n): f"跟您确认一下,您给的是{ZH_NUMBERS[n]}分,对吗?" for n in range(11)})
        elif step.expect == "identity":
            out["declined"] = self.prompt("confirm_declined")
        elif step.expect == "yes_no" and step.problem:
            out["no"] = step.confirm or self.prompt("confirm_no")
        elif step.expect in ("text", "reason") and step.ticket:
            out["complaint"] = self.prompt("confirm_complaint")
        if "wrong_number" in self.handlers:
            out["wrong_number"] = self.prompt("confirm_wrong_number")
        if "opt_out" in self.handlers:
            out["opt_out"] = self.prompt("confirm_opt_out")
        return out


# -- loading ---------------------------------------------------------------------------------------
def load_script(path: Path | str) -> Script:
    """Parse and validate one script file.

    Raises:
        ScriptError: every problem found, each with its line number.
        OSError: the file cannot be read.
    """
    path = Path(path)
    return parse_script(path.read_text(encoding="utf-8"), str(path))


def parse_script(text: str, source: str = "<script>") -> Script:
    try:
        doc = yaml.load(text, Loader=_Loader)
    except _DocError as exc:
        raise ScriptError(source, [(exc.line, str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ScriptError(source, [(line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(doc, _Map):
        raise ScriptError(source, [(1, "a script is a mapping with id, name, start and steps")])
    return _Builder(doc, source).build()


def shipped_scripts() -> dict[str, Script]:
    return load_scripts([SCRIPTS_DIR])


def load_scripts(directories: Iterable[Path]) -> dict[str, Script]:
    """Script id -> script from each directory in turn (later ones override earlier ones).

    Raises:
        ScriptError: the first invalid script met.
    """
    out: dict[str, Script] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                script = load_script(path)
                out[script.id] = script
    return out


class _Builder:
    def __init__(self, doc: _Map, source: str) -> None:
        self.doc = doc
        self.source = source
        self.problems: list[tuple[int, str]] = []
        self.warnings: list[str] = []
        self.ref_lines: dict[tuple[str, str], int] = {}  # (step, target) -> line of the reference

    def err(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def _unknown(self, mapping: _Map, allowed: set[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.err(mapping.line_of(key), f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def _str(self, mapping: _Map, key: str, where: str, required: bool = False) -> str | None:
        if key not in mapping or mapping[key] is None:
            if required:
                self.err(mapping.line, f"{where}: missing {key!r}")
            return None
        value = mapping[key]
        if not isinstance(value, str) or not value.strip():
            self.err(mapping.line_of(key), f"{where}: {key!r} must be non-empty text")
            return None
        return value.strip()

    def build(self) -> Script:
        d = self.doc
        self._unknown(d, _TOP, "script")
        sid = self._str(d, "id", "script", required=True) or "?"
        if sid != "?" and not ID_RE.match(sid):
            self.err(d.line_of("id"), f"id {sid!r}: use lower-case letters, digits and _")
        stem = Path(self.source).stem
        if self.source.endswith((".yaml", ".yml")) and sid not in ("?", stem):
            self.err(d.line_of("id"), f"id {sid!r} differs from the file name {stem!r}")
        name = self._str(d, "name", "script", required=True) or ""
        version = d.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self.err(d.line_of("version"), "version must be a whole number >= 1")
            version = 1
        language = d.get("language", "zh-CN")
        if language not in ("zh-CN", "en"):
            self.err(d.line_of("language"), f"language {language!r}: zh-CN or en")
        variables = self._variables(d.get("variables") or _Map())
        settings = self._settings(d.get("settings") or _Map())
        prompts = self._prompts(d.get("prompts") or _Map())
        steps = self._steps(d.get("steps"), d)
        start = self._str(d, "start", "script", required=True)
        if start and steps and start not in steps:
            self.err(d.line_of("start"), f"start {start!r} is not a step")
        handlers = self._handlers(d.get("handlers") or _Map(), steps)
        self._templates(variables, steps, prompts)
        if steps and start in steps:
            self._graph(steps, start, handlers)
        if self.problems:
            raise ScriptError(self.source, self.problems)
        return Script(id=sid, name=name, start=start, steps=steps, variables=variables, settings=settings,
                      handlers=handlers, prompts=prompts, name_en=str(d.get("name_en") or ""), version=version,
                      language=language, description=str(d.get("description") or ""), path=self.source,
                      warnings=tuple(self.warnings))

    def _variables(self, raw: Any) -> dict[str, Variable]:
        if not isinstance(raw, _Map):
            self.err(getattr(raw, "line", self.doc.line_of("variables")), "variables: a mapping of name -> spec")
            return {}
        out = {}
        for name, spec in raw.items():
            line = raw.line_of(name)
            if not isinstance(name, str) or not ID_RE.match(name):
                self.err(line, f"variable {name!r}: use lower-case letters, digits and _")
                continue
            if spec is None:
                spec = _Map()
                spec.line, spec.key_lines = line, {}
            if not isinstance(spec, _Map):
                self.err(line, f"variable {name!r}: expected a mapping (required, fallback, kind, description)")
                continue
            self._unknown(spec, _VARIABLE, f"variable {name!r}")
            kind = spec.get("kind", "text")
            if kind not in VARIABLE_KINDS:
                self.err(spec.line_of("kind"), f"variable {name!r}: kind must be one of {', '.join(VARIABLE_KINDS)}")
            fallback = spec.get("fallback")
            if fallback is not None and not isinstance(fallback, str):
                self.err(spec.line_of("fallback"), f"variable {name!r}: fallback must be text")
                fallback = None
            out[name] = Variable(name, bool(spec.get("required", False)), fallback, kind,
                                 str(spec.get("description") or ""))
        return out

    def _settings(self, raw: Any) -> ScriptSettings:
        if not isinstance(raw, _Map):
            self.err(self.doc.line_of("settings"), "settings: expected a mapping")
            return ScriptSettings()
        self._unknown(raw, _SETTINGS, "settings")
        values: dict[str, Any] = {}
        numeric = {"max_call_seconds": (30, 3600), "no_input_seconds": (1, 60), "greeting_seconds": (0, 10),
                   "no_input_retries": (0, 5), "no_match_retries": (0, 5), "callback_delay_minutes": (5, 10080)}
        for key, (lo, hi) in numeric.items():
            if key in raw:
                v = raw[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                    self.err(raw.line_of(key), f"settings: {key} must be a number from {lo} to {hi}")
                else:
                    values[key] = v
        if "barge_in" in raw:
            if not isinstance(raw["barge_in"], bool):
                self.err(raw.line_of("barge_in"), "settings: barge_in must be true or false")
            else:
                values["barge_in"] = raw["barge_in"]
        if "dtmf_human" in raw:
            v = raw["dtmf_human"]
            v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
            if v is not None and (not isinstance(v, str) or v not in "0123456789*#" or len(v) != 1):
                self.err(raw.line_of("dtmf_human"), "settings: dtmf_human is one key (0-9, * or #) or null")
            else:
                values["dtmf_human"] = v
        if "on_machine" in raw:
            if raw["on_machine"] not in ("hangup", "message"):
                self.err(raw.line_of("on_machine"), "settings: on_machine is hangup or message")
            else:
                values["on_machine"] = raw["on_machine"]
        if "transfer_target" in raw:
            if not isinstance(raw["transfer_target"], str) or not raw["transfer_target"].strip():
                self.err(raw.line_of("transfer_target"), "settings: transfer_target must be text")
            else:
                values["transfer_target"] = raw["transfer_target"].strip()
        return ScriptSettings(**values)

    def _prompts(self, raw: Any) -> dict[str, str]:
        if not isinstance(raw, _Map):
            self.err(self.doc.line_of("prompts"), "prompts: expected a mapping of name -> text")
            return {}
        out = {}
        for name, text in raw.items():
            if name not in DEFAULT_PROMPTS and name != "voicemail":
                self.err(raw.line_of(name), f"prompts: unknown prompt {name!r} "
                                            f"(known: {', '.join(sorted([*DEFAULT_PROMPTS, 'voicemail']))})")
            elif not isinstance(text, str) or not text.strip():
                self.err(raw.line_of(name), f"prompts: {name} must be non-empty text")
            else:
                out[name] = text.strip()
        return out

    def _reprompt(self, raw: Any, line: int, where: str, default_retries: int) -> Reprompt | None:
        if raw is None:
            return None
        if not isinstance(raw, _Map):
            self.err(line, f"{where}: expected a mapping with retries, say, goto")
            return None
        self._unknown(raw, {"retries", "say", "goto"}, where)
        retries = raw.get("retries", default_retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 5:
            self.err(raw.line_of("retries"), f"{where}: retries must be 0 to 5")
            retries = default_retries
        return Reprompt(retries, self._str(raw, "say", where), self._str(raw, "goto", where))

    def _confirm_text(self, spec: _Map, where: str, problem: str | None) -> str | None:
        text = self._str(spec, "confirm", where)
        if text is not None and problem is None:
            self.err(spec.line_of("confirm"), f"{where}: confirm restates a 'no' that reports a problem: "
                                              "give the step a problem too")
        return text

    def _steps(self, raw: Any, d: _Map) -> dict[str, Step]:
        if not isinstance(raw, _Map) or not raw:
            self.err(d.line_of("steps") if "steps" in d else d.line, "steps: expected a non-empty mapping")
            return {}
        out = {}
        for sid, spec in raw.items():
            line = raw.line_of(sid)
            where = f"step {sid!r}"
            if not isinstance(sid, str) or not ID_RE.match(sid):
                self.err(line, f"step id {sid!r}: use lower-case letters, digits and _")
                continue
            if not isinstance(spec, _Map):
                self.err(line, f"{where}: expected a mapping")
                continue
            self._unknown(spec, _STEP, where)
            say = self._str(spec, "say", where, required=True) or ""
            expect = spec.get("expect", "none")
            if expect not in EXPECT_CONTEXT:
                self.err(spec.line_of("expect"), f"{where}: expect must be one of {', '.join(EXPECT_CONTEXT)}")
                expect = "none"
            on = spec.get("on") or _Map()
            on_map: dict[str, str] = {}
            if not isinstance(on, _Map):
                self.err(spec.line_of("on"), f"{where}: on: expected intent -> step")
            else:
                for intent, target in on.items():
                    if intent not in INTENT_CODES:
                        self.err(on.line_of(intent), f"{where}: on: {intent!r} is not an intent "
                                                     f"({', '.join(INTENT_CODES)})")
                    elif not isinstance(target, str):
                        self.err(on.line_of(intent), f"{where}: on.{intent}: expected a step id")
                    else:
                        on_map[intent] = target
                        self.ref_lines.setdefault((sid, target), on.line_of(intent))
            branches = self._branches(spec, where, expect)
            grammar = spec.get("grammar")
            if grammar is not None:
                if not isinstance(grammar, list) or not grammar or not all(isinstance(g, str) and g.strip()
                                                                           for g in grammar):
                    self.err(spec.line_of("grammar"), f"{where}: grammar must be a list of phrases")
                    grammar = None
                else:
                    grammar = tuple(g.strip() for g in grammar)
            barge = spec.get("barge_in")
            if barge is not None and not isinstance(barge, bool):
                self.err(spec.line_of("barge_in"), f"{where}: barge_in must be true or false")
                barge = None
            timeout = spec.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                        or not 1 <= timeout <= 60):
                self.err(spec.line_of("timeout"), f"{where}: timeout must be 1 to 60 seconds")
                timeout = None
            action = spec.get("action")
            if action is not None and action not in ACTIONS:
                self.err(spec.line_of("action"), f"{where}: action must be one of {', '.join(ACTIONS)}")
                action = None
            end = spec.get("end")
            if end is not None and end not in {o.value for o in CallOutcome}:
                self.err(spec.line_of("end"), f"{where}: end must be an outcome "
                                              f"({', '.join(o.value for o in CallOutcome)})")
                end = None
            record = spec.get("record")
            if record is not None and (not isinstance(record, str) or not ID_RE.match(record)):
                self.err(spec.line_of("record"), f"{where}: record must be a name (lower-case, digits, _)")
                record = None
            ticket = spec.get("ticket", False)
            if not isinstance(ticket, bool):
                self.err(spec.line_of("ticket"), f"{where}: ticket must be true or false")
                ticket = False
            goto = self._str(spec, "goto", where)
            if goto:
                self.ref_lines.setdefault((sid, goto), spec.line_of("goto"))
            for key in ("no_input", "no_match", "branches"):
                if key in spec:
                    raw_ref = spec[key]
                    items = raw_ref if isinstance(raw_ref, list) else [raw_ref]
                    for item in items:
                        if isinstance(item, _Map) and isinstance(item.get("goto"), str):
                            self.ref_lines.setdefault((sid, item["goto"]), item.line_of("goto"))
            problem = spec.get("problem")
            if problem is not None and (problem not in CATEGORY_CODES or problem == "praise"):
                self.err(spec.line_of("problem"), f"{where}: problem must be a category code "
                                                  f"({', '.join(c for c in CATEGORY_CODES if c != 'praise')})")
                problem = None
            elif problem is not None and expect not in ("yes_no", "identity"):
                self.err(spec.line_of("problem"), f"{where}: problem is for yes_no questions")
                problem = None
            step = Step(id=sid, say=say, line=line, expect=expect, record=record, on=on_map, branches=branches,
                        goto=goto, grammar=grammar, barge_in=barge,
                        no_input=self._reprompt(spec.get("no_input"), spec.line_of("no_input"),
                                                f"{where}: no_input", 2),
                        no_match=self._reprompt(spec.get("no_match"), spec.line_of("no_match"),
                                                f"{where}: no_match", 2),
                        timeout=timeout, ticket=ticket, action=action, end=end, problem=problem,
                        confirm=self._confirm_text(spec, where, problem))
            self._step_shape(step, spec, where)
            out[sid] = step
        return out

    def _branches(self, spec: _Map, where: str, expect: str) -> tuple[Branch, ...]:
        raw = spec.get("branches")
        if raw is None:
            return ()
        if expect not in ("score5", "nps"):
            self.err(spec.line_of("branches"), f"{where}: branches are for expect: score5 or nps")
            return ()
        if not isinstance(raw, list) or not raw:
            self.err(spec.line_of("branches"), f"{where}: branches: a list of {{min, max, goto}}")
            return ()
        out = []
        lo_scale, hi_scale = (1, 5) if expect == "score5" else (0, 10)
        for item in raw:
            line = getattr(item, "line", spec.line_of("branches"))
            if not isinstance(item, _Map) or "goto" not in item:
                self.err(line, f"{where}: each branch needs goto (and min and/or max)")
                continue
            self._unknown(item, {"min", "max", "goto"}, f"{where}: branch")
            bounds = []
            for key in ("min", "max"):
                v = item.get(key)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo_scale <= v <= hi_scale):
                    self.err(item.line_of(key), f"{where}: branch {key} must be {lo_scale} to {hi_scale}")
                    v = None
                bounds.append(v)
            if not isinstance(item["goto"], str):
                self.err(item.line_of("goto"), f"{where}: branch goto must be a step id")
                continue
            out.append(Branch(item["goto"], bounds[0], bounds[1]))
        uncovered = [v for v in range(lo_scale, hi_scale + 1) if not any(b.matches(v) for b in out)]
        if out and uncovered and not spec.get("goto"):
            self.err(spec.line_of("branches"), f"{where}: no branch for score(s) {uncovered} and no goto")
        return tuple(out)

    def _step_shape(self, step: Step, spec: _Map, where: str) -> None:
        if step.terminal:
            for key in ("goto", "on", "branches"):
                if key in spec:
                    self.err(spec.line_of(key), f"{where}: a step with end: has no {key}")
            if step.expect != "none":
                self.err(spec.line_of("expect"), f"{where}: a step with end: expects no answer")
            return
        if step.action in ("callback", "do_not_call", "transfer", "hangup"):
            self.err(spec.line_of("action"), f"{where}: action {step.action} ends the call: add end: <outcome>")
        forward = step.goto or step.branches or (
            step.expect in ("identity", "yes_no", "time") and {"affirm", "deny"} <= set(step.on))
        if not forward:
            self.err(step.line, f"{where}: leads nowhere: add goto (or on: affirm and deny, or branches)")

    def _handlers(self, raw: Any, steps: Mapping[str, Step]) -> dict[str, str]:
        if not isinstance(raw, _Map):
            self.err(self.doc.line_of("handlers"), "handlers: expected intent -> step")
            return {}
        out = {}
        for intent, target in raw.items():
            line = raw.line_of(intent)
            if intent not in INTENT_CODES:
                self.err(line, f"handlers: {intent!r} is not an intent ({', '.join(INTENT_CODES)})")
            elif not isinstance(target, str) or target not in steps:
                self.err(line, f"handlers: {intent} goes to unknown step {target!r}")
            else:
                out[intent] = target
        return out

    def _templates(self, variables: Mapping[str, Variable], steps: Mapping[str, Step],
                   prompts: Mapping[str, str]) -> None:
        known = set(variables) | set(DERIVED)
        texts = [(s.line, f"step {s.id!r}", s.say) for s in steps.values()]
        texts += [(s.line, f"step {s.id!r} {k}", rp.say) for s in steps.values()
                  for k, rp in (("no_input", s.no_input), ("no_match", s.no_match)) if rp and rp.say]
        texts += [(self.doc.get("prompts").line_of(k) if isinstance(self.doc.get("prompts"), _Map) else 1,
                   f"prompt {k!r}", v) for k, v in prompts.items()]
        for line, where, text in texts:
            try:
                fields = [f for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
                bad = [f for _, f, spec, conv in string.Formatter().parse(text) if f is not None and (spec or conv)]
            except ValueError as exc:
                self.err(line, f"{where}: broken template ({exc}); write {{{{ and }}}} for literal braces")
                continue
            if bad:
                self.err(line, f"{where}: {{{bad[0]}}}: format specs and conversions are not supported")
            for f in fields:
                if f not in known:
                    self.err(line, f"{where}: variable {{{f}}} is not declared under variables")
                elif f in variables and variables[f].fallback is None and not variables[f].required:
                    self.err(line, f"{where}: optional variable {{{f}}} is spoken: give it a fallback")

    def _graph(self, steps: Mapping[str, Step], start: str, handlers: Mapping[str, str]) -> None:
        for step in steps.values():
            for target in step.targets():
                if target not in steps:
                    self.err(self.ref_lines.get((step.id, target), step.line),
                             f"step {step.id!r} goes to unknown step {target!r}")
        if not any(s.terminal for s in steps.values()):
            self.err(self.doc.line_of("steps"), "no step ends the call: add a step with end: completed")
        # Statements (expect: none) chained by goto in a circle would talk forever without listening.
        for sid, step in steps.items():
            seen = []
            cur = step
            while cur is not None and cur.expect == "none" and not cur.terminal and cur.id not in seen:
                seen.append(cur.id)
                cur = steps.get(cur.goto) if cur.goto else None
            if cur is not None and cur.id in seen and cur.id == sid:
                self.err(step.line, f"steps {' -> '.join(seen + [sid])} form a loop that never listens")
        reachable = {start, *handlers.values()}
        frontier = list(reachable)
        while frontier:
            for t in steps[frontier.pop()].targets():
                if t in steps and t not in reachable:
                    reachable.add(t)
                    frontier.append(t)
        self.warnings = [f"line {steps[s].line}: step {s!r} is never reached" for s in steps if s not in reachable]
