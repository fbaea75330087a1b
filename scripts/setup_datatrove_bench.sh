#!/usr/bin/env bash
# Create benchmarks/.venv-datatrove, a separate environment holding datatrove for
# benchmarks/minhash.py. datatrove is not a project dependency; nothing here touches .venv.
#
# Only what datatrove's MinHash signature step imports is installed: datatrove's core
# requirements (numpy, fsspec, huggingface-hub, loguru, tqdm, ...), xxhash (its default shingle
# hash, in the range its "processing" extra pins), regex (its text normalisation), spaCy (its
# English word tokenizer, spacy.blank("en"): no model download) and tokenizers (imported by the
# datatrove.pipeline.dedup package). None of these pulls torch or CUDA. Safe to run again.
#
#     scripts/setup_datatrove_bench.sh            # PYTHON=python3.11 to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=benchmarks/.venv-datatrove
DATATROVE=${DATATROVE_VERSION:-0.10.1}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "datatrove==$DATATROVE" "xxhash<4" regex tokenizers "spacy>=3.8,<4"
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

import spacy, xxhash
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
try:
    import torch  # noqa: F401
    print("warning: torch is importable in the datatrove environment")
except ImportError:
    pass
print(f"datatrove {version('datatrove')}, "
      f"spacy {spacy.__version__}, xxhash {xxhash.VERSION}: ok")
EOF
