"""话术 editing in the browser, for supervisors: a script's steps (what the robot says, what answer
it expects, where each answer goes) as a form; which fragments have prompt audio and which are
said with a fallback; a step's prompt played as the customer hears it; versions.

Saving checks the edit in Chinese, naming the step ("第3步「您对这次……」: ..."), then with
the robot's own parser (:func:`dialog.script.parse_script`), and stores nothing unless both
pass. A saved edit is written to ``<data dir>/scripts/<id>.yaml`` (where uploads go, so the
robot and new campaigns use it) and kept as a new row of ``script_versions``; a campaign
records the version it was created with (:func:`version_for_campaign`) and its calls keep
using that text. New sentences without audio are rendered on the console's job thread when the
render tool is installed; until then the page marks them. The YAML is rewritten from its data:
comments in an edited script are not kept (the version history keeps every text). Runs on the
request's worker thread.
"""

from __future__ import annotations

import hashlib
import io
import re
import string
import wave
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml
from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.domain import Intent, Role
from callcenter.storage.models import Campaign, CampaignStatus, ScriptVersion, Store, utcnow
from callcenter.storage.web_models import ConsoleJob
from web import audit, jobs, scripts
from web.labels import label
from web.security import current_user, refuse, require, scoped_store_id
from web.services import db, settings
from web.stores import STORE_FALLBACK, library, pending_renders, render_available

bp = Blueprint("script_editor", __name__, url_prefix="/scripts")

RENDER_KIND = "render_audio"
# What each kind of answer means, for the step form.
EXPECT_KINDS = ("identity", "yes_no", "score5", "nps", "text", "time", "reason", "none")
# Intents a step's "on" may route, in the order the form shows them.
ROUTED_INTENTS = ("affirm", "deny", "complaint", "question", "busy_callback", "unclear")
MAX_SAY = 500
# libyaml's loader where PyYAML has it: the pure-Python one took 40 ms for a 20-step script.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LATIN = re.compile(r"[A-Za-z]")


def expect_labels() -> dict[str, str]:
    return {
        "identity": _("Identity (是我 / 不是)"), "yes_no": _("Yes or no"), "score5": _("A score from 1 to 5"),
        "nps": _("A score from 0 to 10"), "text": _("Free feedback"), "time": _("A time or date"),
        "reason": _("A reason"), "none": _("Nothing: a statement, the robot goes on"),
    }


@dataclass
class StepView:
    id: str
    number: int
    say: str
    expect: str
    on: dict[str, str]
    goto: str | None
    branches: list[dict]
    end: str | None

    @property
    def title(self) -> str:
        # Variables are left out of the title: {customer} is no word a reader should see.
        excerpt = re.sub(r"\{\w*\}?", "", self.say).strip(" ,，。")
        excerpt = excerpt if len(excerpt) <= 14 else excerpt[:14] + "……"
        return _("Step %(n)s 「%(text)s」", n=self.number, text=excerpt)


def script_or_404(script_id: str) -> scripts.ScriptFile:
    found = scripts.find(script_id)
    if found is None:
        abort(404)
    return found


def _load(found: scripts.ScriptFile) -> tuple[str, dict]:
    text = found.path.read_text(encoding="utf-8")
    data = yaml.load(text, Loader=_SafeLoader)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        abort(409, description=_("This script cannot be edited in the browser: it has no steps."))
    # YAML 1.1 reads an ``on:`` key as True; the dialog parser reads keys as names.
    for step in data["steps"].values():
        if isinstance(step, dict) and True in step:
            step["on"] = step.pop(True)
    return text, data


def steps_of(data: dict) -> list[StepView]:
    out = []
    for n, (sid, step) in enumerate(data["steps"].items(), start=1):
        step = step if isinstance(step, dict) else {}
        out.append(StepView(
            id=str(sid), number=n, say=str(step.get("say") or ""), expect=str(step.get("expect") or "none"),
            on={str(k): str(v) for k, v in (step.get("on") or {}).items()}, goto=step.get("goto"),
            branches=[dict(b) for b in step.get("branches") or [] if isinstance(b, dict)], end=step.get("end"),
        ))
    return out


