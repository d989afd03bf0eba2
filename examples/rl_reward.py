"""Rewards for an RL loop: a verl ``compute_score`` function and an OpenRLHF client of ``lite-rm serve``.

verl (custom reward function): point ``custom_reward_function.path`` at this file and
``custom_reward_function.name`` at ``compute_score``, with ``LITE_RM_BUNDLE`` set to the bundle (a folder or a
Hugging Face Hub repository ``org/name``). The prompt is read from ``extra_info["prompt"]`` (or
``extra_info["question"]``): put it there when you build the dataset.

OpenRLHF (remote reward model): run ``lite-rm serve BUNDLE --port 8000`` and pass
``--remote_rm_url http://127.0.0.1:8000/openrlhf``; :func:`openrlhf_rewards` is the request OpenRLHF sends.

    python examples/rl_reward.py BUNDLE              # compute_score on a few answers
    python examples/rl_reward.py BUNDLE --serve      # start lite-rm serve and call it as OpenRLHF would
    python examples/rl_reward.py BUNDLE --url http://127.0.0.1:8000   # a server already running
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
from functools import lru_cache
from typing import Any

from lite_rm import Scorer


@lru_cache(maxsize=1)
def _scorer() -> Scorer:
    """One Scorer per reward worker process, opened on the first call (verl imports this file in each)."""
    bundle = os.environ.get("LITE_RM_BUNDLE")
    if not bundle:
        raise RuntimeError("set LITE_RM_BUNDLE to the bundle folder or Hub repository (org/name) to score with")
    return Scorer.from_pretrained(bundle)


def compute_score(data_source: str, solution_str: str, ground_truth: Any = None,
                  extra_info: dict[str, Any] | None = None) -> float:
    """verl's custom reward signature: the reward model's score of ``solution_str`` for the prompt.

    ``data_source`` and ``ground_truth`` are not needed by a reward model (a rule-based check could be added
    to the score here); the prompt comes from ``extra_info``.
    """
    info = extra_info or {}
    prompt = info.get("prompt", info.get("question", ""))
    return float(_scorer().score(prompt, [solution_str])[0])


def openrlhf_rewards(url: str, prompts: list[str], responses: list[str], api_key: str | None = None,
                     timeout: float = 60.0) -> list[float]:
    """Rewards from ``lite-rm serve`` the way OpenRLHF's remote reward client asks for them:
    ``{"query": [prompt + response, ...], "prompts": [prompt, ...]}`` -> ``{"rewards": [...]}``."""
    body = json.dumps({"query": [p + r for p, r in zip(prompts, responses, strict=True)], "prompts": prompts})
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url.rstrip("/") + "/openrlhf", data=body.encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the user's server URL
        return [float(r) for r in json.loads(answer.read())["rewards"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="verl and OpenRLHF rewards from a lite-rm bundle")
    parser.add_argument("bundle", help="a bundle folder, or a Hugging Face Hub repository org/name")
    parser.add_argument("--url", help="a running lite-rm serve to call as OpenRLHF does")
    parser.add_argument("--serve", action="store_true", help="start lite-rm serve on a free port and call it")
    args = parser.parse_args(argv)

    prompt = "Write a haiku about autumn."
    answers = ["Red leaves drift and fall / the cold river carries them / toward the quiet sea",
               "Autumn is a season."]
    os.environ["LITE_RM_BUNDLE"] = args.bundle
    verl = [compute_score("demo", a, None, {"prompt": prompt}) for a in answers]
    print("verl compute_score:", [round(r, 4) for r in verl])
    if args.serve or args.url:
        server = None
        if args.serve:
            from lite_rm.jobs.local_server import start_local_server

            server = start_local_server(args.bundle, "--threads", "1", "--log-level", "warning")
        try:
            rewards = openrlhf_rewards(args.url or server.url, [prompt] * len(answers), answers)  # type: ignore[union-attr]
        finally:
            if server is not None:
                server.stop()
        print("OpenRLHF /openrlhf:", [round(r, 4) for r in rewards])


if __name__ == "__main__":
    main()
