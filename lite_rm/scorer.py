"""Torch-free scoring of a lite-rm bundle: onnxruntime + tokenizers + numpy only.

>>> scorer = Scorer("bundle/")
>>> scorer.score("How do I boil an egg?", ["Put it in boiling water for 8 minutes.", "Eggs are nice."])
array([ 1.7, -0.4], dtype=float32)
>>> scorer.preference_probability("How do I boil an egg?", "Put it in ...", "Eggs are nice.")
0.83

Inputs go through the same input rule as training (:mod:`lite_rm.encoding`), so a bundle scores
exactly what the checkpoint saw; chat messages (``[{"role": "user", "content": ...}, ...]``) are
rendered to text as the training data was (:func:`lite_rm.data.formats.render_messages`). This module
must never import torch: a test checks it in a fresh interpreter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.bundle import BundleError, Manifest, read_manifest
from lite_rm.data.formats import render_messages
from lite_rm.data.text import bad_text
from lite_rm.encoding import EncodedPairs, encode_pairs, length_batches, load_tokenizer, pad_batch, pad_id_of
from lite_rm.runtimes import RuntimeLoadError, open_runtime

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


def _check_text(name: str, value: Any) -> str:
    """``value`` as text: a string, or chat messages rendered as in training; else a TypeError."""
    if isinstance(value, list):
        value = render_messages(value, "", name)  # DataError (a ValueError) names what is wrong
    elif not isinstance(value, str):
        raise TypeError(f"{name}: expected a string or a list of {{'role', 'content'}} messages, "
                        f"found {type(value).__name__}")
    bad = bad_text(value)
    if bad:  # tokenizers would fail on it and lose the whole batch
        raise ValueError(f"{name}: {bad[0]}")
    return value


def _check_texts(name: str, value: Any) -> list[str]:
    """A new list of texts from ``value`` (a list/tuple of texts), or a TypeError naming the argument."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name}: expected a list of strings, found {type(value).__name__}")
    return [_check_text(f"{name}[{i}]", text) for i, text in enumerate(value)]  # the caller's list is never touched


@dataclass(frozen=True)
class Ranking:
    """Responses ranked best first: ``indices[0]`` is the position (in the list given) of the best one.

    Attributes:
        indices: positions in the list given, best first.
        scores: their scores, in the same order (descending).
    """

    indices: list[int]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.indices)


