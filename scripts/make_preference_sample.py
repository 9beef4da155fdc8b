"""Generate trainer/data/preferences_sample.jsonl: the bundled preference pairs for the offline DPO/ORPO demo.

TRL's conversational format with an implicit prompt: `chosen` and `rejected` are the same conversation up to the last
turn, the assistant's answer. The chosen answer is right and says how; the rejected one is wrong or refuses.
`--check` exits 1 when the committed file is not what this script generates.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

OUTPUT_PATH = Path(__file__).resolve().parent.parent / "trainer" / "data" / "preferences_sample.jsonl"
SEED = 3407
NUM_PAIRS = 64
SYSTEM = "You are a careful assistant. Answer correctly and show the step that gets you there."
CAPITALS = [("France", "Paris", "Lyon"), ("Japan", "Tokyo", "Osaka"), ("Canada", "Ottawa", "Toronto"),
            ("Australia", "Canberra", "Sydney"), ("Brazil", "Brasilia", "Rio de Janeiro"), ("Kenya", "Nairobi",
            "Mombasa"), ("Peru", "Lima", "Cusco"), ("Norway", "Oslo", "Bergen"), ("Egypt", "Cairo", "Alexandria"),
            ("Portugal", "Lisbon", "Porto"), ("Turkey", "Ankara", "Istanbul"), ("Morocco", "Rabat", "Casablanca")]
WORDS = ["planet", "garden", "window", "rocket", "pencil", "orange", "library", "river", "bicycle", "castle",
         "rainbow", "camera", "mirror", "pepper", "guitar", "jungle"]
OPPOSITES = [("hot", "cold"), ("early", "late"), ("empty", "full"), ("light", "heavy"), ("open", "closed"),
             ("quiet", "loud"), ("sharp", "dull"), ("wide", "narrow")]
REFUSALS = ["I can't help with that.", "That is not something I can answer.", "Please ask someone else."]


def pair(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(["add", "multiply", "capital", "reverse", "opposite", "count"])
    refuse = rng.random() < 0.25
    if kind == "add":
        a, b = rng.randint(12, 89), rng.randint(12, 89)
        question, chosen = f"What is {a} + {b}?", f"{a} + {b} = {a + b}. The answer is {a + b}."
        rejected = f"{a} + {b} = {a + b + rng.choice([-10, -1, 1, 10])}."
    elif kind == "multiply":
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        question, chosen = f"What is {a} times {b}?", f"{a} × {b} = {a * b}. The answer is {a * b}."
        rejected = f"{a} × {b} = {a * b + rng.choice([-a, a, 1])}."
    elif kind == "capital":
        country, capital, city = rng.choice(CAPITALS)
        question = f"What is the capital of {country}?"
        chosen, rejected = f"The capital of {country} is {capital}.", f"The capital of {country} is {city}."
    elif kind == "reverse":
        word = rng.choice(WORDS)
        question = f'Spell "{word}" backwards.'
        chosen = f"Letters: {'-'.join(word)}. Reversed: {'-'.join(word[::-1])}. Answer: {word[::-1]}"
        rejected = f"Answer: {word[::-1][1:] + word[-1]}"
    elif kind == "opposite":
        word, opposite = rng.choice(OPPOSITES)
        question, chosen = f'What is the opposite of "{word}"?', f'The opposite of "{word}" is "{opposite}".'
        rejected = f'The opposite of "{word}" is "{word}er".'
    else:
        word = rng.choice(WORDS)
        letter = rng.choice(sorted(set(word)))
        n = word.count(letter)
        question = f'How many times does the letter "{letter}" appear in "{word}"?'
        chosen = f"{'-'.join(word)}: the letter \"{letter}\" appears {n} time{'s' if n != 1 else ''}."
        rejected = f'The letter "{letter}" appears {n + 1} times.'
    return question, chosen, rng.choice(REFUSALS) if refuse else rejected


def generate() -> str:
    rng = random.Random(SEED)
    lines, seen = [], set()
    while len(lines) < NUM_PAIRS:
        question, chosen, rejected = pair(rng)
        if question in seen:
            continue
        seen.add(question)
        prompt = ([{"role": "system", "content": SYSTEM}] if rng.random() < 0.2 else []) + [
            {"role": "user", "content": question}]
        lines.append(json.dumps({"chosen": [*prompt, {"role": "assistant", "content": chosen}],
                                 "rejected": [*prompt, {"role": "assistant", "content": rejected}]},
                                ensure_ascii=False))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args()
    text = generate()
    if args.check:
        if OUTPUT_PATH.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT_PATH} is not what {Path(__file__).name} generates: run it without --check",
                  file=sys.stderr)
            return 1
        return 0
    OUTPUT_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {NUM_PAIRS} pairs to {OUTPUT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
