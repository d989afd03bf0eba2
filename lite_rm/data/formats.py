"""Preference formats: turn one raw record into comparisons.

Formats (see ../shared/data/README.md and the README):

- ``dsp``: ``{"query", "responses": {domain: text}}``; the target domain's response is preferred over
  each other one.
- ``text-score``: ``{"text": [dialogue, ...], "score": [number, ...]}``; the highest score is preferred.
- ``hh-rlhf``: ``{"chosen": dialogue, "rejected": dialogue}`` (Anthropic's upstream files).
- ``pairs``: ``{"prompt", "chosen", "rejected"}`` as used by TRL and Hugging Face datasets; texts or
  conversational message lists (``[{"role", "content"}]``), with or without an explicit prompt; a
  conversation may also be given as ``messages`` (the prompt) with ``chosen``/``rejected`` replies.

Message lists become text with :func:`render_messages`, the one rendering used by training and scoring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lite_rm.data.records import DataError, PreferencePair, RankedList
from lite_rm.errors import ConfigError

FORMATS = ("dsp", "text-score", "hh-rlhf", "pairs")
# What ``--format`` / ``format=`` accept: a record format, or "hf" for a Hugging Face dataset (name or
# save_to_disk folder) whose format is then detected.
SOURCE_FORMATS = (*FORMATS, "hf")
DSP_DOMAINS = ("academy", "business", "entertainment", "literature")

# The assistant turn markers of the two dialogue styles in the general data:
# HH ("\n\nAssistant: ...") and WebGPT ("## Assistant:\n...").
_ASSISTANT = re.compile(r"(?:\n\nAssistant:|(?:^|\n)## Assistant:)")
_ROLE_NAMES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}


class Tie(Exception):
    """A comparison without a preference: equal scores."""


class Identical(Exception):
    """A comparison without a preference: the two responses are the same text."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text_field(record: Mapping[str, Any], key: str, loc: str) -> str:
    if key not in record:
        raise DataError(loc, f"field {key!r} is missing; found fields {sorted(record)}", "missing field")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(
            loc, f"field {key!r}: expected a string, found {_type_name(value)} {_short(value)}", "wrong type"
        )
    return value


def detect_format(record: Mapping[str, Any], loc: str) -> str:
    """Guess the format from the keys of the first record."""
    keys = set(record)
    if {"query", "responses"} <= keys:
        return "dsp"
    if {"text", "score"} <= keys:
        return "text-score"
    if {"chosen", "rejected"} <= keys:
        if "prompt" in keys or "messages" in keys or not isinstance(record["chosen"], str):
            return "pairs"
        return "hh-rlhf"
    raise DataError(
        loc,
        f"cannot tell the format from the fields {sorted(keys)}; expected one of: "
        "'query'+'responses' (dsp), 'text'+'score' (text-score), 'chosen'+'rejected' (hh-rlhf), "
        "'prompt'+'chosen'+'rejected' (pairs). Choose the format explicitly, or map your column names "
        "(e.g. --column prompt=question)",
        "unknown format",
    )


def split_dialogues(texts: Sequence[str], loc: str, field: str) -> tuple[str, list[str]]:
    """Split whole dialogues that share their history into (prompt, [last replies]).

    The prompt is the longest common prefix that ends at an assistant marker (as TRL's
    ``extract_prompt`` does), so a reply that itself contains a marker-like line is not cut short.
    """
    common = texts[0]
    for text in texts[1:]:
        n = 0
        limit = min(len(common), len(text))
        while n < limit and common[n] == text[n]:
            n += 1
        common = common[:n]
    marks = list(_ASSISTANT.finditer(common))
    if not marks:
        for i, text in enumerate(texts):
            if not _ASSISTANT.search(text):
                raise DataError(
                    loc,
                    f"field {field!r}[{i}]: expected a dialogue ending with an assistant turn "
                    "('\\n\\nAssistant:' or '## Assistant:'), found none in " + _short(text),
                    "no assistant turn",
                )
        # Dialogues that differ before their first assistant marker: fall back to each text's own
        # last marker (prompts then differ; the first one's is kept).
        first = list(_ASSISTANT.finditer(texts[0]))[-1]
        return texts[0][: first.start()].strip(), [t[_after_last_marker(t):].strip() for t in texts]
    end = marks[-1].end()
    prompt = common[: marks[-1].start()]
    return prompt.strip(), [text[end:].strip() for text in texts]


