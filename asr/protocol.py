"""The engine-neutral contract of speech recognition: :class:`Recognizer` and :class:`Engine`.

An :class:`Engine` holds one loaded model per process (Vosk or Whisper weights, loaded by explicit
path); it hands out one :class:`Recognizer` per call stream. A recognizer is fed PCM frames as they
arrive and returns :class:`~callcenter.domain.TranscriptEvent` objects:

* partial events (``is_final=False``): the text so far, for the live transcript and barge-in. A
  partial with empty text is the *speech started* signal (Whisper's VAD emits it about 100 ms into
  speech, before any text exists; Vosk's first partial plays the same role).
* final events (``is_final=True``): one per utterance, with start/end in stream seconds (counted
  from the first sample fed), text, confidence in [0, 1] and, where the engine has them, words. A
  final with empty text means speech was heard but nothing usable was recognised (out of grammar,
  noise, a rejected hallucination): the dialog should re-prompt rather than wait.

``accept`` and ``finish`` do the decoding and block for it (milliseconds for Vosk, a few hundred
for a Whisper utterance): call them from a decoding thread, never from an event loop or the
telephony media thread (:mod:`asr.service` provides that thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from callcenter.domain import AnswerChoice, AudioFrame, TranscriptEvent


@runtime_checkable
class Recognizer(Protocol):
    """One call stream's recognizer. Not thread-safe: one thread feeds it."""

    def accept(self, frame: AudioFrame) -> list[TranscriptEvent]:
        """Feed the next frame (any rate the engine resamples from, 16-bit PCM); return new events."""
        ...

    def finish(self) -> list[TranscriptEvent]:
        """End of stream (hang-up): flush the utterance in progress; the recognizer is spent."""
        ...

    def set_grammar(self, phrases: Sequence[str] | None) -> None:
        """Expected phrases for the next utterance (a closed question), or None for free speech."""
        ...

    def set_choices(self, choices: Sequence[AnswerChoice] | None) -> None:
        """The expected answers of a closed question for the following utterances, or None.

        While set, each final event carries ``choices``: every answer's probability given the
        utterance's audio, plus ``"other"`` (none fits), best first, summing to 1; empty where the
        engine could not score (a failed or silent utterance)."""
        ...


@runtime_checkable
class Engine(Protocol):
    """A loaded model; thread-safe; shared by every recognizer of the process."""

    name: str

    def recognizer(self, *, grammar: Sequence[str] | None = None, partials: bool = True) -> Recognizer:
        """A new recognizer for one stream (``partials=False`` skips partial results: file mode)."""
        ...
