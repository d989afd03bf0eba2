"""An HTTP reward server for a bundle (``lite-rm serve``): Starlette on uvicorn, torch-free.

Endpoints (JSON in, JSON out):

* ``GET /health``: 503 ``{"status": "loading"}`` until the model is loaded, then 200 ``{"status":
  "ready"}``; never needs the API key (for load balancers). Details (the bundle, its precision, heads,
  counters; why loading failed) only with the key, or when the server has none.
* ``POST /score``: ``{"prompt": P, "responses": [R, ...]}`` or ``{"pairs": [{"prompt", "response"}, ...]}``
  -> ``{"scores": [...]}``.
* ``POST /preference``: ``{"prompt", "a", "b"}`` -> ``{"probability": p}`` (calibrated P(a preferred over
  b)), or ``{"items": [{"prompt", "a", "b"}, ...]}`` -> ``{"probabilities": [...]}``.
* ``POST /openrlhf`` (also ``/get_reward``): the request of OpenRLHF's remote reward model client,
  ``{"query": [prompt + response, ...], "prompts": [prompt, ...]}`` -> ``{"rewards": [...]}``; each query
  must start with its prompt (the rest is the response); the answer also carries ``scores`` (the same
  values) and ``extra_logs``, as OpenRLHF's own ``serve_rm`` does.
* ``POST /rank``: ``{"prompt", "responses", "top_k"?}`` -> ``{"results": [{"corpus_id", "score", "text"}, ...]}``
  best first (sentence-transformers' ``CrossEncoder.rank`` records).
* ``GET /openapi.json``: an OpenAPI description of the endpoints (needs the key, when the server has one).

``/score``, ``/preference`` and ``/rank`` take an optional ``"head"``: one of the bundle's heads (or
``"default"``) instead of the server's ``--head`` (only names: a client cannot make the server read a file).
A field the endpoint does not know is refused (422 naming it) rather than silently ignored.

Texts may be chat messages (``[{"role", "content"}, ...]``), rendered as in training. Requests are
scored together: a :class:`Batcher` collects the pairs of all requests that arrive within a short
window and scores them in one :class:`~lite_rm.scoring.scorer.Scorer` call (length-sorted batches), so
concurrent clients share model calls. Errors are JSON ``{"error": message, "field": name}``: 401/403
for a missing/wrong API key, 413 for a body over the limit, 422 for bad JSON, types or too many rows.

Shutdown (SIGTERM, Ctrl-C): uvicorn stops accepting, waits up to ``graceful_timeout`` seconds for the
requests in flight (a client stalled mid-upload is then dropped), the app scores whatever is queued, and
the process exits 0 (:func:`run_server`). A client that goes away is logged in one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lite_rm.data.records import DataError
from lite_rm.data.text import check_text
from lite_rm.errors import LiteRMError
from lite_rm.extras import lite_rm_version
from lite_rm.scoring.scorer import Comparison, Scorer

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for, and how requests are batched together.

    Attributes:
        max_body_bytes: largest request body (413 above it).
        max_rows: most pairs one request may score (422 above it); a preference item counts two.
        batch_window_ms: how long the batcher waits for more requests after the first one (0: none).
        max_batch_pairs: most pairs scored in one model call across requests.
    """

    max_body_bytes: int = 1_000_000
    max_rows: int = 512
    batch_window_ms: float = 5.0
    max_batch_pairs: int = 256

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_rows", "max_batch_pairs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, found {value!r}")
        if not isinstance(self.batch_window_ms, (int, float)) or self.batch_window_ms < 0:
            raise ValueError(f"batch_window_ms: expected a number >= 0, found {self.batch_window_ms!r}")


