"""``import lite_rm``: the root's names, lazy ones included, listed and typed without importing torch."""

from __future__ import annotations

import subprocess
import sys


def test_dir_lists_the_lazy_names_without_importing_them() -> None:
    code = ("import sys, lite_rm\n"
            "names = dir(lite_rm)\n"
            "assert set(lite_rm.__all__) <= set(names), set(lite_rm.__all__) - set(names)\n"
            "assert issubclass(lite_rm.DataError, lite_rm.LiteRMError)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_public_name_resolves() -> None:
    import lite_rm
    from lite_rm.scoring.scorer import Scorer
    from lite_rm.training.config import TrainConfig

    assert all(getattr(lite_rm, name) is not None for name in lite_rm.__all__)
    assert lite_rm.Scorer is Scorer and lite_rm.TrainConfig is TrainConfig