class Scorer:
    """Scores (prompt, response) pairs with an exported bundle on the CPU.

    Safe to share between threads: onnxruntime sessions and ``tokenizers`` tokenizers allow concurrent
    calls (OpenVINO gets an infer request per call), and a Scorer keeps no per-call state. It never
    changes the lists it is given.

    Args:
        bundle: the bundle folder written by ``lite-rm export``.
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default, one per physical core).
        batch_size: pairs per model call; pairs are sorted by length first so a batch pads little.
        providers: onnxruntime execution providers (default: CPU).
        verify: check the files' SHA-256 against the manifest when opening (reads the whole model).
        dedupe: score identical (prompt, response) pairs of one call once.
        backend: ``onnxruntime`` (the parity-checked scores) or ``openvino`` (optional extra; bf16 on
            CPUs with native bf16, faster there: :mod:`lite_rm.runtimes`).

    Raises:
        BundleError: missing or corrupted bundle files, or a manifest of an unknown format version.
    """

    def __init__(
        self,
        bundle: str | Path,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        providers: Sequence[str] | None = None,
        verify: bool = False,
        dedupe: bool = True,
        backend: str = "onnxruntime",
    ) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive integer or None, found {threads!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, found {batch_size!r}")
        self.manifest: Manifest = read_manifest(bundle, verify=verify)
        self.input_rule = self.manifest.input_rule
        self.batch_size = batch_size
        self.dedupe = dedupe
        try:
            self._tokenizer = load_tokenizer(self.manifest.tokenizer_path)
        except Exception as err:  # tokenizers raises a bare Exception on a bad file
            raise BundleError(f"{self.manifest.tokenizer_path}: not a valid tokenizer file ({err})") from None
        self._pad_id = pad_id_of(self._tokenizer)

        try:
            self._runtime = open_runtime(self.manifest.model_path, backend, threads, providers)
        except RuntimeLoadError as err:
            raise BundleError(f"{self.manifest.model_path}: {err}; the bundle is corrupted or was made for a newer "
                              "runtime, export it again") from None
        self.backend = backend
        # Feed exactly what the graph asks for, by name (some exports drop token_type_ids).
        self._input_names = self._runtime.input_names
        logger.debug("opened %s (%s, inputs %s)", bundle, self.manifest.precision, self._input_names)

    def __repr__(self) -> str:
        return f"Scorer({str(self.manifest.folder)!r}, precision={self.manifest.precision!r})"

    @property
    def max_length(self) -> int:
        return self.input_rule.max_length

    # -- public API ----------------------------------------------------------------------------------

    def score(self, prompt: str | list[dict[str, str]], responses: Sequence[Any]) -> np.ndarray:
        """Scores of several responses to one prompt (higher is preferred).

        Args:
            prompt: the prompt or dialogue history: a text, or chat messages ``[{"role", "content"}]``.
            responses: the responses to score.

        Returns:
            float32 array, one score per response, in the order given.
        """
        prompt = _check_text("prompt", prompt)
        responses = _check_texts("responses", responses)
        if not responses:
            raise ValueError("responses: empty; give at least one response to score")
        return self._score([prompt] * len(responses), responses)

    def rank(self, prompt: str | list[dict[str, str]], responses: Sequence[Any], top_k: int | None = None
             ) -> Ranking:
        """Rank responses to one prompt, best first (equal scores keep the order given).

        Args:
            prompt: the prompt, or chat messages.
            responses: the responses to rank.
            top_k: keep only the best ``top_k`` (default: all).

        Returns:
            A :class:`Ranking` of indices into ``responses`` and their scores.
        """
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k: expected a positive integer or None, found {top_k!r}")
        scores = self.score(prompt, responses)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return Ranking([int(i) for i in order], [float(scores[i]) for i in order])

    def score_pairs(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """Scores of (prompt, response) pairs.

        Args:
            prompts: one prompt per pair.
            responses: one response per pair, as many as prompts.

        Returns:
            float32 array, one score per pair, in the order given.
        """
        prompts = _check_texts("prompts", prompts)
        responses = _check_texts("responses", responses)
        if len(prompts) != len(responses):
            raise ValueError(f"score_pairs: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            raise ValueError("score_pairs: empty input; give at least one (prompt, response) pair")
        return self._score(prompts, responses)

    def preference_probability(self, prompt: Any, a: Any, b: Any) -> float:
        """Calibrated probability that response ``a`` is preferred over ``b`` for ``prompt``."""
        prompt, a, b = _check_text("prompt", prompt), _check_text("a", a), _check_text("b", b)
        return float(self._probabilities([prompt], [a], [b])[0])

    def preference_probabilities(
        self, prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]
    ) -> np.ndarray:
        """Batched :meth:`preference_probability`: P(a[i] preferred over b[i] | prompts[i]).

        Returns:
            float64 array of probabilities, in the order given.
        """
        prompts, a, b = _check_texts("prompts", prompts), _check_texts("a", a), _check_texts("b", b)
        if not (len(prompts) == len(a) == len(b)):
            raise ValueError(f"preference_probabilities: {len(prompts)} prompts, {len(a)} a, {len(b)} b")
        if not prompts:
            raise ValueError("preference_probabilities: empty input; give at least one (prompt, a, b)")
        return self._probabilities(prompts, a, b)

    def probability_from_scores(self, score_a: np.ndarray, score_b: np.ndarray) -> np.ndarray:
        """P(a preferred over b) from already computed scores, with the bundle's calibration."""
        diff = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-self.manifest.calibration.scale * diff))

    # -- internals ------------------------------------------------------------------------------------

    def _probabilities(self, prompts: list[str], a: list[str], b: list[str]) -> np.ndarray:
        # One call for both sides so that a and b responses share length-sorted batches.
        scores = self._score(prompts + prompts, a + b)
        n = len(prompts)
        return self.probability_from_scores(scores[:n], scores[n:])

    def _score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        if self.dedupe:
            # Preference data repeats inputs: a response compared with several others (DSP: each preferred
            # response appears in four pairs), best-of-n lists. Score each distinct pair once.
            first: dict[tuple[str, str], int] = {}
            where = np.fromiter((first.setdefault(key, len(first)) for key in zip(prompts, responses, strict=True)),
                                dtype=np.int64, count=len(prompts))
            if len(first) < len(prompts):
                unique_p, unique_r = zip(*first, strict=True) if first else ((), ())
                encoded = encode_pairs(self._tokenizer, list(unique_p), list(unique_r), self.input_rule)
                return self.score_encoded(encoded)[where]
        encoded = encode_pairs(self._tokenizer, prompts, responses, self.input_rule)
        return self.score_encoded(encoded)

    def score_encoded(self, encoded: EncodedPairs) -> np.ndarray:
        """Scores of already encoded pairs (see :func:`lite_rm.encoding.encode_pairs`).

        Pairs run in batches of similar length (:func:`lite_rm.encoding.length_batches`).
        """
        scores = np.empty(len(encoded), dtype=np.float32)
        for idx in length_batches(encoded.lengths(), self.batch_size):
            batch = pad_batch(encoded, idx.tolist(), self._pad_id)
            out = self._runtime.run({name: batch[name] for name in self._input_names})
            scores[idx] = out
        return scores