class RequestError(LiteRMError):
    """A request the server refuses: the HTTP status, the field at fault and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status, self.field, self.message = status, field, message

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": str(self), "field": self.field}, status_code=self.status, headers=headers)


# -- request parsing --------------------------------------------------------------------------------------

def _text(value: Any, name: str) -> str:
    """A text field: a string or chat messages (rendered as in training), valid Unicode; else a 422."""
    try:
        return check_text(value, name)
    except DataError as err:  # malformed messages: the message names the field
        raise RequestError(422, name, str(err)) from None
    except (TypeError, ValueError) as err:  # "NAME: why"; the answer names the field on its own
        raise RequestError(422, name, str(err).removeprefix(f"{name}: ")) from None


def _list(body: dict[str, Any], name: str, limit: int, cost: int = 1) -> list[Any]:
    """``body[name]`` as a non-empty list of at most ``limit`` rows (``cost`` pairs each); else a 422."""
    if name not in body:
        raise RequestError(422, name, f"missing; found fields {sorted(body)[:10]}")
    value = body[name]
    if not isinstance(value, list) or not value:
        raise RequestError(422, name, f"expected a non-empty list, found {type(value).__name__} {str(value)[:40]}")
    if len(value) * cost > limit:
        raise RequestError(422, name, f"{len(value)} rows; over the limit of {limit // cost} per request "
                                      "(--max-rows): split the request")
    return value


def _known(body: dict[str, Any], allowed: tuple[str, ...], where: str = "") -> None:
    """A 422 naming the first field not in ``allowed``: a misspelt ``top_k`` or ``head`` silently ignored
    would give a wrong answer that looks right."""
    for key in body:
        if key not in allowed:
            raise RequestError(422, f"{where}.{key}" if where else key,
                               f"unknown field; expected some of {list(allowed)}")


def _object(value: Any, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(422, name, f"expected a JSON object with {list(keys)}, found {type(value).__name__}")
    _known(value, keys, name)
    for key in keys:
        if key not in value:
            raise RequestError(422, f"{name}.{key}", f"missing; found fields {sorted(value)[:10]}")
    return value


def parse_score(body: dict[str, Any], max_rows: int) -> tuple[list[str], list[str]]:
    """(prompts, responses) of a ``/score`` request: ``prompt`` + ``responses``, or ``pairs``."""
    _known(body, ("pairs", "head") if "pairs" in body else ("prompt", "responses", "head"))
    if "pairs" in body:
        pairs = [_object(p, f"pairs[{i}]", ("prompt", "response")) for i, p in
                 enumerate(_list(body, "pairs", max_rows))]
        return ([_text(p["prompt"], f"pairs[{i}].prompt") for i, p in enumerate(pairs)],
                [_text(p["response"], f"pairs[{i}].response") for i, p in enumerate(pairs)])
    if "prompt" not in body:
        raise RequestError(422, "prompt", f"missing: give 'prompt' + 'responses', or 'pairs'; found fields "
                                          f"{sorted(body)[:10]}")
    prompt = _text(body["prompt"], "prompt")
    responses = [_text(r, f"responses[{i}]") for i, r in enumerate(_list(body, "responses", max_rows))]
    return [prompt] * len(responses), responses


def parse_preference(body: dict[str, Any], max_rows: int) -> tuple[list[str], list[str], list[str], bool]:
    """(prompts, a, b, single) of a ``/preference`` request: one ``prompt``/``a``/``b``, or ``items``."""
    single = "items" not in body
    _known(body, ("prompt", "a", "b", "head") if single else ("items", "head"))
    items = [_object({k: v for k, v in body.items() if k != "head"}, "", ("prompt", "a", "b"))] if single else [
        _object(item, f"items[{i}]", ("prompt", "a", "b")) for i, item in enumerate(_list(body, "items", max_rows, 2))]

    def texts(key: str) -> list[str]:
        return [_text(item[key], key if single else f"items[{i}].{key}") for i, item in enumerate(items)]

    return texts("prompt"), texts("a"), texts("b"), single


def parse_openrlhf(body: dict[str, Any], max_rows: int) -> tuple[list[str], list[str]]:
    """(prompts, responses) of an OpenRLHF ``{"query": [...], "prompts": [...]}`` request: each query is
    its prompt followed by the response, the way OpenRLHF's remote reward client sends them."""
    _known(body, ("query", "prompts", "labels"))  # newer OpenRLHF clients also send labels: accepted, unused
    queries = [_text(q, f"query[{i}]") for i, q in enumerate(_list(body, "query", max_rows))]
    prompts = [_text(p, f"prompts[{i}]") for i, p in enumerate(_list(body, "prompts", max_rows))]
    if len(prompts) != len(queries):
        raise RequestError(422, "prompts", f"{len(prompts)} prompts for {len(queries)} queries; expected one each")
    for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
        if not query.startswith(prompt):
            raise RequestError(422, f"query[{i}]", f"does not start with prompts[{i}]; expected the prompt "
                                                   "followed by the response")
    return prompts, [q[len(p):] for q, p in zip(queries, prompts, strict=True)]


