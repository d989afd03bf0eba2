"""Write the quick start's sample preference files (hand-written, no third-party data).

A toy preference, like one user's or one help desk's: a short, specific answer is preferred over a
vague one, a dismissive one and the same answer padded with filler. Prompts are split by a hash of the
prompt (as lite-rm splits), so no prompt sits in both files. Deterministic: rerunning it rewrites the
committed files byte for byte (tests/test_docs_links.py checks this).

    python examples/data/make_sample.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (topic word used by the vague answers, prompt, preferred answer)
QA: list[tuple[str, str, str]] = [
    ("eggs", "How long should I boil an egg for a runny yolk?",
     "Lower the egg into boiling water and cook it for 6 minutes, then cool it in cold water for 1 minute."),
    ("eggs", "How do I make hard-boiled eggs easier to peel?",
     "Use eggs that are a week old, start them in boiling water and put them in ice water right after cooking."),
    ("rice", "How much water do I need for white rice?",
     "Use about 1.5 cups of water per cup of long-grain rice, simmer covered for 15 minutes, then rest 5 minutes."),
    ("pasta", "How much salt goes in pasta water?",
     "About 1 tablespoon of salt per 4 litres of water; add it once the water boils."),
    ("bread", "Why did my bread come out dense?",
     "Usually the dough did not rise long enough or the yeast was old; let it double in size and test the yeast "
     "in warm water first."),
    ("coffee", "What coffee-to-water ratio should I use for drip coffee?",
     "Start with 1 gram of coffee per 16 grams of water, about 60 grams per litre, and adjust to taste."),
    ("tea", "How hot should the water be for green tea?",
     "Around 75 to 80 °C; boiling water makes green tea bitter, so let the kettle cool for a few minutes."),
    ("steak", "How do I know when a steak is medium-rare?",
     "Use a thermometer: take it off the heat at about 52 °C in the centre and rest it for 5 minutes."),
    ("onions", "How can I cut onions without crying?",
     "Chill the onion for 15 minutes and use a sharp knife; a dull blade crushes cells and releases more gas."),
    ("avocado", "How do I ripen an avocado faster?",
     "Put it in a paper bag with a banana or an apple at room temperature; it usually ripens in 1 to 3 days."),
    ("soup", "My soup is too salty. How do I fix it?",
     "Add unsalted stock or water, or more vegetables, and simmer; a squeeze of lemon also balances the salt."),
    ("cookies", "Why do my cookies spread too much?",
     "The butter is probably too warm: chill the dough for 30 minutes and check that your oven is hot enough."),
    ("garlic", "How do I peel garlic quickly?",
     "Crush each clove lightly with the flat of a knife; the skin then comes off in one piece."),
    ("herbs", "How do I keep fresh basil from wilting?",
     "Trim the stems and keep the basil in a glass of water on the counter, not in the fridge."),
    ("freezer", "Can I refreeze thawed chicken?",
     "Yes, if it was thawed in the fridge and kept cold; if it was thawed on the counter, cook it first."),
    ("tomatoes", "How often should I water tomato plants?",
     "Water deeply 2 to 3 times a week so the soil stays evenly moist; water at the base, not the leaves."),
    ("basil plant", "Why are my basil leaves turning yellow?",
     "Most often overwatering: let the top 2 cm of soil dry between waterings and make sure the pot drains."),
    ("lawn", "When is the best time to water a lawn?",
     "Early morning, before 10 am, so the water soaks in before it evaporates and the grass dries by evening."),
    ("compost", "What should not go in a home compost bin?",
     "Leave out meat, fish, dairy, oils and pet waste; they smell and attract pests."),
    ("houseplants", "How do I know if my houseplant needs water?",
     "Push a finger 2 to 3 cm into the soil; if it is dry at that depth, water until it drains from the bottom."),
    ("succulents", "How much light do succulents need?",
     "At least 6 hours of bright light a day; a south- or west-facing window works well indoors."),
    ("roses", "When should I prune roses?",
     "In late winter or early spring, as the buds begin to swell; cut just above an outward-facing bud."),
    ("seeds", "How deep should I plant seeds?",
     "As a rule, about two to three times as deep as the seed is wide; tiny seeds just on the surface."),
    ("aphids", "How do I get rid of aphids on my plants?",
     "Spray them off with a strong jet of water, then use insecticidal soap every few days if they return."),
    ("laptop", "My laptop is running slowly. What can I do?",
     "Close programs you are not using, check the task manager for anything using a lot of CPU, and restart it."),
    ("password", "How do I make a strong password?",
     "Use a password manager, or at least four random words joined together, and never reuse it on other sites."),
    ("wifi", "Why is my Wi-Fi slow in one room?",
     "Walls and distance weaken the signal; move the router to a central spot or add a mesh point near that room."),
    ("backup", "How should I back up my photos?",
     "Keep three copies: the originals, one on an external drive and one in a cloud service."),
    ("phone battery", "How can I make my phone battery last longer?",
     "Lower the screen brightness, turn off background app refresh and use the battery saver mode."),
    ("spreadsheet", "How do I add up a column in a spreadsheet?",
     "Click the cell below the numbers and type =SUM(A1:A10), using your own first and last cell."),
    ("email", "How do I stop getting so much spam email?",
     "Mark spam as spam so the filter learns, unsubscribe from real newsletters and never reply to spam."),
    ("printer", "My printer says it is offline. How do I fix it?",
     "Turn the printer off and on, check it is on the same Wi-Fi network, then remove and re-add it in settings."),
    ("screenshot", "How do I take a screenshot on Windows?",
     "Press Windows + Shift + S, select an area, and paste the picture wherever you need it."),
    ("git", "How do I undo my last git commit but keep the changes?",
     "Run git reset --soft HEAD~1; the commit is removed and its changes stay staged."),
    ("python", "How do I read a text file in Python?",
     "Use with open('file.txt', encoding='utf-8') as f: text = f.read(); the file is closed for you."),
    ("running", "How should a beginner start running?",
     "Alternate 1 minute of running with 2 minutes of walking for 20 minutes, three times a week."),
    ("stretching", "Should I stretch before or after exercise?",
     "Warm up with light movement before exercise, and keep longer static stretches for afterwards."),
    ("sleep", "How can I fall asleep faster?",
     "Keep a fixed bedtime, avoid screens for an hour before bed and keep the bedroom cool and dark."),
    ("water intake", "How much water should I drink a day?",
     "Most adults need around 2 litres from drinks and food; drink more in heat or when you exercise."),
    ("back pain", "How can I avoid back pain at my desk?",
     "Set the screen at eye level, keep your feet flat, and stand up and move for a minute every half hour."),
    ("push-ups", "How do I get better at push-ups?",
     "Do three sets a few times a week, starting on your knees or against a wall, and add a few each week."),
    ("walking", "Is walking good exercise?",
     "Yes: 30 minutes of brisk walking on most days improves heart health and is easy on the joints."),
    ("headache", "What can I do about a tension headache?",
     "Drink water, rest your eyes, relax your neck and shoulders, and take a standard dose of a pain reliever."),
    ("budget", "How do I start a monthly budget?",
     "List your income, then your fixed costs, set amounts for food and fun, and save a fixed share first."),
    ("savings", "How big should an emergency fund be?",
     "Aim for three to six months of essential expenses, kept in an easy-to-reach savings account."),
    ("credit score", "How can I improve my credit score?",
     "Pay every bill on time, keep card balances under 30% of the limit and avoid opening many new accounts."),
    ("groceries", "How can I spend less on groceries?",
     "Plan meals for the week, shop with a list, buy store brands and cook larger batches to freeze."),
    ("subscriptions", "How do I find subscriptions I forgot about?",
     "Go through three months of bank and card statements and list every recurring charge."),
    ("packing", "How do I pack light for a week-long trip?",
     "Take clothes that mix and match, plan to do laundry once, and roll clothes to save space."),
    ("jet lag", "How can I reduce jet lag?",
     "Shift your sleep by an hour a day before you leave, get daylight on arrival and avoid long naps."),
    ("passport", "How early should I renew my passport?",
     "Renew it at least six months before it expires; many countries refuse entry with less validity left."),
    ("flights", "When is the best time to book a flight?",
     "For most trips, one to three months ahead; compare prices over a few days and set a price alert."),
    ("luggage", "What should go in my carry-on bag?",
     "Medicine, documents, chargers, a change of clothes and anything valuable or fragile."),
    ("bike", "How often should I pump up my bike tyres?",
     "Check them every week; road tyres lose pressure quickly, so pump to the pressure printed on the tyre."),
    ("car", "How often should I check my car's oil?",
     "Once a month and before long trips, with the engine cool and the car on level ground."),
    ("windshield", "How do I defog my car windshield quickly?",
     "Turn on the air conditioning with the heat, set it to fresh air and crack a window slightly."),
    ("tyres", "How do I check tyre tread depth?",
     "Put a coin into the groove; if you can see the outer band, the tread is below the safe limit."),
    ("paint", "How do I paint a wall without streaks?",
     "Use a good roller, keep a wet edge and paint in overlapping W shapes, then apply a second coat."),
    ("drain", "How do I unclog a slow sink drain?",
     "Remove and clean the stopper, then pour in half a cup of baking soda and a cup of vinegar and flush."),
    ("mould", "How do I remove mould from bathroom grout?",
     "Scrub it with a paste of baking soda and water, or a diluted bleach solution, and ventilate the room."),
    ("shelf", "How do I hang a heavy shelf on drywall?",
     "Screw it into the wall studs, found with a stud finder, or use heavy-duty toggle anchors."),
    ("laundry", "How do I get a red wine stain out of a shirt?",
     "Blot it, rinse it from the back with cold water, then rub in dish soap and wash before it dries."),
    ("ironing", "How do I iron a shirt quickly?",
     "Iron the collar, then the cuffs and sleeves, then the back and the front panels, while slightly damp."),
    ("fridge", "How do I get rid of a smell in the fridge?",
     "Throw out old food, wipe the shelves with baking soda and water, and leave an open box of baking soda in."),
    ("dog", "How often should I walk my dog?",
     "Most dogs need at least two walks a day, 30 minutes or more in total; active breeds need more."),
    ("cat", "Why does my cat scratch the furniture?",
     "Scratching is normal; give it a tall, sturdy scratching post next to the furniture and reward it there."),
    ("puppy", "How do I house-train a puppy?",
     "Take it outside after every meal, nap and play session, and praise it right after it goes outside."),
    ("fish tank", "How often should I clean a fish tank?",
     "Change 10 to 20 percent of the water every week and rinse the filter in old tank water once a month."),
    ("meeting", "How do I run a shorter meeting?",
     "Send an agenda in advance, start on time, give each topic a time limit and end with clear next steps."),
    ("resume", "How long should my CV be?",
     "One page for early-career roles and two pages at most for experienced ones; put recent work first."),
    ("interview", "How should I prepare for a job interview?",
     "Research the company, prepare three stories about your work, and practise answers out loud."),
    ("email tone", "How do I write a polite follow-up email?",
     "Keep it short: remind them of your first message, restate the question and suggest a date to reply by."),
    ("focus", "How can I focus better when working from home?",
     "Work in 25-minute blocks with short breaks, keep a separate work spot and silence notifications."),
    ("procrastination", "How do I stop procrastinating on a big task?",
     "Break it into steps small enough to start in five minutes, and begin with the easiest one."),
    ("public speaking", "How do I get less nervous about public speaking?",
     "Practise the talk aloud several times, know your first minute by heart and breathe slowly before you start."),
    ("language", "What is a good way to learn a new language?",
     "Practise 15 minutes every day with an app or flashcards, and speak with a partner once a week."),
    ("math", "How do I calculate a percentage of a number?",
     "Multiply the number by the percentage and divide by 100; 15% of 80 is 80 x 15 / 100 = 12."),
    ("reading", "How can I read more books?",
     "Carry a book or e-reader everywhere, read for 20 minutes before bed and drop books you do not enjoy."),
    ("notes", "What is a good way to take notes in class?",
     "Write key ideas in your own words, leave space for questions and review the notes within a day."),
    ("exam", "How should I study for an exam?",
     "Test yourself with past questions, space your study over several days and sleep well the night before."),
    ("gift", "What is a good gift for a coworker?",
     "Something small and useful, like good coffee, a plant or a notebook, within the office's usual budget."),
    ("party", "How much food should I make for a party of 20?",
     "Plan about 5 to 6 bite-sized pieces per person per hour, so around 400 pieces for a 3- to 4-hour party."),
    ("thank-you note", "What should I write in a thank-you note?",
     "Name the gift or favour, say how you used it or why it mattered, and end with a warm closing."),
    ("moving", "How do I make moving house easier?",
     "Start packing a room at a time two weeks early, label boxes by room and keep an essentials box apart."),
    ("noise", "How can I block noise from neighbours?",
     "Use a rug and heavy curtains, seal gaps around the door, and try a white noise machine at night."),
    ("energy bill", "How can I lower my heating bill?",
     "Lower the thermostat by 1 °C, seal draughts around windows and doors, and heat only the rooms you use."),
    ("recycling", "Can pizza boxes be recycled?",
     "Clean parts can; tear off the greasy parts and put those in compost or general waste."),
    ("sunscreen", "How much sunscreen should I use?",
     "About a shot glass for the whole body, reapplied every two hours and after swimming."),
    ("hiccups", "How do I get rid of hiccups?",
     "Hold your breath for 10 seconds, or sip cold water slowly; they usually stop within minutes."),
    ("cold", "What helps a common cold?",
     "Rest, drink plenty of fluids and use saline spray; most colds clear up within a week."),
    ("coffee stain", "How do I clean coffee stains from a mug?",
     "Scrub with a paste of baking soda and a little water, then rinse; it lifts stains without scratching."),
    ("knife", "How do I keep kitchen knives sharp?",
     "Hone them before each use and sharpen them on a whetstone every few months; never put them in the dishwasher."),
    ("cast iron", "How do I clean a cast iron pan?",
     "Wash it with hot water and a brush, dry it on the hob, then rub in a thin layer of oil."),
    ("map", "How do I download maps for offline use?",
     "In your map app, search for the area, open its menu and choose download offline map while on Wi-Fi."),
    ("photos", "How do I take sharper photos with my phone?",
     "Clean the lens, tap the subject to focus, hold the phone with both hands and use good light."),
    ("video call", "How do I look better on video calls?",
     "Face a window for light, raise the camera to eye level and use a plain background."),
    ("keyboard", "How do I clean a laptop keyboard?",
     "Turn it off, tip it upside down, use compressed air between keys and wipe with a slightly damp cloth."),
    ("storage", "My phone storage is full. What should I delete first?",
     "Check storage settings for the largest apps, clear old videos and downloads, and back up photos to the cloud."),
    ("router", "How often should I restart my router?",
     "Only when the connection misbehaves; restarting it once a month is harmless if it helps."),
]

VAGUE = [
    "It depends on a lot of things with {t}, so there is no single answer.",
    "There are many opinions about {t}. You will figure out what works for you.",
    "{T} is a complicated subject. Maybe try a few things and see.",
    "Everyone does {t} differently, so it is hard to say.",
]
PADDING = [
    ("Great question! There are a lot of things to think about here, and people often get this wrong. ",
     " I hope this helps, and good luck with everything!"),
    ("Thanks for asking. Before I answer, it is worth saying that this is something many people wonder about. ",
     " Let me know if you have any other questions at all, I am always happy to help."),
    ("Well, that is a really interesting thing to ask, and I am glad you did. Here is what I would say. ",
     " Of course, every situation is different, so take this as a general idea only."),
]
DISMISSIVE = [
    "Just search online, it is all out there.",
    "Why are you asking me? Ask someone who cares.",
    "I don't know. Does it matter?",
    "That's an odd question. Figure it out yourself.",
]


def _bucket(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def rows() -> list[dict[str, str]]:
    """Three pairs per prompt: over a vague, a dismissive and a padded answer."""
    out = []
    for i, (topic, prompt, good) in enumerate(QA):
        before, after = PADDING[i % len(PADDING)]
        vague = VAGUE[i % len(VAGUE)].format(t=topic, T=topic[0].upper() + topic[1:])
        dismissive = DISMISSIVE[(i // len(VAGUE)) % len(DISMISSIVE)]
        for rejected in (vague, dismissive, before + good + after):
            out.append({"prompt": prompt, "chosen": good, "rejected": rejected})
    return out


def build() -> dict[str, str]:
    """The three files' names and contents."""
    train, test = [], []
    for row in rows():
        (test if _bucket(row["prompt"]) < 0.2 else train).append(row)
    # (prompt, response) rows to score: the first three held-out prompts, each with its four answers.
    answers = []
    for first in range(0, 9, 3):
        responses = [test[first]["chosen"]] + [r["rejected"] for r in test[first:first + 3]]
        answers += [{"prompt": test[first]["prompt"], "response": text} for text in responses]
    files = {"prefs-train.jsonl": train, "prefs-test.jsonl": test, "answers.jsonl": answers}
    return {name: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data) for name, data in files.items()}


def main() -> None:
    for name, text in build().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"{name}: {text.count(chr(10))} rows")


if __name__ == "__main__":
    main()
