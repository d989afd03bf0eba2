"""Every real file of ../shared/data loads with the counts of its README."""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_rm.data import DSP_DOMAINS, load_preferences

# file -> (records, pairs before dropping ties) from ../shared/data/README.md
GENERAL = {
    "general/helpful.train.json": 1622, "general/helpful.test.json": 366,
    "general/harmless.train.json": 1642, "general/harmless.test.json": 337,
    "general/webgpt.train.json": 626, "general/webgpt.test.json": 140,
    "hh-rlhf/harmless-base/test.jsonl.gz": 1979,
}


@pytest.mark.parametrize("name", sorted(GENERAL))
def test_general_files(data_dir: Path, name: str) -> None:
    loaded = load_preferences(data_dir / name)
    report = loaded.report
    assert report.records == GENERAL[name]
    assert report.pairs + report.ties + report.identical == GENERAL[name]  # one pair per record
    assert report.skipped_total == 0
    if "webgpt" in name:
        assert 0.2 < report.ties / report.records < 0.4  # "about a quarter are ties"
    else:
        assert report.ties == 0
    assert all(p.prompt and (p.chosen or p.rejected) for p in loaded)  # an empty reply can be preferred


@pytest.mark.parametrize("split,items,per_domain", [("train", 384, 1536), ("test", 136, 544)])
def test_dsp_files(data_dir: Path, split: str, items: int, per_domain: int) -> None:
    for domain in DSP_DOMAINS:
        loaded = load_preferences(data_dir / f"dsp/{split}.json", domain=domain, listwise=True)
        report = loaded.report
        assert report.records == items
        # The README counts 4 pairs per query; the few identical responses carry no preference.
        assert report.pairs + report.identical == per_domain
        assert report.identical < 0.03 * per_domain
        assert {p.rejected_label for p in loaded} == set(DSP_DOMAINS) - {domain} | {"normal"}


def test_hh_upstream_matches_cleaned_harmless(data_dir: Path) -> None:
    upstream = {(p.prompt, p.chosen, p.rejected) for p in load_preferences(data_dir / "hh-rlhf/harmless-base/test.jsonl.gz")}
    cleaned = {(p.prompt, p.chosen, p.rejected) for p in load_preferences(data_dir / "general/harmless.test.json")}
    assert len(cleaned & upstream) > 0.9 * len(cleaned)


def test_train_and_test_share_no_prompt(data_dir: Path) -> None:
    for train, test in [("general/helpful.train.json", "general/helpful.test.json"),
                        ("general/harmless.train.json", "general/harmless.test.json")]:
        a = {p.prompt for p in load_preferences(data_dir / train)}
        b = {p.prompt for p in load_preferences(data_dir / test)}
        assert not a & b