def parse_rank(body: dict[str, Any], max_rows: int) -> tuple[str, list[str], list[Any], int | None]:
    """(prompt, responses, the responses as sent, top_k) of a ``/rank`` request."""
    _known(body, ("prompt", "responses", "top_k", "head"))
    if "prompt" not in body:
        raise RequestError(422, "prompt", f"missing; found fields {sorted(body)[:10]}")
    prompt = _text(body["prompt"], "prompt")
    sent = _list(body, "responses", max_rows)
    responses = [_text(r, f"responses[{i}]") for i, r in enumerate(sent)]
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(422, "top_k", f"expected a positive integer or null, found {top_k!r}")
    return prompt, responses, sent, top_k


# -- dynamic batching ------------------------------------------------------------------------------------

@dataclass
class _Job:
    texts: tuple[list[str], ...]  # (prompts, responses) to score, or (prompts, a, b) to compare
    future: asyncio.Future[Any] = field(repr=False)
    head: str | None = None  # None: the server's own head

    @property
    def pairs(self) -> int:
        """The (prompt, response) pairs the job scores: a comparison is two."""
        return len(self.texts[0]) * (len(self.texts) - 1)


class Batcher:
    """Scores the pairs of concurrent requests together, in one background task.

    The worker takes every request already queued, waits up to ``window_s`` for more (until
    ``max_pairs``), scores them in one :meth:`Scorer.score_pairs` (or :meth:`Scorer.compare`) call per head
    in a thread (the event loop keeps serving meanwhile) and answers each request's future with its own
    slice of the results.
    """

    def __init__(self, scorer: Scorer, window_s: float, max_pairs: int) -> None:
        self.scorer, self.window_s, self.max_pairs = scorer, window_s, max_pairs
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # model calls made and pairs scored (GET /health shows them)
        self.pairs = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Score what is queued, then end the worker."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task

    async def score(self, prompts: list[str], responses: list[str], head: str | None = None) -> np.ndarray:
        """The scores of (prompt, response) pairs, as :meth:`Scorer.score_pairs`."""
        return await self._submit((prompts, responses), head)

    async def compare(self, prompts: list[str], a: list[str], b: list[str], head: str | None = None) -> Comparison:
        """P(a preferred over b) and both scores, as :meth:`Scorer.compare`."""
        return await self._submit((prompts, a, b), head)

    async def _submit(self, texts: tuple[list[str], ...], head: str | None) -> Any:
        job = _Job(texts, asyncio.get_running_loop().create_future(), head)
        await self._queue.put(job)
        return await job.future

    async def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The jobs of one model call, and whether the stop sentinel was seen."""
        jobs, pairs = [first], first.pairs
        deadline = asyncio.get_running_loop().time() + self.window_s
        while pairs < self.max_pairs:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                wait = deadline - asyncio.get_running_loop().time()
                if wait <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), wait)
                except TimeoutError:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
            pairs += job.pairs
        return jobs, False

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            jobs, stopping = await self._collect(first)
            # Requests that ask for different heads, or compare rather than score, are scored in one call
            # each (in arrival order).
            groups: dict[tuple[str | None, int], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.head, len(job.texts)), []).append(job)
            for (head, _), group in groups.items():
                await self._score_group(group, head)

    async def _score_group(self, jobs: list[_Job], head: str | None) -> None:
        texts = [[text for job in jobs for text in job.texts[i]] for i in range(len(jobs[0].texts))]

        def call() -> np.ndarray | Comparison:
            if len(texts) == 2:
                return self.scorer.score_pairs(texts[0], texts[1], head)
            return self.scorer.compare(texts[0], texts[1], texts[2], head)

        try:
            result = await asyncio.to_thread(call)
        except Exception as err:  # never let one bad batch end the worker: every waiter gets the error
            logger.exception("scoring a batch of %d pairs failed", sum(job.pairs for job in jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        self.calls += 1
        self.pairs += sum(job.pairs for job in jobs)
        start = 0
        for job in jobs:
            rows = len(job.texts[0])
            if not job.future.done():  # a client that went away cancelled its future
                job.future.set_result(result[start:start + rows])
            start += rows


# -- the application -------------------------------------------------------------------------------------

async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, read up to ``limit`` bytes (413 past it; 422 if not a JSON object)."""
    over = f"over the limit of {limit} bytes (--max-body-bytes): send fewer rows per request"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestError(413, "body", f"{length} bytes; {over}")
    data = bytearray()
    async for chunk in request.stream():  # also bounds a chunked body that sent no Content-Length
        data += chunk
        if len(data) > limit:
            raise RequestError(413, "body", f"more than {limit} bytes; {over}")
    try:
        body = json.loads(bytes(data))
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(422, "body", f"not valid JSON ({str(err)[:120]})") from None
    if not isinstance(body, dict):
        raise RequestError(422, "body", f"expected a JSON object, found {type(body).__name__}")
    return body


