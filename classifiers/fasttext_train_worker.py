"""Child process of fastText training: ``python fasttext_train_worker.py JSON`` trains and saves one model.

JSON holds ``input`` (a file in fastText's format), ``output`` (where the model goes) and ``kwargs``
(of ``fasttext.train_supervised``). Exit status 0: saved; 3: training diverged to NaN; 1: other error
(the message is on stderr). :func:`classifiers.fasttext_quality.train_quality_classifier` starts it
with ``MALLOC_MMAP_THRESHOLD_`` set; see ``_train_fasttext`` there for why training needs its own process.
This file imports nothing from the project, so it runs by its path.
"""

from __future__ import annotations

import json
import sys

EXIT_NAN = 3


def main(argv: list[str]) -> int:
    """Train and save the model described by ``argv[0]`` (JSON); return the exit status."""
    job = json.loads(argv[0])
    import fasttext

    try:
        model = fasttext.train_supervised(input=job["input"], verbose=0, **job["kwargs"])
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_NAN if "NaN" in str(exc) else 1
    model.save_model(job["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
