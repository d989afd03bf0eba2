"""Where the data lives, and the default training and evaluation sets inside it."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LITE_RM_DATA"

# Files of ../shared/data (see its README), relative to the data folder.
GENERAL_TRAIN = {
    "helpful": "general/helpful.train.json",
    "harmless": "general/harmless.train.json",
    "webgpt": "general/webgpt.train.json",
}
GENERAL_TEST = {
    "helpful": "general/helpful.test.json",
    "harmless": "general/harmless.test.json",
    "webgpt": "general/webgpt.test.json",
}
DSP_TRAIN = "dsp/train.json"
DSP_TEST = "dsp/test.json"


def _candidates() -> list[Path]:
    here = Path(__file__).resolve()
    # ../shared/data beside the working directory, then beside a source checkout of lite-rm.
    return [Path.cwd().parent / "shared" / "data", here.parents[3] / "shared" / "data"]


def resolve_data_dir(flag: str | Path | None = None) -> Path:
    """The data folder: the flag, else ``$LITE_RM_DATA``, else ``../shared/data`` when it exists.

    Raises:
        FileNotFoundError: none found; the message says how to provide data.
    """
    if flag:
        path = Path(flag)
        if not path.is_dir():
            raise FileNotFoundError(f"data folder {path} (from --data-dir) does not exist")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise FileNotFoundError(f"data folder {path} (from ${ENV_VAR}) does not exist")
        return path
    for path in _candidates():
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "no preference data found: pass --data-dir DIR, set LITE_RM_DATA=DIR, or place the data "
        "folder at ../shared/data (see README, 'Data'); or give preference files directly"
    )
