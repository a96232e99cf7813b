"""ASR benchmark: accuracy, speed and concurrency of the Whisper and Vosk engines.

``python -m bench asr [--quick]``. Figures (docs/benchmarks.md quotes them):

* ``whisper``: CER, sentence error rate and RTF of the shipped configuration on the evaluation set
  (bench/data/asr, 176 telephone-band utterances), with CER per category.
* ``levers``: CER and RTF as each piece of domain work is switched on, cumulatively, on every third
  utterance (59): stock faster-whisper ``transcribe()``, our pipeline with stock settings, then
  short encoder context, domain prompt + hotwords, lexicon correction, n-best LM rescoring,
  telephone-band feature extension.
* ``overhead``: ``transcribe_file`` against the library called directly on the same files.
* ``vosk``: streaming RTF (20 ms frames, partials on) in free and grammar mode, Korean model.
* ``concurrency``: 1/2/4/8/16 streams fed in real time through :class:`asr.service.TranscriptionService`,
  latency from end of speech to the final event (p50/p95/max): Whisper on Mandarin clips, Vosk
  (Korean model) in grammar mode and in free mode on Korean clips.

The machine's load average is recorded before and after each part: the machine is shared.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "bench" / "data" / "asr" / "manifest.jsonl"
KOREAN = ROOT / "tests" / "data" / "asr" / "ko"
MODELS = Path(os.environ.get("CALLCENTER_BENCH_MODELS_DIR", ROOT / "var" / "models"))


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def speech_end(samples: np.ndarray, rate: int) -> float:
    """Seconds of the last 20 ms window louder than -40 dBFS: where the speaker stopped."""
    win = rate // 50
    n = samples.size // win
    rms = np.sqrt(np.mean(samples[: n * win].reshape(n, win) ** 2, axis=1))
    loud = np.nonzero(rms > 10 ** (-40 / 20))[0]
    return float((loud[-1] + 1) * win / rate) if loud.size else 0.0


# -- Whisper accuracy ----------------------------------------------------------------------------


def whisper_accuracy(engine, rows_limit: int | None) -> dict:
    from asr.transcribe import evaluate

    before = load()
    report = evaluate(engine, EVAL, limit=rows_limit)
    rows = {json.loads(line)["file"]: json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines()}
    by_cat: dict[str, list[int]] = {}
    for item in report.items:
        cat = rows[item.file]["category"]
        acc = by_cat.setdefault(cat, [0, 0])
        acc[0] += item.errors
        acc[1] += item.length
    out = report.as_dict(worst=10)
    out["cer_by_category"] = {k: round(e / n, 4) for k, (e, n) in sorted(by_cat.items())}
    out["load_before"], out["load_after"] = before, load()
    return out


def _subset_manifest(tmp: Path, step: int) -> Path:
    lines = EVAL.read_text(encoding="utf-8").splitlines()[::step]
    out = tmp / f"subset{step}.jsonl"
    out.write_text("".join(json.dumps({**json.loads(x), "file": str(EVAL.parent / json.loads(x)["file"])},
                                      ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return out


def library_baseline(manifest: Path, model_dir: Path, threads: int) -> dict:
    """Stock faster-whisper: WhisperModel.transcribe on each file, no domain work."""
    from faster_whisper import WhisperModel

    from asr.audio import load_mono
    from asr.textnorm import char_errors

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
    errors = chars = 0
    seconds = audio = 0.0
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        samples, _ = load_mono(row["file"], 16000)
        started = time.perf_counter()
        segments, _ = model.transcribe(samples, language="zh", beam_size=5)
        text = "".join(s.text for s in segments)
        seconds += time.perf_counter() - started
        audio += samples.size / 16000
        e, n = char_errors(row["text"], text)
        errors, chars = errors + e, chars + n
    return {"cer": round(errors / chars, 4), "rtf": round(seconds / audio, 4)}


def levers(tmp: Path, threads: int) -> list[dict]:
    from asr.transcribe import evaluate
    from asr.whisper_engine import WhisperEngine, WhisperOptions

    manifest = _subset_manifest(tmp, 3)
    steps = [("stock faster-whisper transcribe()", None)]
    base = WhisperOptions(cpu_threads=threads)
    plain = replace(base, prompt=None, hotwords=None, context_margin=None, lexicon=False, lm_weight=0.0,
                    band_extension=False)
    steps += [
        ("our pipeline, stock settings (VAD, 30 s context)", plain),
        ("+ encoder context = utterance length", replace(plain, context_margin=base.context_margin)),
        ("+ domain prompt and hotwords", replace(plain, context_margin=base.context_margin, prompt=base.prompt,
                                                hotwords=base.hotwords)),
        ("+ lexicon correction", replace(base, lm_weight=0.0, band_extension=False)),
        ("+ n-best word-LM rescoring", replace(base, band_extension=False)),
        ("+ telephone-band feature extension (shipped)", base),
    ]
    out = []
    for name, options in steps:
        before = load()
        if options is None:
            figures = library_baseline(manifest, MODELS / "whisper-base", threads)
        else:
            report = evaluate(WhisperEngine(MODELS / "whisper-base", options), manifest)
            figures = {"cer": round(report.error_rate, 4), "rtf": round(report.rtf, 4)}
        out.append({"step": name, **figures, "load": [before, load()]})
        print(f"   lever: {name}: {figures}", flush=True)
    return out


# -- pipeline overhead ---------------------------------------------------------------------------


def whisper_overhead(engine, files: list[Path]) -> dict:
    """transcribe_file vs. the same decoding done by hand with the library (no VAD, no service)."""
    import ctranslate2

    from asr.audio import load_mono
    from asr.transcribe import transcribe_file

    ours = direct = 0.0
    for _ in range(2):  # alternate to spread the machine's load over both
        for f in files:
            t = time.perf_counter()
            transcribe_file(engine, f)
            ours += time.perf_counter() - t
            t = time.perf_counter()
            samples, _ = load_mono(f, 16000)
            feats = engine._features(samples)
            model = engine._model.model
            enc = model.encode(ctranslate2.StorageView.from_array(feats[None]), to_cpu=False)
            model.generate(enc, [engine._prompt_tokens(engine.options.prompt, engine.options.hotwords)],
                           beam_size=engine.options.beam_size, num_hypotheses=engine.options.beam_size,
                           return_scores=True, suppress_blank=True, suppress_tokens=[-1], max_length=448)
            direct += time.perf_counter() - t
    return {"files": len(files), "transcribe_s": round(ours, 2), "library_s": round(direct, 2),
            "overhead": round(ours / direct - 1, 4)}


def vosk_overhead(engine, files: list[Path]) -> dict:
    import vosk

    from asr.audio import float_to_pcm16, load_mono
    from asr.transcribe import transcribe_file

    ours = direct = 0.0
    for _ in range(2):
        for f in files:
            t = time.perf_counter()
            transcribe_file(engine, f)
            ours += time.perf_counter() - t
            t = time.perf_counter()
            samples, _ = load_mono(f, engine.sample_rate)
            data = float_to_pcm16(samples)
            rec = vosk.KaldiRecognizer(engine._model, engine.sample_rate)
            rec.SetWords(True)
            step = engine.sample_rate  # 0.5 s of 16-bit audio
            for i in range(0, len(data), step):
                rec.AcceptWaveform(data[i:i + step])
            rec.FinalResult()
            direct += time.perf_counter() - t
    return {"files": len(files), "transcribe_s": round(ours, 2), "library_s": round(direct, 2),
            "overhead": round(ours / direct - 1, 4)}


# -- Vosk streaming RTF --------------------------------------------------------------------------


def vosk_streaming(engine, repeats: int) -> dict:
    from asr.audio import float_to_pcm16, load_mono
    from callcenter.domain import AudioFrame

    grammar = (KOREAN / "grammar.txt").read_text(encoding="utf-8").split("\n")
    clips = [load_mono(p, 8000)[0] for p in sorted(KOREAN.glob("*.wav")) if "8k" not in p.name]
    out = {}
    for mode, g in (("free", None), ("grammar", grammar)):
        seconds = audio = 0.0
        for _ in range(repeats):
            rec = engine.recognizer(grammar=g)
            for clip in clips:
                frames = [AudioFrame(float_to_pcm16(clip[i:i + 160]), 8000) for i in range(0, clip.size, 160)]
                t = time.perf_counter()
                for fr in frames:
                    rec.accept(fr)
                seconds += time.perf_counter() - t
                audio += clip.size / 8000
            rec.finish()
        out[f"rtf_{mode}"] = round(seconds / audio, 4)
    out["audio_seconds_per_mode"] = round(audio, 1)
    return out


# -- concurrency ---------------------------------------------------------------------------------


def concurrency(engine, clips: list[np.ndarray], streams: int, turns: int, gap: tuple[float, float],
                seed: int = 1, grammar: list[str] | None = None) -> dict:
    """``streams`` calls in real time; each customer turn is a clip, then silence while the robot talks."""
    from asr.audio import float_to_pcm16
    from asr.service import TranscriptionService
    from callcenter.domain import AudioFrame

    rate = 8000
    rng = random.Random(seed)
    service = TranscriptionService(engine)
    latencies: list[float] = []
    lock = threading.Lock()
    lost = [0]

    def run_stream(k: int) -> None:
        ends: list[float] = []  # wall-clock time each turn's speech ended, in order
        got: list[float] = []

        def on_event(_sid, event):
            if event.is_final and len(got) < len(ends):
                got.append(time.perf_counter())
                with lock:
                    latencies.append(got[-1] - ends[len(got) - 1])

        stream = service.open_stream(f"bench-{k}", on_event, grammar=grammar)
        audio = [np.zeros(int(rng.uniform(0, gap[1]) * rate), np.float32)]  # calls start out of phase
        marks = []
        for t in range(turns):
            clip = clips[(k * turns + t) % len(clips)]
            offset = sum(a.size for a in audio)
            marks.append(offset + int(speech_end(clip, rate) * rate))
            audio += [clip, np.zeros(int(rng.uniform(*gap) * rate), np.float32)]
        signal = np.concatenate(audio)
        start = time.perf_counter()
        frame = rate // 50
        for i in range(0, signal.size, frame):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            while marks and i >= marks[0]:
                ends.append(start + marks.pop(0) / rate)
            stream.push(AudioFrame(float_to_pcm16(signal[i:i + frame]), rate))
        stream.finish()
        stream.join(60)
        with lock:
            lost[0] += len(ends) - len(got)

    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    threads = [threading.Thread(target=run_stream, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    return {"streams": streams, "turns": len(latencies) + lost[0], "missed_finals": lost[0],
            "latency_p50_s": round(percentile(latencies, 50), 3), "latency_p95_s": round(percentile(latencies, 95), 3),
            "latency_max_s": round(max(latencies), 3) if latencies else None,
            "cpu_cores_used": round((time.process_time() - cpu0) / wall, 2), "load_after": load()}


def run(args) -> dict:
    import tempfile

    from asr import open_engine
    from asr.audio import load_mono
    from asr.models import ModelStore
    from asr.vosk_engine import VoskEngine

    quick = bool(getattr(args, "quick", False))
    threads = 2
    ModelStore(MODELS).install_all()
    result: dict = {"machine_load_at_start": load(), "cpu_threads": threads,
                    "note": "load average of the shared 2-core machine; other engineers' jobs were running"}
    whisper = open_engine("whisper", MODELS, threads=threads)
    vosk = VoskEngine(MODELS / "vosk" / "ko")

    print("-- whisper accuracy", flush=True)
    result["whisper"] = whisper_accuracy(whisper, 30 if quick else None)
    rows = [json.loads(x) for x in EVAL.read_text(encoding="utf-8").splitlines()]
    files = [EVAL.parent / r["file"] for r in rows[:: 9 if not quick else 30]]
    print("-- overhead", flush=True)
    result["overhead"] = {"whisper": whisper_overhead(whisper, files),
                          "vosk": vosk_overhead(vosk, sorted(p for p in KOREAN.glob("*.wav") if "8k" not in p.name))}
    print("-- vosk streaming", flush=True)
    result["vosk"] = vosk_streaming(vosk, 1 if quick else 3)

    print("-- concurrency", flush=True)
    zh_clips = [load_mono(EVAL.parent / r["file"], 8000)[0] for r in rows[::7]]
    ko_clips = [load_mono(p, 8000)[0] for p in sorted(KOREAN.glob("*.wav")) if "8k" not in p.name]
    levels = (1, 2) if quick else (1, 2, 4, 8, 16)
    turns = 2 if quick else 4
    grammar = (KOREAN / "grammar.txt").read_text(encoding="utf-8").split("\n")[:5]
    result["concurrency"] = {"gap_s": [2.0, 4.0], "turns_per_stream": turns, "whisper": [], "vosk_grammar": [],
                             "vosk_free": []}
    for n in levels:
        for name, engine, clips, g in (("whisper", whisper, zh_clips, None), ("vosk_grammar", vosk, ko_clips, grammar),
                                       ("vosk_free", vosk, ko_clips, None)):
            figures = concurrency(engine, clips, n, turns, (2.0, 4.0), grammar=g)
            result["concurrency"][name].append(figures)
            print(f"   {name} x{n}: {figures}", flush=True)

    if not quick:
        print("-- levers", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result["levers"] = levers(Path(tmp), threads)
    result["machine_load_at_end"] = load()
    return result
