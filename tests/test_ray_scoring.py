"""``lite-rm score --engine ray`` on a local Ray cluster started in the test (2 CPUs).

Real DSP rows split into JSONL, CSV and Parquet shards: every score equals the single-process
``lite-rm score``; a worker killed in the middle of a shard is restarted and the shard resumed, with no row
lost or duplicated; a rerun skips the finished shards.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # the [dev] extra brings the [ray] extra: CI tests the Ray engine
import pyarrow.parquet as pq
import pytest
import ray
from click.testing import CliRunner

from lite_rm.cli import main
from lite_rm.jobs.distributed import BundleScorer, ShardScorer, list_shards, output_name, score_dataset

COLUMNS = ["id", "prompt", "response"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("ray-bundle")
    valid = tmp / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": f"q{i}?", "chosen": f"yes {i}", "rejected": "no"}) + "\n"
                             for i in range(16)))
    export_bundle(tiny_checkpoint, tmp / "bundle", validation=valid)
    return tmp / "bundle"


@pytest.fixture(scope="module")
def dsp_rows(data_dir: Path) -> list[dict[str, str]]:
    records = json.loads((data_dir / "dsp" / "test.json").read_text())[:30]
    return [{"id": f"{i}-{domain}", "prompt": r["query"], "response": text}
            for i, r in enumerate(records) for domain, text in sorted(r["responses"].items())]


def _write_shards(rows: list[dict[str, str]], folder: Path) -> Path:
    """Four shards: two JSONL, one CSV, one Parquet."""
    folder.mkdir()
    parts = np.array_split(np.arange(len(rows)), 4)
    for j in (0, 1):
        (folder / f"part-{j}.jsonl").write_text("".join(json.dumps(rows[i]) + "\n" for i in parts[j]))
    with open(folder / "part-2.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows[i] for i in parts[2])
    pq.write_table(pa.Table.from_pylist([rows[i] for i in parts[3]]), folder / "part-3.parquet")
    return folder


def _single_process(bundle: Path, rows: list[dict[str, str]], tmp: Path) -> dict[str, dict[str, Any]]:
    """Output rows of the plain ``lite-rm score`` on all rows, by id."""
    src, out = tmp / "all.jsonl", tmp / "all.out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out), "--threads", "1",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


def _outputs(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(folder.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def _check_same(got: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    ids = [r["id"] for r in got]
    assert sorted(ids) == sorted(expected) and len(set(ids)) == len(ids)  # nothing lost, nothing twice
    for row in got:
        want = expected[row["id"]]
        assert set(row) == set(want) == {*COLUMNS, "line", "score"}
        assert row["prompt"] == want["prompt"] and row["response"] == want["response"]
        assert row["score"] == pytest.approx(want["score"], abs=1e-6)


def test_cli_ray_engine_equals_single_process(cluster: None, bundle: Path, dsp_rows: list[dict[str, str]],
                                              tmp_path: Path) -> None:
    shards = _write_shards(dsp_rows, tmp_path / "shards")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(shards), "-o", str(out), "--engine", "ray",
                                       "--workers", "2", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == len(dsp_rows) and {s["status"] for s in report["shards"]} == {"scored"}
    _check_same(_outputs(out), _single_process(bundle, dsp_rows, tmp_path))
    assert not list(out.glob("*.partial")) and not list(out.glob(".*"))  # no temporary file left

    # A rerun skips every finished shard and leaves the outputs as they were.
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.jsonl")}
    again = score_dataset(bundle, shards, out, workers=2)
    assert again.rows == 0 and {s["status"] for s in again.shards} == {"done before"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.jsonl")} == before


def test_threads_zero_on_ray_divides_the_free_cores_among_the_actors(cluster: None, bundle: Path,
                                                                      dsp_rows: list[dict[str, str]],
                                                                      tmp_path: Path) -> None:
    from lite_rm.jobs.distributed import ShardOptions
    from lite_rm.threads import usable_cores

    class Counted(ShardScorer):  # defined here: Ray pickles it by value
        """Also says how many actors its threads were divided among, and how many it got."""

        def __init__(self, bundle: str, output_dir: str, options: ShardOptions | None = None,
                     actors: int = 1) -> None:
            super().__init__(bundle, output_dir, options, actors)
            self.actors = actors

        def __call__(self, batch: Any) -> dict[str, list[Any]]:
            out = super().__call__(batch)
            return out | {"actors": [self.actors] * len(out["shard"]),
                          "threads": [self.scorer.streams] * len(out["shard"])}

    report = score_dataset(bundle, _write_shards(dsp_rows, tmp_path / "shards"), tmp_path / "out", workers=2,
                           options=ShardOptions(threads=0), scorer_class=Counted)
    assert {s["status"] for s in report.shards} == {"scored"}
    assert {s["actors"] for s in report.shards} == {2}
    assert all(1 <= s["threads"] <= max(1, usable_cores() // 2) for s in report.shards)
    assert len({s["threads"] for s in report.shards}) == 1  # sampled once, by the driver


def test_cli_threads_zero_on_ray_means_free_cores(cluster: None, bundle: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm.jobs import distributed

    seen: dict[str, Any] = {}

    def fake_score_dataset(bundle: str, inputs: str, output_dir: str, *, workers: int,
                           options: distributed.ShardOptions) -> distributed.DatasetReport:
        seen.update(workers=workers, options=options)
        return distributed.DatasetReport([], 0.0, workers)

    monkeypatch.setattr(distributed, "score_dataset", fake_score_dataset)
    (tmp_path / "part-0.jsonl").write_text(json.dumps({"prompt": "q", "response": "r"}) + "\n")
    for flags, threads in (([], 0), (["--threads", "0"], 0), (["--threads", "3"], 3)):
        result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(tmp_path / "part-0.jsonl"), "-o",
                                           str(tmp_path / "out"), "--engine", "ray", "--workers", "2", *flags])
        assert result.exit_code == 0, result.output
        assert seen["options"].threads == threads and seen["options"].num_cpus == (threads or 1)


def test_shard_and_bundle_scorers_share_the_free_cores(bundle: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm import threads
    from lite_rm.jobs.distributed import ShardOptions

    monkeypatch.setattr(threads, "free_cores", lambda sample_seconds=0.2: 5)
    assert BundleScorer(str(bundle), threads=0, actors=2).scorer.streams == 2
    assert BundleScorer(str(bundle), threads=0, actors=8).scorer.streams == 1  # at least 1
    assert BundleScorer(str(bundle)).scorer.streams == 1  # the default: one per actor
    assert BundleScorer(str(bundle), threads=3, actors=2).scorer.streams == 3  # given: per actor
    assert ShardScorer(str(bundle), str(tmp_path), ShardOptions(threads=0), actors=2).scorer.streams == 2
    with pytest.raises(ValueError, match="ShardOptions.threads"):
        ShardOptions(threads=-1)


def test_worker_killed_mid_shard_resumes_without_loss_or_duplicates(
        cluster: None, bundle: Path, dsp_rows: list[dict[str, str]], tmp_path: Path) -> None:
    from lite_rm.jobs.batch_scoring import score_file

    shards = _write_shards(dsp_rows, tmp_path / "shards")
    out, marker = tmp_path / "out", tmp_path / "died-once"

    class DiesOnce(ShardScorer):
        """Writes the first rows of a JSONL shard and half a row, then the process dies (once)."""

        def __call__(self, batch: Any) -> dict[str, list[Any]]:
            shard = Path(str(batch["shard"][0]))
            if shard.suffix == ".jsonl" and not marker.exists():
                marker.write_text("died")
                head, done = self.output_dir / "head.jsonl", self.output_dir / "head.out.jsonl"
                head.write_text("".join(shard.read_text().splitlines(keepends=True)[:5]))
                score_file(self.scorer, head, done, progress=False)
                head.unlink()
                with open(done, "a") as fh:
                    fh.write('{"id": "torn')  # the row being written when the worker died
                done.rename(self.output_dir / (output_name(shard) + ".partial"))
                os._exit(1)
            return super().__call__(batch)

    report = score_dataset(bundle, shards, out, workers=2, scorer_class=DiesOnce)
    assert marker.exists()  # a worker did die
    assert report.rows > 0 and len(report.shards) == 4
    _check_same(_outputs(out), _single_process(bundle, dsp_rows, tmp_path))


def test_list_shards_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no shard found"):
        list_shards(tmp_path)
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "a.csv").write_text("x\n")
    with pytest.raises(ValueError, match="a.jsonl"):
        list_shards(tmp_path)
    assert output_name(Path("p-1.csv.gz")) == "p-1.jsonl"


def test_an_empty_shard_writes_an_empty_output(cluster: None, bundle: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "part-0.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "response": "r"}) + "\n"
                                                 for i in range(3)))
    (shards / "part-1.jsonl").write_text("")
    out = tmp_path / "out"
    report = score_dataset(bundle, shards, out, workers=1)
    status = {Path(s["shard"]).name: s["status"] for s in report.shards}
    assert status == {"part-0.jsonl": "scored", "part-1.jsonl": "empty"} and report.rows == 3
    assert (out / "part-1.jsonl").read_text() == "" and "1 empty" in report.summary()
    again = score_dataset(bundle, shards, out, workers=1)  # a rerun no longer stops at it
    assert {s["status"] for s in again.shards} == {"done before"}


def test_a_bad_row_names_shard_line_and_field_and_skip_invalid_matches_local(
        cluster: None, bundle: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "response": f"answer {i}"} for i in range(6)]
    rows[2]["response"] = 5  # type: ignore[assignment]
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "response": "fine"}, {"prompt": "p2"}]),
                   shards / "part-1.parquet")
    out = tmp_path / "out"
    args = ["score", str(bundle), "-i", str(shards), "-o", str(out), "--engine", "ray", "--workers", "1",
            "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "shard part-0.jsonl" in result.output and "line 3" in result.output and "'response'" in result.output
    assert "shard part-1.parquet" in result.output and "line 2" in result.output and ".input.jsonl" not in result.output
    assert "To change retry" not in result.output and "--skip-invalid" in result.output
    assert not list(out.glob(".*input.jsonl"))
    result = CliRunner().invoke(main, [*args, "--skip-invalid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["skipped"] == 2 and {s["status"] for s in report["shards"]} == {"scored"}  # resumed: the rest
    assert len((out / "part-1.jsonl").read_text().splitlines()) == 1
    local = tmp_path / "local.jsonl"
    ran = CliRunner().invoke(main, ["score", str(bundle), "-i", str(shards / "part-0.jsonl"), "-o", str(local),
                                    "--threads", "1", "--skip-invalid", "--no-progress"])
    assert ran.exit_code == 0, ran.output
    ray_rows = [json.loads(line) for line in (out / "part-0.jsonl").read_text().splitlines()]
    local_rows = [json.loads(line) for line in local.read_text().splitlines()]
    assert [r["line"] for r in ray_rows] == [r["line"] for r in local_rows] == [1, 2, 4, 5, 6]
    assert [r["score"] for r in ray_rows] == pytest.approx([r["score"] for r in local_rows], abs=1e-6)


# -- BundleScorer on the user's own Dataset (issue 28) -------------------------------------------------------


@pytest.mark.parametrize("batch_format", ["pandas", "numpy", "pyarrow"])
def test_bundle_scorer_maps_a_users_dataset(cluster: None, bundle: Path, dsp_rows: list[dict[str, str]],
                                            batch_format: str) -> None:
    from lite_rm.scoring.scorer import Scorer

    rows = [{"id": r["id"], "question": r["prompt"], "answer": r["response"]} for r in dsp_rows[:40]]
    ds = ray.data.from_items(rows, override_num_blocks=4)
    scored = ds.map_batches(BundleScorer, fn_constructor_kwargs={
        "bundle": str(bundle), "prompt_column": "question", "response_column": "answer", "output_column": "reward"},
        concurrency=2, batch_size=8, batch_format=batch_format, num_cpus=1).take_all()
    expected = Scorer(bundle, threads=1).score_pairs([r["question"] for r in rows], [r["answer"] for r in rows])
    by_id = {r["id"]: r for r in scored}
    assert len(by_id) == len(rows) and set(scored[0]) == {"id", "question", "answer", "reward"}
    np.testing.assert_allclose([by_id[r["id"]]["reward"] for r in rows], expected, atol=1e-6)


def test_bundle_scorer_loads_the_bundle_once_per_actor(cluster: None, bundle: Path,
                                                        dsp_rows: list[dict[str, str]]) -> None:
    class Tagged(BundleScorer):  # defined here: Ray pickles it by value (a test module is not importable there)
        """Also says which actor's Scorer scored each row."""

        def __call__(self, batch: Any) -> Any:
            out = super().__call__(batch)
            return out.assign(scorer=f"{os.getpid()}-{id(self.scorer)}")

    ds = ray.data.from_items(dsp_rows[:40], override_num_blocks=8)
    scored = ds.map_batches(Tagged, fn_constructor_kwargs={"bundle": str(bundle)}, concurrency=2,
                            batch_size=4, batch_format="pandas", num_cpus=1).take_all()
    assert len(scored) == 40 and 1 <= len({r["scorer"] for r in scored}) <= 2  # 10 batches, at most 2 loads


def test_bundle_scorer_errors_name_the_column(bundle: Path) -> None:
    import pandas as pd

    scorer = BundleScorer(str(bundle))
    with pytest.raises(ValueError, match="no column 'prompt' in the batch .*question.*prompt_column="):
        scorer(pd.DataFrame({"question": ["q"], "response": ["r"]}))
    with pytest.raises(ValueError, match=r"'prompt', 'response'\): responses\[1\]: expected a string"):
        scorer({"prompt": np.array(["q", "q"], dtype=object), "response": np.array(["r", None], dtype=object)})
    empty = scorer({"prompt": np.array([], dtype=object), "response": np.array([], dtype=object)})
    assert empty["score"].shape == (0,)