def sample_values() -> dict[str, str]:
    """What a prompt is filled with for listening: a common customer and the viewer's store."""
    store_id = scoped_store_id()
    query = sa.select(Store.name).order_by(Store.code).limit(1)
    if store_id is not None:
        query = sa.select(Store.name).where(Store.id == store_id)
    # "customer" too: the scripts greet {customer}, which the dialer composes from surname and title.
    return {"surname": "王", "title": "先生", "customer": "王先生", "store": db().scalar(query) or "",
            "visit_date": utcnow().date().isoformat()}


def fragments_of(template: str, variables, lib, values: dict[str, str]) -> list[dict]:
    """The prompt's pieces as the robot assembles them: ``{"text", "status"}`` with status ``ok``
    (has audio), ``fallback`` (a value without audio, said as the variable's fallback) or
    ``missing`` (fixed text with no audio: the call cannot play it)."""
    from dialog.prompts import render

    out: list[dict] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:  # unpaired braces: the form names the problem; show the text as one piece
        return [{"text": template, "status": "ok" if lib.has(template) else "missing"}]
    for literal, name, _spec, _conv in parts:
        if literal:
            text = literal.replace("{{", "{").replace("}}", "}")
            out.append({"text": text, "status": "ok" if lib.has(text) else "missing"})
        if name is None:
            continue
        with_audio = render("{" + name + "}", values, variables, lib)[1]
        without = render("{" + name + "}", values, variables, None)[1]
        for piece in with_audio:
            status = "ok" if lib.has(piece) else "missing"
            if with_audio != without:
                status = "fallback" if lib.has(piece) else "missing"
            out.append({"text": piece, "status": status})
    return out


def _parsed_variables(text: str, name: str, found: scripts.ScriptFile | None = None):
    """The script's variables; the installed file's parse is kept per file version (web.scripts)."""
    from dialog.script import ScriptError, load_script, parse_script

    try:
        if found is not None and found.path.read_text(encoding="utf-8") == text:
            return scripts._parsed(found.path, found.path.stat().st_mtime_ns, load_script).variables
        return parse_script(text, name).variables
    except (ScriptError, OSError):
        return {}


@bp.get("/")
@require(Role.SUPERVISOR)
def index():
    lib = library()
    rows = []
    latest = dict(db().execute(sa.select(ScriptVersion.script_id, sa.func.max(ScriptVersion.version))
                               .group_by(ScriptVersion.script_id)).all())
    from dialog.prompts import fixed_fragments
    from dialog.script import ScriptError, load_script

    for found in scripts.list_scripts():
        try:
            # Parsed once per file version (web.scripts keeps them): ~10 ms each otherwise.
            parsed = scripts._parsed(found.path, found.path.stat().st_mtime_ns, load_script)
            missing = len(lib.missing(fixed_fragments(parsed)))
            rows.append((found, parsed.name, missing, latest.get(found.id)))
        except (ScriptError, OSError):
            rows.append((found, None, None, latest.get(found.id)))
    return render_template("scripts/index.html", rows=rows)


@bp.route("/<script_id>/edit", methods=["GET", "POST"])
@require(Role.SUPERVISOR)
def edit(script_id: str):
    found = script_or_404(script_id)
    text, data = _load(found)
    problems: list[str] = []
    field_errors: dict[str, str] = {}
    if request.method == "POST":
        if scoped_store_id() is not None:  # one script serves every store: a store's staff cannot change it
            refuse(403, _("Scripts are shared by every store: only a group-wide supervisor or administrator "
                          "can change them."))
        new_data, field_errors = apply_form(data, request.form)
        new_text = yaml.safe_dump(new_data, allow_unicode=True, sort_keys=False, width=1000)
        if not field_errors:
            problems = parser_problems(new_text, script_id, steps_of(new_data))
        if not field_errors and not problems:
            version = save_version(script_id, text, new_text, (request.form.get("note") or "").strip()[:200])
            audit.record("script.edit", "script", script_id, version=version.version)
            save_together(found, text, new_text)
            job = render_script_audio(new_text, script_id)
            message = _("Script saved as version %(v)s. Running campaigns keep the version they started with.",
                        v=version.version)
            if job is not None:
                message += " " + _("New sentences are being rendered.")
            flash(message, "success")
            return redirect(url_for("script_editor.edit", script_id=script_id))
        data = new_data
        text = new_text
    return _edit_page(found, text, data, problems, field_errors), 400 if (problems or field_errors) else 200


