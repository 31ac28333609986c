"""Where the tests find the repository's data and configs (the library itself has no
built-in location: see ``jaxrnn.train.config.data_root``)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# $JAXRNN_DATA if set, else the repository's ../shared/data (what its configs' data_root says)
DATA = Path(os.environ.get("JAXRNN_DATA") or REPO.parent / "shared" / "data").resolve()
CONFIGS = REPO / "configs"


def data_root() -> Path:
    return DATA
