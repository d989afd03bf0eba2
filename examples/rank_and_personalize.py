"""A desktop app's reward model: open a bundle, rank a few answers, then personalize from a user's clicks.

    python examples/rank_and_personalize.py BUNDLE_OR_ORG/NAME --profile alice.json

The user's head is written to ``--profile`` (a file the app keeps per user), never into the bundle, so one
bundle serves every user. Needs the core install plus ``lite-rm[personalize]`` (scikit-learn).
"""

from __future__ import annotations

import argparse

from lite_rm import Scorer

PROMPT = "How do I keep basil alive indoors?"
ANSWERS = [
    "Give it 6+ hours of sun by a south window, water when the top inch of soil is dry, and pinch off flowers.",
    "Basil is a plant.",
    "Water it a lot every day and keep it somewhere dark and cool.",
    "Sun, well-drained pot, water when dry. Pinch the tips so it bushes out.",
]
# A few clicks' worth of comparisons: this user picks the short, direct answer every time.
CLICKS = [
    ("How do I boil an egg?", "Boil 9 minutes, then cold water.",
     "Place the eggs in a saucepan, cover with cold water by an inch, bring to a rolling boil, cover, remove "
     "from the heat and let them stand for nine to twelve minutes before moving them to an ice bath."),
    ("Best way to learn git?", "Use it daily on a small project; read `git help` when stuck.",
     "There are many approaches to learning git, including books, courses, videos and interactive tutorials, "
     "each with their own advantages and disadvantages depending on your learning style."),
    ("How long should I nap?", "20 minutes.",
     "Nap length depends on many factors, including how tired you are, the time of day, and your sleep cycle; "
     "research suggests different durations have different effects."),
    ("How do I center a div?", "display: grid; place-items: center;",
     "Centering a div has historically been one of the most discussed problems in CSS, with many solutions "
     "involving margins, positioning, transforms, flexbox or grid, depending on the browser support needed."),
    ("Tea or coffee for focus?", "Tea: less jitter.",
     "Both tea and coffee contain caffeine, which can improve focus, but they differ in caffeine content, "
     "other compounds such as L-theanine, and how people respond to them individually."),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", help="a bundle folder, or a Hugging Face Hub repository org/name")
    parser.add_argument("--profile", default="alice.json", help="where the user's head is written")
    args = parser.parse_args(argv)

    scorer = Scorer.from_pretrained(args.bundle)
    print(f"{PROMPT}\n(general reward)")
    for record in scorer.rank(PROMPT, ANSWERS, return_documents=True):
        print(f"  {record['score']:+.3f}  {record['text'][:70]}")

    prompts, chosen, rejected = (list(column) for column in zip(*CLICKS, strict=True))
    report = scorer.personalize(prompts, chosen, rejected, name="alice", profile=args.profile)
    print(f"\nfit head 'alice' on {report.comparisons} comparisons: cross-validated accuracy {report.cv_accuracy:.2f}"
          f" -> {report.path}")
    if "warning" in report.extra:  # a handful of clicks may not be enough: the head says so
        print(f"  warning: {report.extra['warning']}")

    # An app opens the bundle once and loads each user's profile: Scorer(bundle, head=profile) does both.
    print(f"\n{PROMPT}\n(alice's reward)")
    for record in scorer.rank(PROMPT, ANSWERS, head="alice", return_documents=True):
        print(f"  {record['score']:+.3f}  {record['text'][:70]}")


if __name__ == "__main__":
    main()
