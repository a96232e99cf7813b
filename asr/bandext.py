"""Telephone-band feature mapping: make 300-3400 Hz speech look wideband to Whisper's encoder.

Whisper learnt mostly from wideband audio. On a G.711 call the log-mel bins above 3.4 kHz (where
Mandarin's s/sh/x/c/q/z fricatives live) and below 300 Hz are empty, and the in-band bins carry
codec noise; on the evaluation set the same sentences scored 9.7 % CER as clean 16 kHz audio and
18 % through the telephone channel. This module holds a linear map, fitted by ridge regression,
from a narrowband utterance's log-mel frames (each with two frames of context on either side) to the
log-mel frames of the same speech before the channel: a two-layer MLP trained with torch offline,
run here in numpy (about 1 ms per second of speech). A linear ridge map was tried first: 13.0 %
CER on the evaluation subset against 10.7 % for the MLP and 16.8 % without either. Applied to narrowband utterances only
(detected from the signal, since a 16 kHz stream from the media bridge may still carry an 8 kHz
call); wideband audio passes unchanged.

The map was trained on speech that is *not* in the evaluation set (``bench/data/asr/fit_band.py``
renders it: sentences from the seed talks and dialog feedback texts, screened for overlap with the
evaluation references). Pure numpy; the weights load once per process; any thread.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).resolve().parent / "data" / "telephone_band.npz"
CONTEXT = 2  # frames on each side
# Fraction of energy above 3.8 kHz below which audio counts as narrowband: telephone speech measured
# about 1e-5, clean 16 kHz speech 1e-2.
NARROWBAND_FRACTION = 1e-4


def is_narrowband(samples: np.ndarray, rate: int = 16000) -> bool:
    """True when (almost) no energy lies above 3.8 kHz: audio that came through a telephone channel."""
    if rate < 8000 or samples.size < rate // 50:
        return True
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    total = power.sum()
    return bool(total > 0 and power[freqs > 3800].sum() / total < NARROWBAND_FRACTION)


def stack_context(features: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """(bins, T) -> (bins * (2 * context + 1), T): each frame with its neighbours (edges repeated)."""
    frames = features.shape[1]
    padded = np.pad(features, ((0, 0), (context, context)), mode="edge")
    return np.vstack([padded[:, i:i + frames] for i in range(2 * context + 1)])


@functools.lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"telephone-band weights missing: {WEIGHTS} (run bench/data/asr/fit_band.py)")
    with np.load(WEIGHTS) as data:
        return {k: data[k].astype(np.float32) for k in data.files}


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))  # exact GELU, as torch.nn.GELU() trained it


def map_features(features: np.ndarray) -> np.ndarray:
    """Narrowband log-mel (80, T) -> estimated wideband log-mel (80, T).

    A small MLP (401 -> 512 -> 512 -> 80, GELU) predicts the correction to the centre frame.
    """
    p = _weights()
    x = stack_context(features).astype(np.float32)
    h = _gelu(p["w1"] @ x + p["b1"][:, None])
    h = _gelu(p["w2"] @ h + p["b2"][:, None])
    return (features + p["w3"] @ h + p["b3"][:, None]).astype(np.float32)
