#!/usr/bin/env python3
"""Train the telephone-band feature map (asr/bandext.py) -> asr/data/telephone_band.npz.

Texts: band_texts.jsonl beside this file (92 sentences of the seed talks and 300 customer-feedback
sentences of dialog/data, none sharing a 4-character run with the evaluation references). Each is
rendered once as clean 16 kHz speech with tools/tts (both voices), then passed through the same
telephone channel as the evaluation set (8 kHz, 300-3400 Hz FIR, G.711 mu-law) in this process, so
the narrowband and wideband versions are sample-aligned. A two-hidden-layer MLP (512 units, GELU)
learns the correction of each narrowband frame from it and two neighbours on each side (seed 0,
12 epochs of Adam, 10 % of the frames held out). Run with the product venv (torch is a dependency):

    .venv/bin/python bench/data/asr/fit_band.py
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import signal

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from asr import bandext
from asr.audio import load_mono, resample


def channel(clean16: np.ndarray, render) -> np.ndarray:
    x8 = signal.resample_poly(clean16, 1, 2, window=("kaiser", 8.0))
    taps = signal.firwin(255, [300, 3400], pass_zero=False, fs=8000, window=("kaiser", 8.0))
    band = signal.fftconvolve(x8, taps, mode="same")
    codes = render.mulaw_encode(render.to_pcm16(band))
    return resample(render.mulaw_decode(codes).astype(np.float32) / 32768.0, 8000, 16000)


def train(x: np.ndarray, y: np.ndarray, hidden: int = 512, epochs: int = 12) -> tuple[dict, float, float]:
    import torch

    torch.manual_seed(0)
    X, Y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    centre = slice(bandext.CONTEXT * 80, (bandext.CONTEXT + 1) * 80)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
                                torch.nn.GELU(), torch.nn.Linear(hidden, 80))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(X.shape[0])
    split = int(0.9 * X.shape[0])
    train_idx, held = perm[:split], perm[split:]
    for _ in range(epochs):
        order = train_idx[torch.randperm(train_idx.numel())]
        for i in range(0, order.numel(), 512):
            b = order[i:i + 512]
            loss = ((X[b][:, centre] + model(X[b]) - Y[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        before = torch.sqrt(((X[held][:, centre] - Y[held]) ** 2).mean()).item()
        after = torch.sqrt(((X[held][:, centre] + model(X[held]) - Y[held]) ** 2).mean()).item()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    weights = {"w1": sd["0.weight"], "b1": sd["0.bias"], "w2": sd["2.weight"], "b2": sd["2.bias"],
               "w3": sd["4.weight"], "b3": sd["4.bias"]}
    return weights, before, after


def main() -> int:
    from faster_whisper.feature_extractor import FeatureExtractor

    spec = importlib.util.spec_from_file_location("tts_render", ROOT / "tools" / "tts" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    out_dir = ROOT / "var" / "tts-band"
    subprocess.run([str(ROOT / "tools/tts/setup.sh")], check=True)
    subprocess.run([str(ROOT / ".venv-tts/bin/python"), str(ROOT / "tools/tts/render.py"), "--out", str(out_dir),
                    "--format", "clean16k", str(HERE / "band_texts.jsonl")], check=True, stdout=subprocess.DEVNULL)
    fe = FeatureExtractor()
    xs, ys = [], []
    for line in (HERE / "band_texts.jsonl").read_text(encoding="utf-8").splitlines():
        clean, _ = load_mono(out_dir / f"{json.loads(line)['id']}.wav", 16000)
        phone = channel(clean, render)[: clean.size]
        xs.append(bandext.stack_context(fe(phone)).T)
        ys.append(fe(clean[: phone.size]).T)
    weights, before, after = train(np.vstack(xs), np.vstack(ys))
    bandext.WEIGHTS.parent.mkdir(exist_ok=True)
    np.savez(bandext.WEIGHTS, **weights)
    print(f"fit_band.py: {len(xs)} utterances, {sum(x.shape[0] for x in xs)} frames; held-out feature RMSE "
          f"{before:.3f} -> {after:.3f}; wrote {bandext.WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
