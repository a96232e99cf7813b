"""Telephone-band detection and the feature map's shapes (numpy only; the weights are a 2 MB file)."""

from __future__ import annotations

import numpy as np
from scipy import signal

from asr import bandext


def test_narrowband_is_told_apart_from_wideband():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.1, 16000)
    taps = signal.firwin(255, [300, 3400], pass_zero=False, fs=16000)
    assert not bandext.is_narrowband(noise)
    assert bandext.is_narrowband(signal.fftconvolve(noise, taps, mode="same"))
    assert bandext.is_narrowband(np.zeros(100))  # too short to tell: treat as telephone audio


def test_context_stacking_repeats_the_edges():
    f = np.arange(6, dtype=np.float32).reshape(2, 3)  # 2 bins, 3 frames
    stacked = bandext.stack_context(f, context=1)
    assert stacked.shape == (6, 3)
    np.testing.assert_array_equal(stacked[:, 0], [0, 3, 0, 3, 1, 4])  # previous frame = itself at the edge


def test_map_keeps_shape_and_fills_the_empty_high_band():
    rng = np.random.default_rng(4)
    feats = rng.normal(0.0, 0.2, (80, 50)).astype(np.float32)
    feats[60:] = feats.min()  # nothing above 3.4 kHz, as on a G.711 call
    mapped = bandext.map_features(feats)
    assert mapped.shape == feats.shape and mapped.dtype == np.float32 and np.all(np.isfinite(mapped))
    assert np.abs(mapped - feats).mean() > 0.01  # it does change the features
