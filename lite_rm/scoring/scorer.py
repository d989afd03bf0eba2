"""Torch-free scoring of a lite-rm bundle: onnxruntime + tokenizers + numpy only.

>>> scorer = Scorer("bundle/")
>>> scorer.score("How do I boil an egg?", ["Put it in boiling water for 8 minutes.", "Eggs are nice."])
array([ 1.7, -0.4], dtype=float32)
>>> scorer.compare(["How do I boil an egg?"], ["Put it in ..."], ["Eggs are nice."]).probabilities
array([0.83])

Inputs go through the same input rule as training (:mod:`lite_rm.scoring.encoding`), so a bundle scores
exactly what the checkpoint saw; chat messages (``[{"role": "user", "content": ...}, ...]``) are
rendered to text as the training data was (:func:`lite_rm.data.formats.render_messages`). This module
must never import torch: a test checks it in a fresh interpreter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from lite_rm.data.text import check_text
from lite_rm.scoring.bundle import BundleError, Manifest, read_manifest
from lite_rm.scoring.encoding import EncodedPairs, encode_pairs, length_batches, load_tokenizer, pad_batch, pad_id_of
from lite_rm.scoring.heads import HeadPlan, HeadSet, HeadSpec, LinearHead
from lite_rm.scoring.runtimes import EMBEDDING_OUTPUT, SCORE_OUTPUT, RuntimeLoadError, open_runtime
from lite_rm.threads import resolve_threads

if TYPE_CHECKING:  # at run time personalization loads on the first personalize() call, as before
    from lite_rm.scoring.personalization import FitReport

logger = logging.getLogger(__name__)

# One text per model call, the calls running at once on one thread each (``streams``): small CPUs stay
# busy, and a dynamic-int8 text's score does not depend on the other texts of a call (their shared
# activation scale would move it).
DEFAULT_BATCH_SIZE = 1


def _check_texts(name: str, value: Any) -> list[str]:
    """A new list of texts from ``value`` (a list/tuple of texts), or a TypeError naming the argument."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name}: expected a list of strings, found {type(value).__name__}")
    return [check_text(text, f"{name}[{i}]") for i, text in enumerate(value)]  # the caller's list is never touched