def _after_last_marker(text: str) -> int:
    matches = list(_ASSISTANT.finditer(text))
    return matches[-1].end() if matches else 0


def render_messages(messages: Any, loc: str = "", field: str = "prompt") -> str:
    """A text, or a conversation ``[{"role", "content"}, ...]`` as text: ``"Human: ...\\n\\nAssistant:
    ..."`` (the dialogue style of the general training data); a single assistant message is its text.

    The one rendering of chat messages: training data and ``Scorer`` inputs both go through it, so a
    bundle scores a conversation as the checkpoint saw it.

    Args:
        messages: a string (returned as is) or a non-empty list of ``{"role": str, "content": str}``.
        loc: where the value came from, for errors (``"FILE line N"``).
        field: the field's name, for errors.

    Raises:
        DataError: neither a string nor a list of messages.
    """
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list) or not messages:
        raise DataError(
            loc,
            f"field {field!r}: expected a string or a non-empty list of {{'role', 'content'}} messages, "
            f"found {_type_name(messages)} {_short(messages)}",
            "wrong type",
        )
    parts = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or not all(isinstance(msg.get(k), str) for k in ("role", "content")):
            raise DataError(
                loc,
                f"field {field!r}[{i}]: expected a message {{'role': str, 'content': str}}, found {_short(msg)}",
                "wrong type",
            )
        role = _ROLE_NAMES.get(str(msg["role"]).lower(), str(msg["role"]).capitalize())
        parts.append(f"{role}: {msg['content']}")
    if len(messages) == 1 and str(messages[0]["role"]).lower() == "assistant":
        return str(messages[0]["content"])  # a single reply: its text alone, as in the text form
    return "\n\n".join(parts)


def pairs_from_record(
    fmt: str, record: Mapping[str, Any], loc: str, domain: str | None
) -> list[PreferencePair]:
    """Convert one record of format ``fmt``. Raises :class:`DataError`, :class:`Tie` or :class:`Identical`."""
    if fmt == "dsp":
        pairs = ranked_list_from_dsp(record, loc, domain).to_pairs()
        if not pairs:
            raise Identical
        return pairs
    if fmt == "text-score":
        return [_pair_from_text_score(record, loc)]
    if fmt == "hh-rlhf":
        chosen = _text_field(record, "chosen", loc)
        rejected = _text_field(record, "rejected", loc)
        if chosen == rejected:
            raise Identical
        prompt, (c, r) = split_dialogues([chosen, rejected], loc, "chosen")
        if c == r:
            raise Identical
        return [PreferencePair(prompt, c, r, loc)]
    if fmt == "pairs":
        return [_pair_from_pairs(record, loc)]
    raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer too large for a float (hundreds of digits)
        return False


def _pair_from_text_score(record: Mapping[str, Any], loc: str) -> PreferencePair:
    texts: Any = record.get("text")
    scores: Any = record.get("score")
    for key, value in (("text", texts), ("score", scores)):
        if value is None:
            raise DataError(loc, f"field {key!r} is missing; found fields {sorted(record)}", "missing field")
        if not isinstance(value, list):
            raise DataError(
                loc, f"field {key!r}: expected a list, found {_type_name(value)} {_short(value)}", "wrong type"
            )
    if len(texts) != len(scores):
        raise DataError(
            loc,
            f"fields 'text' and 'score': expected lists of the same length, found {len(texts)} texts "
            f"and {len(scores)} scores",
            "length mismatch",
        )
    if len(texts) < 2:
        raise DataError(loc, f"field 'text': expected at least 2 texts, found {len(texts)}", "too few texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(
                loc, f"field 'text'[{i}]: expected a string, found {_type_name(text)} {_short(text)}", "wrong type"
            )
    for i, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError(
                loc, f"field 'score'[{i}]: expected a number, found {_type_name(score)} {_short(score)}", "wrong type"
            )
        if not _finite(score):
            raise DataError(loc, f"field 'score'[{i}]: expected a finite number, found {_short(score)}", "NaN score")
    best = max(range(len(scores)), key=lambda i: scores[i])
    others = [i for i in range(len(scores)) if i != best]
    # The best over the runner-up: one pair per record, as the README's counts expect.
    second = max(others, key=lambda i: scores[i])
    if scores[second] == scores[best]:
        raise Tie
    if texts[best] == texts[second]:
        raise Identical
    prompt, (chosen, rejected) = split_dialogues([texts[best], texts[second]], loc, "text")
    if chosen == rejected:
        raise Identical
    return PreferencePair(prompt, chosen, rejected, loc)


