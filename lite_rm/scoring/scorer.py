"""Torch-free scoring of a lite-rm bundle: onnxruntime + tokenizers + numpy only.

>>> scorer = Scorer("bundle/")
>>> scorer.score("How do I boil an egg?", ["Put it in boiling water for 8 minutes.", "Eggs are nice."])
array([ 1.7, -0.4], dtype=float32)
>>> scorer.preference_probability("How do I boil an egg?", "Put it in ...", "Eggs are nice.")
0.83

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
from typing import Any, Literal, overload

import numpy as np

from lite_rm.data.formats import render_messages
from lite_rm.data.text import bad_text
from lite_rm.scoring.bundle import MAX_MAGNITUDE, BundleError, Manifest, bounded, read_manifest
from lite_rm.scoring.encoding import EncodedPairs, encode_pairs, length_batches, load_tokenizer, pad_batch, pad_id_of
from lite_rm.scoring.heads import DEFAULT_HEAD, LinearHead, read_head
from lite_rm.scoring.runtimes import EMBEDDING_OUTPUT, SCORE_OUTPUT, RuntimeLoadError, open_runtime
from lite_rm.threads import resolve_threads

logger = logging.getLogger(__name__)

# One text per model call on one thread per core (``streams``): the fastest way measured for every kind of
# bundle on 2 cores, and it makes a dynamic-int8 text's score independent of the other texts of a call,
# whose shared activation scale otherwise moves it (bench/threads_results.md).
DEFAULT_BATCH_SIZE = 1
# What a ``head`` argument may be: a head's name (or a head file's path), or a weighted mixture of heads.
HeadSpec = str | dict[str, float] | None


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


def _needs(plan: list[tuple[str, float]]) -> list[str]:
    """The graph outputs a plan of heads reads: ``logits`` for the default head, ``embedding`` for others."""
    names = {name for name, _ in plan}
    return [SCORE_OUTPUT] * (DEFAULT_HEAD in names) + [EMBEDDING_OUTPUT] * bool(names - {DEFAULT_HEAD})


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
        self._heads: dict[str, LinearHead] = {}
        self.head: HeadSpec = None
        self.head = self._resolve(head)  # checked now, so a bad name fails at open, not at the first call
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
        prompt = _check_text("prompt", prompt)
        responses = _check_texts("responses", responses)
        if not responses:
            raise ValueError("responses: empty; give at least one response to score")
        return self._score([prompt] * len(responses), responses, head)

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
            prompts.append(_check_text(f"pairs[{i}][0] (prompt)", item[0]))
            responses.append(_check_text(f"pairs[{i}][1] (response)", item[1]))
        if not prompts:
            return np.empty(0, dtype=np.float32)
        return self._score(prompts, responses, head)

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
        return self._score(prompts, responses, head)

    def preference_probability(self, prompt: Any, a: Any, b: Any, head: HeadSpec = None) -> float:
        """Calibrated probability that response ``a`` is preferred over ``b`` for ``prompt`` (by ``head``,
        as in :meth:`score`)."""
        prompt, a, b = _check_text("prompt", prompt), _check_text("a", a), _check_text("b", b)
        return float(self._probabilities([prompt], [a], [b], head)[0])

    def preference_probabilities(
        self, prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any], head: HeadSpec = None
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
        return self._probabilities(prompts, a, b, head)

    def probability_from_scores(self, score_a: np.ndarray, score_b: np.ndarray, head: HeadSpec = None
                                ) -> np.ndarray:
        """P(a preferred over b) from already computed scores of ``head``, with that head's calibration
        (a mixture's scores are already in probability units)."""
        diff = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
        with np.errstate(over="ignore"):  # exp(large) = inf gives P = 0.0 exactly, as it should
            return 1.0 / (1.0 + np.exp(-self._plan(head)[1] * diff))

    # -- heads ------------------------------------------------------------------------------------------

    @property
    def heads(self) -> list[str]:
        """The heads this Scorer can score: ``default``, the bundle's heads and loaded head files."""
        return [DEFAULT_HEAD, *sorted((set(self.manifest.heads) | set(self._heads)) - {DEFAULT_HEAD})]

    def get_head(self, name: str) -> LinearHead:
        """The linear head ``name`` (``default``: the score's last layer in linear form).

        Raises:
            BundleError: no such head, a bundle without an embedding output, or a head of another model.
        """
        if name in self._heads:
            return self._heads[name]
        if name not in self.manifest.heads:
            raise BundleError(f"head {name!r}: not in {self.manifest.folder} (it has {', '.join(self.heads)}); "
                              "add one with lite-rm personalize, or give the path of a head file")
        head = read_head(self.manifest.folder / self.manifest.heads[name])
        self._heads[name] = self._checked(head, f"{self.manifest.folder / self.manifest.heads[name]}")
        return head

    def load_head(self, path: str | Path) -> str:
        """Make a head file (e.g. a per-user profile written by ``personalize``) scorable; returns its name."""
        head = self._checked(read_head(path), str(path))
        self._heads[head.name] = head
        return head.name

    def embed_pairs(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """The ``embedding`` of each (prompt, response) pair, ``(n, dim)`` float32: what heads read."""
        prompts, responses = _check_texts("prompts", prompts), _check_texts("responses", responses)
        if len(prompts) != len(responses):
            raise ValueError(f"embed_pairs: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            raise ValueError("embed_pairs: empty input; give at least one (prompt, response) pair")
        self._require_embedding("embed_pairs")
        return self._outputs(prompts, responses, (EMBEDDING_OUTPUT,))[0]

    def personalize(self, prompts: Sequence[Any], chosen: Sequence[Any], rejected: Sequence[Any], name: str,
                    profile: str | Path | None = None, seed: int = 0) -> Any:
        """Fit a head from a user's comparisons (see :func:`lite_rm.scoring.personalization.personalize`); the head
        is saved into the bundle, or into ``profile``, and can be scored at once by its ``name``."""
        from lite_rm.scoring.personalization import personalize

        return personalize(self, prompts, chosen, rejected, name, profile=profile, seed=seed)

    def _require_embedding(self, what: str) -> None:
        if self.manifest.embedding is None or EMBEDDING_OUTPUT not in self._runtime.output_names:
            raise BundleError(f"{what}: {self.manifest.folder} was exported before heads existed (its graph has no "
                              f"{EMBEDDING_OUTPUT!r} output); export the checkpoint again with this lite-rm to use "
                              "heads (its default score works as before)")

    def _checked(self, head: LinearHead, where: str) -> LinearHead:
        self._require_embedding(f"head {head.name!r}")
        if head.dim != self.manifest.embedding_dim:
            raise BundleError(f"{where}: head of {head.dim} dimensions, the bundle's embedding has "
                              f"{self.manifest.embedding_dim}")
        backbone = (self.manifest.data.get("source") or {}).get("sha256")
        if head.backbone and backbone and head.backbone != backbone:
            raise BundleError(f"{where}: head {head.name!r} was fit on another model (backbone {head.backbone[:12]}, "
                              f"this bundle's is {backbone[:12]}); fit it again on this bundle")
        return head

    def _resolve(self, head: HeadSpec) -> HeadSpec:
        """``head`` with head files loaded (by their name) and names and weights checked."""
        if head is None:
            return self.head if self.head is not None else DEFAULT_HEAD
        if isinstance(head, (str, Path)):
            text = str(head)
            if text.endswith(".json"):
                return self.load_head(text)  # a missing file is a BundleError naming it
            if text != DEFAULT_HEAD:
                self.get_head(text)
            return text
        if not isinstance(head, dict) or not head:
            raise TypeError(f"head: expected a head name, a head file or a non-empty {{name: weight}}, found {head!r}")
        mixture: dict[str, float] = {}
        for name, weight in head.items():
            if not bounded(weight):
                raise ValueError(f"head[{name!r}]: expected a finite weight within ±{MAX_MAGNITUDE:g}, "
                                 f"found {weight!r}")
            resolved = self._resolve(name)
            mixture[str(resolved)] = mixture.get(str(resolved), 0.0) + float(weight)
        return mixture

    def _plan(self, head: HeadSpec) -> tuple[list[tuple[str, float]], float]:
        """The heads to add up with their coefficients, and the probability scale of the result."""
        resolved = self._resolve(head)
        if isinstance(resolved, str):
            return [(resolved, 1.0)], self._scale(resolved)
        assert isinstance(resolved, dict)
        return [(name, weight * self._scale(name)) for name, weight in resolved.items()], 1.0

    def _scale(self, name: str) -> float:
        return self.manifest.calibration.scale if name == DEFAULT_HEAD else self.get_head(name).calibration.scale

    # -- internals ------------------------------------------------------------------------------------

    def _probabilities(self, prompts: list[str], a: list[str], b: list[str], head: HeadSpec) -> np.ndarray:
        # One call for both sides so that a and b responses share length-sorted batches.
        scores = self._score(prompts + prompts, a + b, head)
        n = len(prompts)
        return self.probability_from_scores(scores[:n], scores[n:], head)

    def _score(self, prompts: list[str], responses: list[str], head: HeadSpec = None) -> np.ndarray:
        plan, _ = self._plan(head)
        needs = _needs(plan)
        return self._combine(plan, dict(zip(needs, self._outputs(prompts, responses, needs), strict=True)))

    def _combine(self, plan: list[tuple[str, float]], outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The plan's weighted sum; one head with weight 1 returns its own scores untouched (the default
        head: the graph's ``logits`` as they are)."""
        def part(name: str) -> np.ndarray:
            if name == DEFAULT_HEAD:
                return outputs[SCORE_OUTPUT]
            return self.get_head(name).scores(outputs[EMBEDDING_OUTPUT])

        if len(plan) == 1 and plan[0][1] == 1.0:
            scores = part(plan[0][0])
        else:
            scores = np.asarray(sum(coef * part(name).astype(np.float64) for name, coef in plan), dtype=np.float32)
        if not np.all(np.isfinite(scores)):
            # Bounded heads and calibrations cannot get here; a corrupted graph or embedding can. A NaN
            # written as a score would be silently wrong (and is not JSON), so stop instead.
            bad = int(np.sum(~np.isfinite(scores)))
            raise BundleError(f"{self.manifest.folder}: head {' + '.join(name for name, _ in plan)} gave a "
                              f"non-finite score (NaN or infinity) for {bad} of {len(scores)} texts; the bundle or "
                              "head is corrupted: export it again or check the head file")
        return scores

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
                return [out[where] for out in self.run_encoded(encoded, names)]
        encoded = encode_pairs(self._tokenizer, prompts, responses, self.input_rule)
        return self.run_encoded(encoded, names)

    def score_encoded(self, encoded: EncodedPairs, head: HeadSpec = None) -> np.ndarray:
        """Scores of already encoded pairs (see :func:`lite_rm.scoring.encoding.encode_pairs`) by ``head``.

        Pairs run in batches of similar length (:func:`lite_rm.scoring.encoding.length_batches`).
        """
        plan, _ = self._plan(head)
        needs = _needs(plan)
        return self._combine(plan, dict(zip(needs, self.run_encoded(encoded, needs), strict=True)))

    def run_encoded(self, encoded: EncodedPairs, names: Sequence[str] = (SCORE_OUTPUT,)) -> list[np.ndarray]:
        """The graph's named outputs (``logits`` ``(n,)``, ``embedding`` ``(n, dim)``) for encoded pairs."""
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