def _edit_page(found, text: str, data: dict, problems: list[str], field_errors: dict[str, str]):
    lib = library()
    variables = _parsed_variables(text, f"{found.id}.yaml", found)
    values = sample_values()
    steps = steps_of(data)
    for step in steps:
        step.fragments = fragments_of(step.say, variables, lib, values)  # type: ignore[attr-defined]
    missing = sum(1 for st in steps for f in st.fragments if f["status"] == "missing")  # type: ignore[attr-defined]
    versions = list(db().scalars(sa.select(ScriptVersion).where(ScriptVersion.script_id == found.id)
                                 .order_by(ScriptVersion.version.desc()).limit(20)))
    campaigns = list(db().execute(
        sa.select(Campaign.id, Campaign.name, Campaign.status, ScriptVersion.version)
        .join(ScriptVersion, ScriptVersion.id == Campaign.script_version_id)
        .where(Campaign.script == found.id, Campaign.status.in_([CampaignStatus.RUNNING, CampaignStatus.PAUSED,
                                                                  CampaignStatus.DRAFT]))
        .order_by(Campaign.id.desc()).limit(20)))
    return render_template(
        "scripts/edit.html", script=found, name=data.get("name") or found.id, steps=steps, problems=problems,
        step_choices=[(st.id, st.title) for st in steps],
        field_errors=field_errors, expect_labels=expect_labels(),
        intent_labels={i: label(Intent(i)) for i in ROUTED_INTENTS}, missing=missing,
        can_render=render_available(), rendering=bool(pending_renders()), versions=versions, campaigns=campaigns,
        sample=values, fallback=STORE_FALLBACK, can_save=scoped_store_id() is None,
    )


def apply_form(data: dict, form) -> tuple[dict, dict[str, str]]:
    """The script with the form's step edits applied, and a Chinese message per wrong field
    (``<step id>.<field>``), each naming the step."""
    import copy

    new = copy.deepcopy(data)
    steps = steps_of(data)
    ids = {st.id for st in steps}
    titles = {st.id: st.title for st in steps}
    variables = set((new.get("variables") or {}).keys()) | {"customer"}
    errors: dict[str, str] = {}
    for st in steps:
        raw = new["steps"][st.id]
        prefix = f"{st.id}."
        if prefix + "say" not in form:
            continue  # a step the form did not show (never happens from the page; keep it)
        say = (form.get(prefix + "say") or "").strip()
        if not say:
            errors[prefix + "say"] = _("%(step)s: write what the robot says.", step=titles[st.id])
        elif len(say) > MAX_SAY:
            errors[prefix + "say"] = _("%(step)s: at most %(n)s characters.", step=titles[st.id], n=MAX_SAY)
        elif _template_names(say) is None:
            errors[prefix + "say"] = _("%(step)s: a { or } without its pair; variables are written {store}.",
                                       step=titles[st.id])
        elif _odd_placeholder(say):
            # {} or {store!r}: the robot's parser refuses them, in English.
            errors[prefix + "say"] = _("%(step)s: write a variable's name between the braces, e.g. {store}.",
                                       step=titles[st.id])
        elif _LATIN.search(re.sub(r"\{\w+\}", "", say)):
            errors[prefix + "say"] = _("%(step)s: write numbers and words in Chinese; the robot cannot say Latin "
                                       "letters.", step=titles[st.id])
        else:
            unknown = sorted(n for n in _template_names(say) if n not in variables)
            if unknown:
                errors[prefix + "say"] = _("%(step)s: unknown variable %(names)s (known: %(known)s).",
                                           step=titles[st.id], names="、".join(unknown),
                                           known="、".join(sorted(variables)))
        raw["say"] = say
        expect = form.get(prefix + "expect", st.expect)
        if expect not in EXPECT_KINDS:
            errors[prefix + "expect"] = _("%(step)s: choose what answer the step expects.", step=titles[st.id])
        elif not st.end:
            raw["expect"] = expect
        on = {}
        for intent in ROUTED_INTENTS:
            key = f"{prefix}on.{intent}"
            # A route the form did not show (the page shows yes, no and those the step has) stays.
            target = (form.get(key) or "").strip() if key in form else st.on.get(intent, "")
            if target:
                if target not in ids:
                    errors[f"{prefix}on.{intent}"] = _("%(step)s: the answer goes to a step that does not exist.",
                                                       step=titles[st.id])
                on[intent] = target
        if on:
            raw["on"] = on
        else:
            raw.pop("on", None)
        if prefix + "goto" in form:
            goto = (form.get(prefix + "goto") or "").strip()
            if goto and goto not in ids:
                errors[prefix + "goto"] = _("%(step)s: the next step does not exist.", step=titles[st.id])
            if goto:
                raw["goto"] = goto
            else:
                raw.pop("goto", None)
        for i, branch in enumerate(raw.get("branches") or []):
            target = form.get(f"{prefix}branch.{i}")
            if target is not None:
                if target not in ids:
                    errors[f"{prefix}branch.{i}"] = _("%(step)s: the score range goes to a step that does not exist.",
                                                      step=titles[st.id])
                branch["goto"] = target
        if not st.end and expect in ("identity", "yes_no", "time") and not raw.get("goto") \
                and not raw.get("branches") and not (on.get("affirm") and on.get("deny")):
            errors.setdefault(prefix + "on.affirm", _("%(step)s: say where a yes and where a no goes (or choose a "
                                                      "next step).", step=titles[st.id]))
        if not st.end and expect == "none" and not raw.get("goto"):
            errors.setdefault(prefix + "goto", _("%(step)s: a statement needs the step that follows it.",
                                                 step=titles[st.id]))
    return new, errors