def _pair_from_pairs(record: Mapping[str, Any], loc: str) -> PreferencePair:
    for key in ("chosen", "rejected"):
        if key not in record:
            raise DataError(loc, f"field {key!r} is missing; found fields {sorted(record)}", "missing field")
    chosen_raw, rejected_raw = record["chosen"], record["rejected"]
    key = "prompt" if "prompt" in record else "messages"
    if record.get(key) is not None:
        prompt = render_messages(record[key], loc, key) if record[key] != "" else ""
        chosen = render_messages(chosen_raw, loc, "chosen")
        rejected = render_messages(rejected_raw, loc, "rejected")
    elif isinstance(chosen_raw, list) and isinstance(rejected_raw, list):
        # Conversational with an implicit prompt: the shared leading messages are the prompt.
        render_messages(chosen_raw, loc, "chosen")
        render_messages(rejected_raw, loc, "rejected")
        n = 0
        while n < min(len(chosen_raw), len(rejected_raw)) - 1 and chosen_raw[n] == rejected_raw[n]:
            n += 1
        prompt = render_messages(chosen_raw[:n], loc, "chosen") if n else ""
        chosen = render_messages(chosen_raw[n:], loc, "chosen")
        rejected = render_messages(rejected_raw[n:], loc, "rejected")
    else:
        raise DataError(
            loc,
            f"field 'prompt' is missing; found fields {sorted(record)}. Expected 'prompt' (or 'messages') "
            "with 'chosen' and 'rejected', or conversational 'chosen'/'rejected' message lists",
            "missing field",
        )
    if chosen == rejected:
        raise Identical
    return PreferencePair(prompt, chosen, rejected, loc)


def ranked_list_from_dsp(record: Mapping[str, Any], loc: str, domain: str | None) -> RankedList:
    """The listwise view of one DSP item: five responses, the target domain's preferred."""
    query = _text_field(record, "query", loc)
    responses = record.get("responses")
    if not isinstance(responses, Mapping):
        raise DataError(
            loc,
            f"field 'responses': expected an object {{domain: response}}, found {_type_name(responses)}",
            "wrong type",
        )
    if domain is None:
        raise DataError(
            loc,
            "DSP data needs a target domain (its response is preferred over the others); choose one of "
            + ", ".join(sorted(k for k in responses if k != "normal")),
            "no domain",
        )
    if domain not in responses:
        raise DataError(
            loc,
            f"field 'responses': expected a response for domain {domain!r}, found domains {sorted(responses)}",
            "missing domain",
        )
    labels = tuple(responses)
    texts = []
    for label in labels:
        text = responses[label]
        if not isinstance(text, str):
            raise DataError(
                loc,
                f"field 'responses.{label}': expected a string, found {_type_name(text)} {_short(text)}",
                "wrong type",
            )
        texts.append(text)
    return RankedList(query, tuple(texts), labels, labels.index(domain), loc, domain)


def dsp_identical_count(lst: RankedList) -> int:
    """How many of a list's other responses equal the preferred one (dropped from the pairs)."""
    best = lst.responses[lst.preferred]
    return sum(1 for i, r in enumerate(lst.responses) if i != lst.preferred and r == best)
