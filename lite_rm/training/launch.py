"""``lite-rm train --processes N`` on one machine: the run started again in N processes under
``torchrun --standalone``, each running ``python -m lite_rm.training.launch CONFIG.json [--resume]
[--overwrite]`` (:func:`main`), which trains in that process (:func:`lite_rm.training.driver.train_here`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lite_rm.training.config import TrainConfig

logger = logging.getLogger(__name__)


def launch(config: TrainConfig, resume: bool, overwrite: bool, processes: int) -> None:
    """Train ``config`` in ``processes`` processes on this machine, under ``torchrun --standalone`` (a free
    port, no rendezvous server); returns when they finish.

    Raises:
        ParallelRunError: a process failed (torchrun stops the others; their errors are on stderr).
    """
    from lite_rm.training.parallel import ParallelRunError

    with tempfile.TemporaryDirectory(prefix="lite-rm-") as tmp:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(config.to_json(), encoding="utf-8")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "lite_rm.training.launch", str(config_file)]
        command += ["--resume"] * resume + ["--overwrite"] * overwrite
        logger.info("starting %d training processes: %s", processes, " ".join(command))
        done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise ParallelRunError(
            f"the {processes} training processes failed (exit status {done.returncode}); their messages are "
            f"above. Pass --resume to continue from the last saved state of {config.output_dir}")


def main(argv: list[str]) -> None:
    """One process of :func:`launch`: ``CONFIG.json [--resume] [--overwrite]``."""
    from lite_rm.training.driver import train_here

    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config = TrainConfig.from_dict(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    train_here(config, resume="--resume" in argv[1:], overwrite="--overwrite" in argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