@dataclass(frozen=True)
class Comparison:
    """Responses ``a`` compared with responses ``b``, pair by pair (see :meth:`Scorer.compare`).

    Attributes:
        probabilities: calibrated P(a[i] preferred over b[i]), float64.
        score_a: the scores of the ``a`` responses, float32.
        score_b: the scores of the ``b`` responses, float32.
    """

    probabilities: np.ndarray
    score_a: np.ndarray
    score_b: np.ndarray

    def __len__(self) -> int:
        return len(self.probabilities)

    def __getitem__(self, rows: slice) -> Comparison:
        """The comparisons of ``rows`` (a slice)."""
        return Comparison(self.probabilities[rows], self.score_a[rows], self.score_b[rows])


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
        threads: CPU threads in all (:func:`~lite_rm.threads.resolve_threads`: ``None``, one per core this
            process may use; ``0``, as many as are free now).
        batch_size: pairs per model call (``None``: ``DEFAULT_BATCH_SIZE``, 1); pairs are sorted by length
            first so a batch pads little.
        streams: model calls run at once, each on ``threads // streams`` threads (``None``: ``threads``,
            i.e. one thread per call). Large batches run faster on one stream of all threads.
        providers: onnxruntime execution providers (default: CPU).
        verify: check the files' SHA-256 against the manifest when opening (reads the whole model).
        dedupe: score identical (prompt, response) pairs of one call once.
        backend: ``onnxruntime`` (the parity-checked scores) or ``openvino`` (optional extra; bf16 on
            CPUs with native bf16, faster there: :mod:`lite_rm.scoring.runtimes`).
        head: which reward every call returns unless it names its own: ``default`` (the bundle's own
            score), a head of the bundle (:attr:`heads`), the path of a head file (a profile), or a
            mixture ``{"general": 0.5, "alice": 0.5}`` (see :meth:`score`).

    Raises:
        BundleError: missing or corrupted bundle files, or a manifest of an unknown format version.
    """

    def __init__(
        self,
        bundle: str | Path,
        threads: int | None = None,
        batch_size: int | None = None,
        providers: Sequence[str] | None = None,
        verify: bool = False,
        dedupe: bool = True,
        backend: str = "onnxruntime",
        head: HeadSpec = None,
        streams: int | None = None,
    ) -> None:
        if streams is not None and (isinstance(streams, bool) or not isinstance(streams, int) or streams < 1):
            raise ValueError(f"streams: expected a positive integer or None, found {streams!r}")
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, found {batch_size!r}")
        threads = resolve_threads(threads)
        self.streams = streams or threads
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
            self._runtime = open_runtime(self.manifest.model_path, backend, threads, providers, self.streams)
        except RuntimeLoadError as err:
            raise BundleError(f"{self.manifest.model_path}: {err}; the bundle is corrupted or was made for a newer "
                              "runtime, export it again") from None
        self.backend = backend
        # Feed exactly what the graph asks for, by name (some exports drop token_type_ids).
        self._input_names = self._runtime.input_names
        self._heads = HeadSet(self.manifest, EMBEDDING_OUTPUT in self._runtime.output_names, head)
        logger.debug("opened %s (%s, inputs %s)", bundle, self.manifest.precision, self._input_names)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None,
                        local_files_only: bool = False, cache_dir: str | Path | None = None,
                        token: str | bool | None = None, **kwargs: Any) -> Scorer:
        """Open a bundle by name: a local folder, or a Hugging Face Hub repository ``"org/name"``.

        A repository is fetched into (or found in) the Hub cache by ``huggingface_hub`` (``HF_HUB_CACHE``,
        ``HF_HUB_OFFLINE=1``; without a network a cached copy is used), then opened with the same checks
        as a local bundle. Weights of a training checkpoint are never downloaded with it.

        Args:
            name_or_path: a bundle folder or a Hub repository id.
            revision: a branch, tag or commit of the repository.
            local_files_only: never use the network, only the Hub cache.
            cache_dir: the Hub cache (default: huggingface_hub's).
            token: a Hub token for a private or gated repository.
            **kwargs: the :class:`Scorer` options (``threads``, ``head``, ``verify``, ...).

        Raises:
            BundleError: not a bundle, or a repository neither cached nor downloadable (the message says why).
        """
        from lite_rm.scoring.hub import resolve_bundle

        folder = resolve_bundle(name_or_path, revision=revision, local_files_only=local_files_only,
                                cache_dir=cache_dir, token=token)
        return cls(folder, **kwargs)

    def __repr__(self) -> str:
        return f"Scorer({str(self.manifest.folder)!r}, precision={self.manifest.precision!r})"

    @property
    def max_length(self) -> int:
        return self.input_rule.max_length

    @property
    def head(self) -> HeadSpec:
        """The reward a call scores when it names none: ``default`` (the bundle's own score), a head's name, or
        a mixture ``{name: weight}``."""
        return self._heads.default

    # -- public API ----------------------------------------------------------------------------------

    def score(self, prompt: str | list[dict[str, str]], responses: Sequence[Any], head: HeadSpec = None
              ) -> np.ndarray:
        """Scores of several responses to one prompt (higher is preferred).

        Args:
            prompt: the prompt or dialogue history: a text, or chat messages ``[{"role", "content"}]``.
            responses: the responses to score.
            head: which reward (default: the Scorer's ``head``): ``"default"``, a head's name or file, or
                a mixture ``{name: weight}``, which scores ``sum(weight * scale * head_score)`` with each
                head's calibration ``scale``, so heads on different scales mix in probability units.
                Any number of heads costs one encoder pass.

        Returns:
            float32 array, one score per response, in the order given.
        """
        prompt = check_text(prompt, "prompt")
        responses = _check_texts("responses", responses)
        if not responses:
            raise ValueError("responses: empty; give at least one response to score")
        return self._score([prompt] * len(responses), responses, self._heads.plan(head))

    @overload
    def rank(self, prompt: str | list[dict[str, str]], responses: Sequence[Any], top_k: int | None = None,
             head: HeadSpec = None, *, return_documents: Literal[False] = False) -> Ranking: ...

    @overload
    def rank(self, prompt: str | list[dict[str, str]], responses: Sequence[Any], top_k: int | None = None,
             head: HeadSpec = None, *, return_documents: Literal[True]) -> list[dict[str, Any]]: ...

    def rank(self, prompt: str | list[dict[str, str]], responses: Sequence[Any], top_k: int | None = None,
             head: HeadSpec = None, *, return_documents: bool = False) -> Ranking | list[dict[str, Any]]:
        """Rank responses to one prompt, best first (equal scores keep the order given).

        Args:
            prompt: the prompt, or chat messages.
            responses: the responses to rank.
            top_k: keep only the best ``top_k`` (default: all).
            head: which reward, as in :meth:`score`.
            return_documents: return records as sentence-transformers' ``CrossEncoder.rank`` does,
                ``{"corpus_id": index in responses, "score": float, "text": the response}``, best first.

        Returns:
            A :class:`Ranking` of indices into ``responses`` and their scores, or with
            ``return_documents=True`` a list of records.
        """
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k: expected a positive integer or None, found {top_k!r}")
        scores = self.score(prompt, responses, head)
        order = np.argsort(-scores, kind="stable")[:top_k]
        ranking = Ranking([int(i) for i in order], [float(scores[i]) for i in order])
        if not return_documents:
            return ranking
        return [{"corpus_id": i, "score": s, "text": responses[i]}
                for i, s in zip(ranking.indices, ranking.scores, strict=True)]

    def predict(self, pairs: Sequence[Any], head: HeadSpec = None) -> np.ndarray:
        """Scores of ``(prompt, response)`` pairs, as sentence-transformers' ``CrossEncoder.predict`` takes them.

        Args:
            pairs: ``(prompt, response)`` tuples (or 2-item lists), e.g. ``zip(prompts, responses)``; a prompt
                may be chat messages.
            head: which reward, as in :meth:`score`.

        Returns:
            float32 array, one score per pair, in the order given (empty for an empty list).

        Raises:
            TypeError: ``pairs`` is not a list of pairs, or an item is not a (prompt, response) pair
                (the message names its index).
        """
        if isinstance(pairs, (str, bytes, Mapping)) or not isinstance(pairs, Iterable):
            raise TypeError(f"pairs: expected a list of (prompt, response) tuples, found {type(pairs).__name__}")
        pairs = list(pairs)  # zip(prompts, responses) and numpy rows work too
        if len(pairs) == 2 and all(isinstance(x, str) for x in pairs):
            raise TypeError("pairs: found one (prompt, response) pair, expected a list of them; "
                            "for one pair call predict([(prompt, response)])")
        prompts: list[str] = []
        responses: list[str] = []
        for i, item in enumerate(pairs):
            if isinstance(item, (str, bytes)) or not isinstance(item, (Sequence, np.ndarray)) or len(item) != 2:
                found = f"{len(item)} items" if isinstance(item, (list, tuple, np.ndarray)) else type(item).__name__
                raise TypeError(f"pairs[{i}]: expected a (prompt, response) pair, found {found}")
            prompts.append(check_text(item[0], f"pairs[{i}][0] (prompt)"))
            responses.append(check_text(item[1], f"pairs[{i}][1] (response)"))
        if not prompts:
            return np.empty(0, dtype=np.float32)
        return self._score(prompts, responses, self._heads.plan(head))

    def score_pairs(self, prompts: Sequence[Any], responses: Sequence[Any], head: HeadSpec = None) -> np.ndarray:
        """Scores of (prompt, response) pairs.

        Args:
            prompts: one prompt per pair.
            responses: one response per pair, as many as prompts.
            head: which reward, as in :meth:`score`.

        Returns:
            float32 array, one score per pair, in the order given.
        """
        prompts = _check_texts("prompts", prompts)
        responses = _check_texts("responses", responses)
        if len(prompts) != len(responses):
            raise ValueError(f"score_pairs: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            raise ValueError("score_pairs: empty input; give at least one (prompt, response) pair")
        return self._score(prompts, responses, self._heads.plan(head))

    def compare(self, prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any], head: HeadSpec = None
                ) -> Comparison:
        """Calibrated probability that ``a[i]`` is preferred over ``b[i]`` for ``prompts[i]``, with both scores.

        Both sides are scored in one call, so ``a`` and ``b`` responses share length-sorted batches.

        Args:
            prompts: one prompt per comparison (texts or chat messages).
            a: the first response of each comparison.
            b: the second response of each comparison, as many as prompts.
            head: which reward, as in :meth:`score`; its calibration turns score differences into
                probabilities (a mixture's scores are already in probability units).

        Returns:
            A :class:`Comparison`: ``probabilities`` (float64), ``score_a`` and ``score_b``, in the order given.
        """
        prompts, a, b = _check_texts("prompts", prompts), _check_texts("a", a), _check_texts("b", b)
        if not (len(prompts) == len(a) == len(b)):
            raise ValueError(f"compare: {len(prompts)} prompts, {len(a)} a, {len(b)} b")
        if not prompts:
            raise ValueError("compare: empty input; give at least one (prompt, a, b)")
        plan = self._heads.plan(head)
        scores = self._score(prompts + prompts, a + b, plan)
        n = len(prompts)
        return Comparison(plan.probabilities(scores[:n], scores[n:]), scores[:n], scores[n:])

    # -- heads ------------------------------------------------------------------------------------------

    @property
    def heads(self) -> list[str]:
        """The heads this Scorer can score: ``default``, the bundle's heads and loaded head files."""
        return self._heads.names

    def get_head(self, name: str) -> LinearHead:
        """The linear head ``name`` (``default``: the score's last layer in linear form).

        Raises:
            BundleError: no such head, a bundle without an embedding output, or a head of another model.
        """
        return self._heads.get(name)

    def load_head(self, path: str | Path) -> str:
        """Make a head file (e.g. a per-user profile written by ``personalize``) scorable; returns its name."""
        return self._heads.load(path)

    def embed_pairs(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """The ``embedding`` of each (prompt, response) pair, ``(n, dim)`` float32: what heads read."""
        prompts, responses = _check_texts("prompts", prompts), _check_texts("responses", responses)
        if len(prompts) != len(responses):
            raise ValueError(f"embed_pairs: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            raise ValueError("embed_pairs: empty input; give at least one (prompt, response) pair")
        self._heads.require_embedding("embed_pairs")
        return self._outputs(prompts, responses, (EMBEDDING_OUTPUT,))[0]

    def personalize(self, prompts: Sequence[Any], chosen: Sequence[Any], rejected: Sequence[Any], name: str,
                    profile: str | Path | None = None, seed: int = 0) -> FitReport:
        """Fit a head from a user's comparisons (see :func:`lite_rm.scoring.personalization.personalize`); the head
        is saved into the bundle, or into ``profile``, and can be scored at once by its ``name``."""
        from lite_rm.scoring.personalization import personalize

        return personalize(self, prompts, chosen, rejected, name, profile=profile, seed=seed)

    # -- internals ------------------------------------------------------------------------------------

    def _score(self, prompts: list[str], responses: list[str], plan: HeadPlan) -> np.ndarray:
        return plan.combine(dict(zip(plan.outputs, self._outputs(prompts, responses, plan.outputs), strict=True)))

    def _outputs(self, prompts: list[str], responses: list[str], names: Sequence[str]) -> list[np.ndarray]:
        if self.dedupe:
            # Preference data repeats inputs: a response compared with several others (DSP: each preferred
            # response appears in four pairs), best-of-n lists. Score each distinct pair once.
            first: dict[tuple[str, str], int] = {}
            where = np.fromiter((first.setdefault(key, len(first)) for key in zip(prompts, responses, strict=True)),
                                dtype=np.int64, count=len(prompts))
            if len(first) < len(prompts):
                unique_p, unique_r = zip(*first, strict=True) if first else ((), ())
                encoded = encode_pairs(self._tokenizer, list(unique_p), list(unique_r), self.input_rule)
                return [out[where] for out in self._run_encoded(encoded, names)]
        encoded = encode_pairs(self._tokenizer, prompts, responses, self.input_rule)
        return self._run_encoded(encoded, names)

    def _run_encoded(self, encoded: EncodedPairs, names: Sequence[str] = (SCORE_OUTPUT,)) -> list[np.ndarray]:
        """The graph's named outputs (``logits`` ``(n,)``, ``embedding`` ``(n, dim)``) for encoded pairs, run in
        batches of similar length."""
        batches = length_batches(encoded.lengths(), self.batch_size)

        def run(idx: np.ndarray) -> list[np.ndarray]:
            batch = pad_batch(encoded, idx.tolist(), self._pad_id)
            return self._runtime.run({name: batch[name] for name in self._input_names}, names)

        streams = min(self.streams, len(batches))
        if streams > 1:  # the engines release the GIL and allow concurrent calls; a pool per call: nothing to leak
            with ThreadPoolExecutor(streams) as pool:
                outputs = list(pool.map(run, batches))
        else:
            outputs = [run(idx) for idx in batches]
        results: list[np.ndarray] = []
        for idx, outs in zip(batches, outputs, strict=True):
            if not results:
                results = [np.empty((len(encoded), *out.shape[1:]), dtype=np.float32) for out in outs]
            for result, out in zip(results, outs, strict=True):
                result[idx] = out
        return results
