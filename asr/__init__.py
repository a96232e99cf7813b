"""Speech recognition: call audio in, :class:`~callcenter.domain.TranscriptEvent` out.

Two real engines behind one protocol (:mod:`asr.protocol`): Vosk (streaming Kaldi; a Mandarin model
installed by path in production, the Korean PyPI model in tests) and Whisper base (faster-whisper,
int8 CPU, VAD-segmented). A deployment picks one with ``CALLCENTER_ASR_ENGINE``. Importing this
package is cheap: the engines import vosk / faster-whisper only when constructed.

Modules: ``protocol`` (Recognizer, Engine), ``audio`` (WAV decoding, resampling), ``vad`` (Silero
segmentation), ``whisper_engine``, ``vosk_engine``, ``service`` (decoding threads for a worker's
streams), ``models`` (install/verify), ``transcribe`` (files, evaluation), ``textnorm``, ``lexicon``.
"""

from __future__ import annotations

from pathlib import Path

from asr.protocol import Engine, Recognizer

ENGINES = ("whisper", "vosk")

__all__ = ["ENGINES", "Engine", "Recognizer", "engine_from_settings", "open_engine"]


def open_engine(kind: str, models_dir: str | Path, *, vosk_model: str | None = None, threads: int = 2,
                beam_size: int | None = None, end_silence: float | None = None) -> Engine:
    """Load the configured engine's model (once per process).

    Args:
        kind: "whisper" or "vosk".
        models_dir: the models directory (``Settings.models_dir``).
        vosk_model: a Vosk model name under ``<models_dir>/vosk`` or a path; None: the only one installed.
        threads: CPU threads for Whisper's decoder.
        beam_size: Whisper beam size (None: the tuned default).
        end_silence: seconds of silence that end a Whisper utterance (None: the VAD default).

    Raises:
        ValueError: unknown engine. ModelInstallError / WhisperModelError / VoskModelError: no usable model.
    """
    from asr.models import ModelStore

    store = ModelStore(models_dir)
    if kind == "whisper":
        from dataclasses import replace

        from asr.vad import VadConfig
        from asr.whisper_engine import WhisperEngine, WhisperOptions

        options = WhisperOptions(cpu_threads=threads)
        if beam_size is not None:
            options = replace(options, beam_size=beam_size)
        if end_silence is not None:
            options = replace(options, vad=replace(VadConfig(), end_silence=end_silence))
        return WhisperEngine(store.whisper_dir, options)
    if kind == "vosk":
        from asr.vosk_engine import VoskEngine

        return VoskEngine(store.resolve_vosk(vosk_model))
    raise ValueError(f"unknown ASR engine {kind!r}: expected one of {', '.join(ENGINES)}")


def engine_from_settings(settings, kind: str | None = None) -> Engine:
    """The engine ``CALLCENTER_ASR_*`` configure (``kind`` overrides the engine's name).

    Raises:
        ModelInstallError / WhisperModelError / VoskModelError: no usable model (the message says how to install it).
    """
    return open_engine(kind or settings.asr_engine, settings.models_dir, vosk_model=settings.vosk_model,
                       threads=settings.asr_threads, beam_size=settings.whisper_beam_size,
                       end_silence=settings.asr_end_silence_ms / 1000)