class RewardServer:
    """The state of one server: the bundle, its Scorer once loaded, the batcher and the limits.

    Args:
        bundle: the bundle folder.
        api_key: required as ``Authorization: Bearer KEY`` on every request but ``/health`` (None: no auth).
        limits: request limits and batching settings.
        threads: CPU threads for scoring (None: the Scorer's default, one per usable core).
        batch_size: pairs per model call inside one scoring call (``None``: the Scorer's default).
        verify: check the bundle's SHA-256 digests when loading.
        head: the reward every request gets (a head's name or file, or a mixture; see
            :meth:`lite_rm.scoring.scorer.Scorer.score`); ``None``: the bundle's own score.
    """

    def __init__(self, bundle: str | Path, *, api_key: str | None = None, limits: ServeLimits | None = None,
                 threads: int | None = None, batch_size: int | None = None, verify: bool = False,
                 head: Any = None) -> None:
        self.bundle, self.limits = str(bundle), limits or ServeLimits()
        self._expected = api_key.encode("utf-8", "surrogateescape") if api_key else None
        self._scorer_args: dict[str, Any] = {"threads": threads, "batch_size": batch_size, "verify": verify,
                                             "head": head}
        self.scorer: Scorer | None = None
        self.batcher: Batcher | None = None
        self.load_error: str | None = None

    def app(self) -> Starlette:
        """The Starlette application (give it to uvicorn)."""
        routes: list[BaseRoute] = [
            Route("/health", self.health, methods=["GET"]),
            Route("/score", self._endpoint(self._score), methods=["POST"]),
            Route("/preference", self._endpoint(self._preference), methods=["POST"]),
            Route("/rank", self._endpoint(self._rank), methods=["POST"]),
            Route("/openrlhf", self._endpoint(self._openrlhf), methods=["POST"]),
            Route("/get_reward", self._endpoint(self._openrlhf), methods=["POST"]),
        ]
        routes.append(Route("/openapi.json", self._openapi(routes), methods=["GET"], include_in_schema=False))
        return Starlette(routes=routes, lifespan=self._lifespan)

    def _openapi(self, routes: list[BaseRoute]) -> Callable[[Request], Awaitable[Response]]:
        """GET /openapi.json: Starlette's SchemaGenerator, built from the endpoints' docstrings (the YAML after
        ``---``). Like every endpoint but /health, it needs the key when the server has one."""
        from starlette.schemas import SchemaGenerator

        info = {"title": "lite-rm serve", "version": lite_rm_version()}
        generator = SchemaGenerator({"openapi": "3.0.0", "info": info})
        schema = generator.get_schema(routes)

        async def openapi(request: Request) -> Response:
            try:
                self._authorize(request)
            except RequestError as err:
                return err.response()
            return JSONResponse(schema)
        return openapi

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Load in the background, so that /health can answer 503 while the model loads.
        loading = asyncio.create_task(self._load())
        yield
        # Uvicorn has finished the in-flight requests by now; score anything still queued, then stop.
        await loading
        if self.batcher is not None:
            await self.batcher.stop()

    async def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            scorer = await asyncio.to_thread(Scorer, self.bundle, **self._scorer_args)
        except Exception as err:  # a bad bundle: /health says why instead of the server dying silently
            self.load_error = str(err)
            logger.error("cannot load %s: %s", self.bundle, err)
            return
        self.scorer = scorer
        self.batcher = Batcher(scorer, self.limits.batch_window_ms / 1000, self.limits.max_batch_pairs)
        self.batcher.start()
        logger.info("loaded %s in %.1fs; ready", self.bundle, time.perf_counter() - t0)

    async def health(self, request: Request) -> Response:
        """Whether the model is loaded (never needs the key; details only with it).
        ---
        summary: Readiness
        responses:
          200: {description: '{"status": "ready"}, with the bundle, heads and counters when authorized'}
          503: {description: '{"status": "loading"}'}
          500: {description: '{"status": "failed"}: the bundle could not be loaded'}
        """
        # Without the key, only whether the server is ready: the bundle's path and its users' head
        # names are not for anyone who can reach the port.
        details = self._authorized(request)
        if self.load_error:
            return JSONResponse({"status": "failed", **({"error": self.load_error} if details else {})},
                                status_code=500)
        if self.scorer is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        if not details:
            return JSONResponse({"status": "ready"})
        manifest = self.scorer.manifest
        return JSONResponse({
            "status": "ready", "bundle": self.bundle, "precision": manifest.precision,
            "max_length": self.scorer.max_length, "calibration_scale": manifest.calibration.scale,
            "domains": manifest.domains, "head": self.scorer.head, "heads": self.scorer.heads,
            "max_rows": self.limits.max_rows,
            "max_body_bytes": self.limits.max_body_bytes,
            "model_calls": self.batcher.calls if self.batcher else 0,
            "pairs_scored": self.batcher.pairs if self.batcher else 0,
        })

    def _key_matches(self, header: str) -> bool:
        """Whether an ``Authorization`` value is ``Bearer KEY`` (the scheme in any case, RFC 7235)."""
        scheme, _, token = header.strip().partition(" ")
        assert self._expected is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"), self._expected)

    def _authorized(self, request: Request) -> bool:
        """Whether the request may see everything: the server has no key, or the request carries it."""
        return self._expected is None or self._key_matches(request.headers.get("authorization", ""))

    def _authorize(self, request: Request) -> None:
        if self._expected is None:
            return
        given = request.headers.get("authorization")
        if not given:
            raise RequestError(401, "Authorization", "missing; send the header 'Authorization: Bearer KEY'")
        if not self._key_matches(given):
            raise RequestError(403, "Authorization", "wrong API key")

    def _endpoint(self, handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
                  ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            # (the handler's docstring, below, describes this endpoint in /openapi.json)
            try:
                self._authorize(request)
                if self.batcher is None:
                    raise RequestError(503, "", self.load_error or "the model is loading; retry when GET /health "
                                                                  "answers 200")
                return JSONResponse(await handle(await read_json(request, self.limits.max_body_bytes)))
            except RequestError as err:
                return err.response()
            except (ValueError, TypeError) as err:  # the Scorer's own checks
                return RequestError(422, "", str(err)).response()
            except ClientDisconnect:  # the client went away mid-request: nobody to answer, nothing wrong here
                logger.info("%s %s: the client disconnected before sending the whole request",
                            request.method, request.url.path)
                return Response(status_code=499)
        endpoint.__doc__ = handle.__doc__
        return endpoint

    @property
    def _batcher(self) -> Batcher:
        assert self.batcher is not None  # checked by endpoint() before any handler runs
        return self.batcher

    async def _pairs(self, prompts: list[str], responses: list[str], head: str | None = None) -> np.ndarray:
        return await self._batcher.score(prompts, responses, head)

    def _head(self, body: dict[str, Any]) -> str | None:
        """The request's ``head``: a name among the Scorer's heads (None: the server's own head). Only
        names: a client must not make the server read a file path or an arbitrary mixture."""
        if "head" not in body or body["head"] is None:
            return None
        assert self.scorer is not None
        head, heads = body["head"], self.scorer.heads
        if not isinstance(head, str) or head not in heads:
            raise RequestError(422, "head", f"unknown head {head!r}; available heads: {heads}")
        return head

    async def _score(self, body: dict[str, Any]) -> dict[str, Any]:
        """Scores of responses to one prompt, or of (prompt, response) pairs.
        ---
        summary: Score responses
        description: 'Body: {"prompt", "responses": [...], "head"?} or {"pairs": [{"prompt", "response"}],
          "head"?}; texts are strings or chat messages [{"role", "content"}]. Answer: {"scores": [...]}.'
        responses:
          200: {description: '{"scores": [float, ...]} in the order given'}
          422: {description: '{"error", "field"}: bad JSON, unknown field, bad type, unknown head, too many rows'}
        """
        head = self._head(body)
        scores = await self._pairs(*parse_score(body, self.limits.max_rows), head)
        return {"scores": [float(s) for s in scores]}

    async def _preference(self, body: dict[str, Any]) -> dict[str, Any]:
        """Calibrated probability that response a is preferred over b.
        ---
        summary: Preference probability
        description: 'Body: {"prompt", "a", "b", "head"?} or {"items": [{"prompt", "a", "b"}], "head"?}.
          Answer: {"probability", "score_a", "score_b"} or {"probabilities": [...]}.'
        responses:
          200: {description: '{"probability", "score_a", "score_b"} or {"probabilities": [float, ...]}'}
          422: {description: '{"error", "field"}'}
        """
        head = self._head(body)
        prompts, a, b, single = parse_preference(body, self.limits.max_rows)
        compared = await self._batcher.compare(prompts, a, b, head)
        if single:
            return {"probability": float(compared.probabilities[0]), "score_a": float(compared.score_a[0]),
                    "score_b": float(compared.score_b[0])}
        return {"probabilities": [float(p) for p in compared.probabilities]}

    async def _rank(self, body: dict[str, Any]) -> dict[str, Any]:
        """Responses to one prompt ranked best first (as sentence-transformers' CrossEncoder.rank).
        ---
        summary: Rank responses
        description: 'Body: {"prompt", "responses": [...], "top_k"?, "head"?}. Answer: {"results":
          [{"corpus_id", "score", "text"}, ...]} best first; equal scores keep the order given.'
        responses:
          200: {description: '{"results": [{"corpus_id": int, "score": float, "text": the response}, ...]}'}
          422: {description: '{"error", "field"}'}
        """
        head = self._head(body)
        prompt, responses, sent, top_k = parse_rank(body, self.limits.max_rows)
        scores = await self._pairs([prompt] * len(responses), responses, head)
        order = np.argsort(-scores, kind="stable")[:top_k]  # as Scorer.rank
        return {"results": [{"corpus_id": int(i), "score": float(scores[i]), "text": sent[i]} for i in order]}

    async def _openrlhf(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenRLHF's remote reward model protocol (also at /get_reward).
        ---
        summary: OpenRLHF rewards
        description: 'Body: {"query": [prompt + response, ...], "prompts": [...], "labels"?}; each query starts
          with its prompt. Answer: {"rewards": [...], "scores": [...], "extra_logs": {}} (scores = rewards,
          as OpenRLHF serve_rm answers).'
        responses:
          200: {description: '{"rewards": [float, ...], "scores": [float, ...], "extra_logs": {}}'}
          422: {description: '{"error", "field"}'}
        """
        scores = [float(s) for s in await self._pairs(*parse_openrlhf(body, self.limits.max_rows))]
        return {"rewards": scores, "scores": scores, "extra_logs": {}}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _DroppedRequests(logging.Filter):
    """On uvicorn's error logger: a request dropped at the graceful timeout, or whose client went away,
    is logged in one line at WARNING, not as an "Exception in ASGI application" traceback at ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (asyncio.CancelledError, ClientDisconnect)):
            why = str(error) or type(error).__name__
            record.msg, record.args, record.exc_info, record.exc_text = "a request was dropped: %s", (why,), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif str(record.msg).startswith("Cancel %s running task"):  # uvicorn's line at the graceful timeout
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def run_server(server: RewardServer, host: str, port: int, log_level: str = "info",
               graceful_timeout: int = 5) -> None:
    """Serve ``server`` with uvicorn until SIGTERM or Ctrl-C, then drain and return (exit status 0).

    On a signal uvicorn stops accepting, waits up to ``graceful_timeout`` seconds for the requests in
    flight (a client that stalls mid-upload would otherwise hold the shutdown for as long as it stays
    connected), cancels what is left, and runs the app's shutdown, which scores anything still queued.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            with super().capture_signals():
                yield
                # uvicorn re-raises the signal after its shutdown (status 143 for SIGTERM); a drained
                # shutdown is the normal end of a server, so it returns instead.
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    config = uvicorn.Config(server.app(), host=host, port=port, log_level=log_level,
                            access_log=log_level == "debug", timeout_graceful_shutdown=graceful_timeout)
    quiet = _DroppedRequests()
    error_log = logging.getLogger("uvicorn.error")
    error_log.addFilter(quiet)
    try:
        _Server(config).run()
    finally:
        error_log.removeFilter(quiet)
