"""``lite-rm serve``: an HTTP reward server for a bundle (Starlette on uvicorn; the ``[serve]`` extra)."""

from __future__ import annotations

from typing import Any

import click

from lite_rm.cli import fail
from lite_rm.cli.options import SectionedCommand, head_option, sections, threads_option, verify_option


@click.command("serve", cls=SectionedCommand, short_help="Serve a bundle over HTTP (scoring API).",
               sections=sections({
    "Server": ("host", "port", "api_key", "graceful_timeout", "log_level"),
    "Limits": ("max_body_bytes", "max_rows", "batch_window_ms", "max_batch_pairs"),
    "Model": ("batch_size", "threads", "verify", "head")}))
@click.argument("bundle", type=click.Path(path_type=str), metavar="BUNDLE|ORG/NAME")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any address but loopback needs an API key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--api-key", envvar="LITE_RM_API_KEY", default=None, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every request but /health. Prefer the environment "
                   "variable: a flag is visible to other users in the process list.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Largest request body (413 above it).")
@click.option("--max-rows", type=click.IntRange(min=1), default=512, show_default=True,
              help="Most (prompt, response) pairs per request (422 above it; a preference item counts two).")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="How long to wait for more requests to score together after one arrives.")
@click.option("--max-batch-pairs", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most pairs scored in one model call across requests.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Pairs per onnxruntime run inside a model call [default: 1, the Scorer's].")
@threads_option("onnxruntime")
@verify_option
@head_option
@click.option("--graceful-timeout", type=click.IntRange(min=0), default=5, show_default=True,
              help="On SIGTERM or Ctrl-C, seconds to wait for the requests in flight before dropping them "
                   "(a client stalled mid-upload would hold the shutdown otherwise).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="Uvicorn's log level.")
def serve(bundle: str, host: str, port: int, api_key: str | None, max_body_bytes: int, max_rows: int,
          batch_window_ms: float, max_batch_pairs: int, batch_size: int | None, threads: int, verify: bool,
          head: Any, graceful_timeout: int, log_level: str) -> None:
    """Serve BUNDLE (a folder, or a Hugging Face Hub repository ORG/NAME) over HTTP: POST /score,
    POST /preference, POST /rank, POST /openrlhf, GET /health, GET /openapi.json.

    Concurrent requests are scored together (dynamic batching). Stops on Ctrl-C or SIGTERM after
    answering the requests in flight (waiting --graceful-timeout seconds at most), with exit status 0.

    \b
    Examples:
      lite-rm serve bundles/academy --port 8000
      LITE_RM_API_KEY=secret lite-rm serve acme/tiny-rm --host 0.0.0.0
    """
    from lite_rm.extras import require
    from lite_rm.scoring.bundle import read_manifest
    from lite_rm.scoring.hub import resolve_bundle
    from lite_rm.threads import resolve_threads

    require("starlette", "serve")
    require("uvicorn", "serve")
    from lite_rm.jobs.serving import RewardServer, ServeLimits, is_loopback, run_server

    api_key = api_key or None  # an empty LITE_RM_API_KEY is no key
    if not is_loopback(host) and api_key is None:
        fail(f"--host {host}: refusing to listen on a non-loopback address without an API key; give --api-key "
             "or set LITE_RM_API_KEY (clients then send 'Authorization: Bearer KEY'), or keep --host 127.0.0.1")
    bundle = str(resolve_bundle(bundle))  # org/name: a Hugging Face Hub repository, through its cache
    read_manifest(bundle, verify=verify)  # a wrong path fails here, before the server starts
    if head is not None:
        from lite_rm.scoring.scorer import Scorer

        Scorer(bundle, threads=1, head=head)  # so does an unknown head (a BundleError)
    limits = ServeLimits(max_body_bytes=max_body_bytes, max_rows=max_rows, batch_window_ms=batch_window_ms,
                         max_batch_pairs=max_batch_pairs)
    server = RewardServer(bundle, api_key=api_key, limits=limits, threads=resolve_threads(threads),
                          batch_size=batch_size, head=head)
    # Uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes the requests in flight (for
    # --graceful-timeout at most), then runs the app's shutdown, which scores whatever is still queued.
    run_server(server, host, port, log_level, graceful_timeout)