def _odd_placeholder(template: str) -> bool:
    """A placeholder that is no plain variable name: ``{}``, ``{0}``, ``{a.b}``, ``{store:>5}``, ``{x!r}``."""
    return any(name is not None and (not re.fullmatch(r"[A-Za-z_]\w*", name) or spec or conv)
               for _lit, name, spec, conv in string.Formatter().parse(template))


def _template_names(template: str) -> set[str] | None:
    try:
        return {name for _lit, name, _s, _c in string.Formatter().parse(template) if name}
    except ValueError:
        return None


# The robot parser's messages name steps by id ("step 'identity' ..."); shown with the step's title.
_STEP_REF = re.compile(r"step '([a-z0-9_]+)'")


def _parser_messages(titles: dict[str, str]) -> tuple[tuple[re.Pattern, object], ...]:
    """The robot parser's problems that a form edit can cause, in the reader's language."""
    def chain(m):
        return " → ".join(titles.get(sid, sid) for sid in m.group(1).split(" -> "))

    return (
        (re.compile(r"branches are for expect"), lambda m: _("score ranges only work when the answer is a score")),
        (re.compile(r"no branch for score\(s\) (.+) and no goto"),
         lambda m: _("no score range covers %(scores)s and there is no next step", scores=m.group(1))),
        (re.compile(r"problem is for yes_no questions"),
         lambda m: _("the problem a 'no' reports needs a yes-or-no question")),
        (re.compile(r"leads nowhere"), lambda m: _("the step leads nowhere: choose where the answers go")),
        (re.compile(r"steps (.+) form a loop that never listens"),
         lambda m: _("these steps talk in a circle without a question: %(steps)s", steps=chain(m))),
        (re.compile(r"optional variable \{(\w+)\} is spoken: give it a fallback"),
         lambda m: _("the value {%(name)s} may be missing and has nothing to say instead", name=m.group(1))),
        (re.compile(r"goes to unknown step"), lambda m: _("it goes to a step that does not exist")),
        (re.compile(r"variable \{(.*)\} is not declared"),
         lambda m: _("the variable {%(name)s} is not one of the script's", name=m.group(1))),
        (re.compile(r"format specs and conversions|broken template"),
         lambda m: _("a variable is written as its name between braces, e.g. {store}")),
    )


def parser_problems(text: str, script_id: str, steps: list[StepView]) -> list[str]:
    """What the robot's parser still finds wrong, each prefixed with the step it names."""
    titles = {st.id: st.title for st in steps}
    known = _parser_messages(titles)
    out = []
    for problem in scripts.validate(text, f"{script_id}.yaml"):
        match = _STEP_REF.search(problem)
        where = titles.get(match.group(1)) if match else None
        detail = problem.split(": ", 2)[-1]
        said = next((say(m) for pattern, say in known if (m := pattern.search(detail))), None)
        if said is not None:
            out.append(_("%(step)s: %(problem)s", step=where, problem=said) if where else said)
        else:
            out.append(_("%(step)s: the script check failed: %(detail)s", step=where, detail=detail) if where
                       else _("The script check failed: %(detail)s", detail=detail))
    return out


