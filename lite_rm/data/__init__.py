"""Preference data: records, readers for every supported format, splitting. Torch-free."""

from lite_rm.data.formats import DSP_DOMAINS, FORMATS
from lite_rm.data.loading import load_preferences
from lite_rm.data.locations import resolve_data_dir
from lite_rm.data.records import DataError, LoadReport, PreferencePair, PreferenceSet, RankedList, Skips
from lite_rm.data.splitting import split_by_prompt

__all__ = [
    "DSP_DOMAINS",
    "FORMATS",
    "DataError",
    "LoadReport",
    "PreferencePair",
    "PreferenceSet",
    "RankedList",
    "Skips",
    "load_preferences",
    "resolve_data_dir",
    "split_by_prompt",
]