# -- versions ------------------------------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _latest(script_id: str) -> ScriptVersion | None:
    return db().scalar(sa.select(ScriptVersion).where(ScriptVersion.script_id == script_id)
                       .order_by(ScriptVersion.version.desc()).limit(1))


def _add_version(script_id: str, text: str, note: str | None) -> ScriptVersion:
    latest = _latest(script_id)
    user = current_user()
    row = ScriptVersion(script_id=script_id, version=(latest.version + 1) if latest else 1, text=text,
                        sha256=_sha(text), note=note, created_by=user.id if user else None)
    db().add(row)
    db().flush()
    return row


def save_version(script_id: str, old_text: str, new_text: str, note: str) -> ScriptVersion:
    """Keep the text before the edit (if no version has it yet) and the edit as the next version."""
    latest = _latest(script_id)
    if latest is None or latest.sha256 != _sha(old_text):
        _add_version(script_id, old_text, _("as installed before the edit"))
    return _add_version(script_id, new_text, note or None)


def save_together(found: scripts.ScriptFile, old_text: str, new_text: str) -> None:
    """Write the file and commit the version rows as one: if the commit fails, the file is put
    back as it was (an upload restored, a new override removed), so neither is saved alone."""
    target = scripts.save_upload(found.id, new_text)
    try:
        db().commit()
    except Exception:
        db().rollback()
        if found.source == "uploaded":
            scripts.save_upload(found.id, old_text)
        else:
            target.unlink(missing_ok=True)
        raise


def version_for_campaign(script_id: str) -> int | None:
    """The version a new campaign calls with: the installed text, stored as a version if no
    version has it yet (so a later edit cannot change the campaign). None: unknown script."""
    found = scripts.find(script_id)
    if found is None:
        return None
    text = found.path.read_text(encoding="utf-8")
    latest = _latest(script_id)
    if latest is not None and latest.sha256 == _sha(text):
        return latest.id
    return _add_version(script_id, text, _("as installed when a campaign was created")).id


@bp.get("/<script_id>/versions/<int:version>")
@require(Role.SUPERVISOR)
def show_version(script_id: str, version: int):
    row = db().scalar(sa.select(ScriptVersion).where(ScriptVersion.script_id == script_id,
                                                     ScriptVersion.version == version))
    if row is None:
        abort(404)
    return render_template("scripts/version.html", row=row)


# -- audio ---------------------------------------------------------------------------------------


@bp.get("/<script_id>/steps/<step_id>/audio.wav")
@require(Role.SUPERVISOR)
def step_audio(script_id: str, step_id: str):
    """The step's prompt as the customer hears it (8 kHz telephone audio), with a sample
    customer and the viewer's store; pieces without audio are left out (the page marks them)."""
    found = script_or_404(script_id)
    text, data = _load(found)
    step = next((st for st in steps_of(data) if st.id == step_id), None)
    if step is None:
        abort(404)
    lib = library()
    pieces = [f["text"] for f in fragments_of(step.say, _parsed_variables(text, f"{found.id}.yaml", found), lib,
                                              sample_values()) if f["status"] != "missing"]
    pcm = lib.pcm(pieces, 8000) if pieces else b""
    if not pcm:
        abort(404, description=_("This step has no rendered audio yet."))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return Response(out.getvalue(), mimetype="audio/wav")


def render_script_audio(text: str, script_id: str):
    """Queue rendering of the script's fixed sentences that have no audio (render tool installed)."""
    from dialog.prompts import fixed_fragments
    from dialog.script import ScriptError, parse_script

    if not render_available():
        return None
    try:
        missing = library().missing(fixed_fragments(parse_script(text, f"{script_id}.yaml")))
    except ScriptError:
        return None
    if not missing:
        return None
    from web.stores import render_job

    user = current_user()
    job = ConsoleJob(kind=RENDER_KIND, target=f"script:{script_id}"[:200], created_by=user.id,
                     username=user.username, store_id=scoped_store_id())
    db().add(job)
    db().commit()
    folder = Path(settings().data_dir)
    jobs.submit(job.id, lambda _db, _id, _progress: render_job(missing, folder))
    return job
