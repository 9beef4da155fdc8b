"""Generate trainer/data/sample.jsonl: the bundled offline demo dataset, in FineTome-100k (ShareGPT) format."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from collections import namedtuple
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_PATH = REPO_ROOT / "trainer" / "data" / "sample.jsonl"

SEED = 3407
NUM_ROWS = 320
NUM_SYSTEM = 48  # 15% of rows start with a system prompt
NUM_MULTI = 48  # 15% of rows have 2 or 3 human/gpt exchanges

# --------------------------------------------------------------------------- shared vocabulary

PEOPLE = [
    ("Maya", "she"), ("Leo", "he"), ("Priya", "she"), ("Omar", "he"), ("Sofia", "she"),
    ("Kenji", "he"), ("Amara", "she"), ("Lucas", "he"), ("Nina", "she"), ("Tomas", "he"),
    ("Zara", "she"), ("Ivan", "he"),
]
CITIES = ["Lisbon", "Nairobi", "Toronto", "Osaka", "Lima", "Oslo", "Cairo", "Denver", "Seoul", "Dublin"]
WORDS = [
    "planet", "garden", "window", "rocket", "pencil", "orange", "banana", "strawberry", "library",
    "mountain", "river", "bicycle", "elephant", "computer", "keyboard", "butterfly", "chocolate",
    "umbrella", "volcano", "dragon", "kitchen", "teacher", "morning", "island", "puzzle", "balloon",
    "coffee", "summer", "winter", "forest", "pyramid", "tomato", "guitar", "castle", "jungle",
    "rainbow", "lemon", "camera", "ocean", "desert", "mirror", "pepper", "yellow", "giraffe",
    "sandwich", "notebook", "whisper", "cotton", "blanket", "history",
]
PALINDROMES = ["level", "radar", "kayak", "rotor", "civic", "refer", "madam", "noon", "stats"]
VOWELS = "aeiou"
MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
HEX_DIGITS = "0123456789ABCDEF"

SYSTEM_PROMPTS = {
    "math": [
        "You are a concise math tutor.",
        "You are a careful assistant. Show your steps, then give the final answer.",
    ],
    "language": ["You are a patient English teacher.", "You are a helpful assistant."],
    "code": [
        "You are a helpful programming assistant.",
        "You are an expert Python developer. Keep answers short.",
    ],
    "general": [
        "You are a helpful assistant.",
        "You are a knowledgeable assistant. Answer clearly and briefly.",
    ],
}

# --------------------------------------------------------------------------- small helpers


def listing(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(x) for x in items]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, word: str, plural_word: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural_word or word + 's')}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def dashed(word: str) -> str:
    return "-".join(word)


def fmt_round(value: Fraction, places: int) -> str:
    """Round half away from zero to `places` decimals, exactly (no float error)."""
    scaled = abs(Fraction(value)) * 10**places
    n = math.floor(scaled + Fraction(1, 2))
    sign = "-" if value < 0 and n != 0 else ""
    digits = str(n).rjust(places + 1, "0")
    if places == 0:
        return sign + digits
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def fmt_exact(value: Fraction) -> str:
    """Exact decimal form of a terminating fraction, without trailing zeros."""
    value = Fraction(value)
    for places in range(12):
        if (value * 10**places).denominator == 1:
            return fmt_round(value, places)
    raise ValueError(f"{value} has no short exact decimal form")


def money(value: Fraction) -> str:
    value = Fraction(value)
    return f"${fmt_exact(value)}" if value.denominator == 1 else f"${fmt_round(value, 2)}"


def sentence_case(text: str) -> str:
    return text[0].upper() + text[1:]


# --------------------------------------------------------------------------- task families
# Each task function takes the shared rng and returns a list of (human, gpt) exchanges:
# the first is the standalone question, the rest are follow-ups that refer back to it.


def task_word_problem(rng):
    name, pron = rng.choice(PEOPLE)
    Pron = pron.capitalize()
    kind = rng.choice(["boxes", "shopping", "sharing", "travel", "saving"])
    intro = rng.choice(["", "Solve step by step: ", "Word problem: "])

    if kind == "boxes":
        item = rng.choice(["apples", "pencils", "cookies", "marbles", "stickers", "oranges", "cards"])
        per_box = rng.randint(4, 15)
        boxes = rng.randint(3, 9)
        boxes2 = boxes + rng.randint(1, 4)
        given = rng.randint(2, min(20, boxes * per_box - 1))

        def solve(b):
            total = b * per_box
            return (f"Total {item}: {b} × {per_box} = {total}\n"
                    f"After giving away {given}: {total} - {given} = {total - given}\n"
                    f"Answer: {total - given}")

        q = rng.choice([
            f"{name} has {boxes} boxes with {per_box} {item} in each box. {Pron} gives away {given} {item}. "
            f"How many {item} does {name} have left?",
            f"There are {per_box} {item} in each of {name}'s {boxes} boxes. If {pron} gives {given} {item} "
            f"to a friend, how many are left?",
        ])
        return [(intro + q, solve(boxes)), (f"What if {pron} had {boxes2} boxes instead?", solve(boxes2))]

    if kind == "shopping":
        thing = rng.choice(["notebooks", "sandwiches", "tickets", "pens", "mugs", "plants"])
        price = rng.randint(2, 12)
        bill = rng.choice([b for b in (20, 50, 100) if (b - 1) // price >= 3])
        max_n = (bill - 1) // price
        n = rng.randint(2, min(max_n, 8))
        n2 = rng.choice([k for k in range(2, min(max_n, 9) + 1) if k != n])

        def solve(k):
            cost = k * price
            return (f"Cost: {k} × ${price} = ${cost}\n"
                    f"Change: ${bill} - ${cost} = ${bill - cost}\n"
                    f"Answer: ${bill - cost}")

        q = rng.choice([
            f"{name} buys {n} {thing} at ${price} each and pays with a ${bill} bill. How much change does {pron} get?",
            f"{thing.capitalize()} cost ${price} each. {name} buys {n} of them and pays with ${bill}. "
            f"What is the change?",
        ])
        return [(intro + q, solve(n)), (f"What if {pron} bought {n2} {thing} instead?", solve(n2))]

    if kind == "sharing":
        item = rng.choice(["candies", "stickers", "marbles", "grapes", "coins"])
        total = rng.randint(20, 100)
        k = rng.randint(3, 9)
        k2 = rng.choice([x for x in range(2, 11) if x != k])

        def solve(friends):
            each, left = divmod(total, friends)
            left_text = "none are left over" if left == 0 else f"{left} {'is' if left == 1 else 'are'} left over"
            return (f"{total} ÷ {friends} = {each} remainder {left}\n"
                    f"Each friend gets {each} {item}, and {left_text}.\n"
                    f"Answer: {each} each, {left} left over")

        q = rng.choice([
            f"{name} shares {total} {item} equally among {k} friends. How many does each friend get, "
            f"and how many are left over?",
            f"{total} {item} are split evenly between {k} friends. How many does each get, and what is left over?",
        ])
        return [(intro + q, solve(k)), (f"What if there were {k2} friends?", solve(k2))]

    if kind == "travel":
        vehicle = rng.choice(["train", "bus", "car"])
        speed = rng.choice(range(40, 95, 5))
        hours = rng.randint(2, 6)
        hours2 = rng.choice([h for h in range(1, 9) if h != hours])
        dist = speed * hours
        q = rng.choice([
            f"A {vehicle} travels at {speed} km per hour for {hours} hours. How far does it go?",
            f"How many kilometers does a {vehicle} cover in {hours} hours at a steady {speed} km/h?",
        ])
        a = f"Distance = speed × time = {speed} × {hours} = {dist} km\nAnswer: {dist} km"
        d2 = speed * hours2
        f = f"How long would it take to travel {d2} km at the same speed?"
        fa = f"Time = distance ÷ speed = {d2} ÷ {speed} = {hours2}\nAnswer: {plural(hours2, 'hour')}"
        return [(intro + q, a), (f, fa)]

    # saving
    start = rng.choice(range(10, 105, 5))
    weekly = rng.randint(5, 25)
    weeks = rng.randint(3, 12)
    saved = start + weekly * weeks
    goal = (saved // 50 + rng.randint(1, 4)) * 50
    q = rng.choice([
        f"{name} has ${start} and saves ${weekly} every week. How much will {pron} have after {weeks} weeks?",
        f"Starting with ${start}, {name} puts ${weekly} into savings each week. What is the total after {weeks} weeks?",
    ])
    a = (f"Saved over {weeks} weeks: {weeks} × ${weekly} = ${weekly * weeks}\n"
         f"Total: ${start} + ${weekly * weeks} = ${saved}\n"
         f"Answer: ${saved}")
    need = goal - saved
    more, rem = divmod(need, weekly)
    if rem == 0:
        fa = f"Still needed: ${goal} - ${saved} = ${need}\n{need} ÷ {weekly} = {more}\nAnswer: {plural(more, 'week')}"
    else:
        fa = (f"Still needed: ${goal} - ${saved} = ${need}\n"
              f"{need} ÷ {weekly} = {more} remainder {rem}, "
              f"so one extra week covers the rest: {more} + 1 = {more + 1}\n"
              f"Answer: {plural(more + 1, 'week')}")
    return [(intro + q, a), (f"How many more weeks until {pron} has ${goal}?", fa)]


def task_unit_conversion(rng):
    kind = rng.choice(["km_mi", "mi_km", "c_f", "f_c", "kg_lb", "lb_kg"])

    if kind in ("km_mi", "kg_lb"):
        # Shown factor is an approximation; pick a value where it rounds the same as the exact answer.
        unit, target, factor, exact_per_unit = {
            "km_mi": ("km", "miles", Decimal("0.621371"), 1 / Fraction("1.609344")),
            "kg_lb": ("kg", "pounds", Decimal("2.20462"), 1 / Fraction("0.45359237")),
        }[kind]
        long_unit = {"km": "kilometers", "kg": "kilograms"}[unit]
        value = rng.randint(2, 60)
        while fmt_round(Fraction(factor * value), 2) != fmt_round(value * exact_per_unit, 2):
            value += 1
        product = factor * value
        q = rng.choice([
            f"Convert {value} {long_unit} to {target}.",
            f"How many {target} is {value} {unit}?",
            f"What is {value} {unit} in {target}? Round to two decimal places.",
        ])
        a = (f"1 {long_unit[:-1]} ≈ {factor} {target}.\n"
             f"{value} × {factor} = {fmt_exact(Fraction(product))}\n"
             f"Answer: {fmt_round(Fraction(product), 2)} {target}")
        small = {"km": "meters", "kg": "grams"}[unit]
        f = f"How many {small} is that?"
        fa = f"1 {long_unit[:-1]} = 1000 {small}.\n{value} × 1000 = {value * 1000}\nAnswer: {value * 1000} {small}"
        return [(q, a), (f, fa)]

    if kind in ("mi_km", "lb_kg"):
        unit, target, factor, small, small_factor = {
            "mi_km": ("miles", "kilometers", "1.609344", "meters", "1609.344"),
            "lb_kg": ("pounds", "kilograms", "0.45359237", "grams", "453.59237"),
        }[kind]
        value = rng.randint(2, 60)
        exact = value * Fraction(factor)
        q = rng.choice([
            f"Convert {value} {unit} to {target}.",
            f"How many {target} are in {value} {unit}?",
            f"What is {value} {unit} in {target}? Round to two decimal places.",
        ])
        a = (f"1 {unit[:-1]} = {factor} {target}.\n"
             f"{value} × {factor} = {fmt_exact(exact)}\n"
             f"Answer: {fmt_round(exact, 2)} {target}")
        f = f"And how many {small} is that?"
        fa = (f"1 {unit[:-1]} = {small_factor} {small}.\n"
              f"{value} × {small_factor} = {fmt_exact(exact * 1000)}\n"
              f"Answer: {fmt_exact(exact * 1000)} {small}")
        return [(q, a), (f, fa)]

    if kind == "c_f":
        c = rng.randint(-20, 40)
        scaled = Fraction(c * 9, 5)
        fahr = scaled + 32
        q = rng.choice([
            f"Convert {c} °C to Fahrenheit.",
            f"What is {c} degrees Celsius in Fahrenheit?",
            f"{c} °C is how many degrees Fahrenheit?",
        ])
        a = (f"°F = °C × 9/5 + 32\n"
             f"{c} × 9/5 = {fmt_exact(scaled)}\n"
             f"{fmt_exact(scaled)} + 32 = {fmt_exact(fahr)}\n"
             f"Answer: {fmt_exact(fahr)} °F")
        kelvin = c + Fraction("273.15")
        fa = f"K = °C + 273.15\n{c} + 273.15 = {fmt_exact(kelvin)}\nAnswer: {fmt_exact(kelvin)} K"
        return [(q, a), ("And what is that in kelvin?", fa)]

    # f_c
    f_value = rng.randint(0, 110)
    diff = f_value - 32
    celsius = Fraction(diff * 5, 9)
    shown = fmt_exact(celsius) if celsius.denominator == 1 else fmt_round(celsius, 1)
    eq = "=" if celsius.denominator == 1 else "≈"
    q = rng.choice([
        f"Convert {f_value} °F to Celsius.",
        f"What is {f_value} degrees Fahrenheit in Celsius?",
        f"{f_value} °F is how many degrees Celsius? Round to one decimal place.",
    ])
    a = (f"°C = (°F - 32) × 5/9\n"
         f"{f_value} - 32 = {diff}\n"
         f"{diff} × 5/9 {eq} {shown}\n"
         f"Answer: {shown} °C")
    if celsius > 0:
        fa = f"Water freezes at 0 °C, and {shown} °C is higher than that.\nAnswer: Above freezing"
    elif celsius < 0:
        fa = f"Water freezes at 0 °C, and {shown} °C is lower than that.\nAnswer: Below freezing"
    else:
        fa = "Water freezes at 0 °C, so this is exactly the freezing point.\nAnswer: Exactly at freezing"
    return [(q, a), ("Is that above or below the freezing point of water?", fa)]


def task_reverse_word(rng):
    word = rng.choice(PALINDROMES) if rng.random() < 0.25 else rng.choice(WORDS)
    rev = word[::-1]
    q = rng.choice([
        f'Reverse the word "{word}".',
        f'Spell "{word}" backwards.',
        f"Write the word {word} in reverse order.",
    ])
    a = f"Write the letters in the opposite order.\nLetters: {dashed(word)}\nReversed: {dashed(rev)}\nAnswer: {rev}"
    if rev == word:
        fa = f'"{word}" reversed is "{rev}", which is the same word, so it is a palindrome.\nAnswer: Yes'
    else:
        fa = f'"{word}" reversed is "{rev}", which is a different string, so it is not a palindrome.\nAnswer: No'
    fb = f'"{rev}" in uppercase is "{rev.upper()}".\nAnswer: {rev.upper()}'
    return [(q, a), ("Is it a palindrome?", fa), ("Now write the reversed word in uppercase.", fb)]


def task_spell_word(rng):
    word = rng.choice(WORDS)
    n = len(word)
    if rng.random() < 0.5:
        q = rng.choice([
            f'How do you spell "{word}" letter by letter?',
            f"Spell out the word {word}, one letter at a time.",
            f"Can you spell {word} for me, letter by letter?",
        ])
        a = f'The word "{word}" is spelled {dashed(word.upper())}.'
        fa = f"{dashed(word.upper())} has {n} letters.\nAnswer: {n}"
        first, last = word[0].upper(), word[-1].upper()
        fb = f"The first letter is {first} and the last letter is {last}.\nAnswer: {first}, {last}"
        return [(q, a), ("How many letters is that?", fa), ("What are its first and last letters?", fb)]
    k = rng.randint(1, n - 1)
    q = rng.choice([
        f'What is the {ordinal(k)} letter of the word "{word}"?',
        f"Which letter is in position {k} of {word}?",
    ])
    a = f'{dashed(word)}\nCounting from the left, letter {k} is "{word[k - 1]}".\nAnswer: {word[k - 1]}'
    fa = f'The word has {n} letters, so the last letter is letter {n}: "{word[-1]}".\nAnswer: {word[-1]}'
    fb = f"{dashed(word)} has {n} letters.\nAnswer: {n}"
    return [(q, a), ("And the last letter?", fa), ("How many letters does it have in total?", fb)]


def task_count_letters(rng):
    # Words containing "y" are skipped so that "vowel" (a, e, i, o, u) is never ambiguous.
    word = rng.choice([w for w in WORDS if "y" not in w])
    n = len(word)
    vowels = [ch for ch in word if ch in VOWELS]

    def count_letter(letter):
        positions = [i + 1 for i, ch in enumerate(word) if ch == letter]
        if not positions:
            return f'{dashed(word)}\nThe letter "{letter}" does not appear in the word.\nAnswer: 0'
        where = f"position {positions[0]}" if len(positions) == 1 else f"positions {listing(positions)}"
        return f'{dashed(word)}\nThe letter "{letter}" appears at {where}.\nAnswer: {len(positions)}'

    count_vowels = f"{dashed(word)}\nVowels (a, e, i, o, u): {', '.join(vowels)}\nAnswer: {len(vowels)}"
    count_consonants = (f'"{word}" has {n} letters and {len(vowels)} vowels, so it has '
                        f"{n} - {len(vowels)} = {n - len(vowels)} consonants.\nAnswer: {n - len(vowels)}")
    present = sorted(set(word))
    absent = [c for c in "bcdfghklmnpqrstuvwz" if c not in word]
    letter = rng.choice(present) if rng.random() < 0.85 else rng.choice(absent)

    if rng.random() < 0.5:
        q = rng.choice([
            f'How many times does the letter "{letter}" appear in "{word}"?',
            f'Count the letter {letter} in the word "{word}".',
            f'How many "{letter}"s are in the word {word}?',
        ])
        return [(q, count_letter(letter)),
                ("And how many vowels does it have?", count_vowels),
                ("And how many consonants?", count_consonants)]
    q = rng.choice([
        f'How many vowels are in the word "{word}"?',
        f"Count the vowels in {word}.",
        f'How many vowels (a, e, i, o, u) does "{word}" contain?',
    ])
    return [(q, count_vowels),
            ("And how many consonants?", count_consonants),
            (f'How many times does the letter "{letter}" appear in it?', count_letter(letter))]


def task_sort_list(rng):
    if rng.random() < 0.6:
        nums = rng.sample(range(1, 100), rng.randint(5, 8))
        shown = ", ".join(map(str, nums))
        asc = sorted(nums)
        desc = asc[::-1]
        asc_text, desc_text = ", ".join(map(str, asc)), ", ".join(map(str, desc))
        ascending = rng.random() < 0.65
        if ascending:
            q = rng.choice([
                f"Sort these numbers from smallest to largest: {shown}",
                f"Put the following numbers in ascending order: {shown}",
            ])
            a = f"There are {len(nums)} numbers. Smallest: {asc[0]}, largest: {asc[-1]}.\nAnswer: {asc_text}"
            f, fa = "Now sort them in descending order.", f"From largest to smallest:\nAnswer: {desc_text}"
        else:
            q = rng.choice([
                f"Sort these numbers from largest to smallest: {shown}",
                f"Arrange in descending order: {shown}",
            ])
            a = f"There are {len(nums)} numbers. Largest: {asc[-1]}, smallest: {asc[0]}.\nAnswer: {desc_text}"
            f, fa = "Now sort them in ascending order.", f"From smallest to largest:\nAnswer: {asc_text}"
        k = len(asc)
        if k % 2:
            med = (f"With {k} numbers, the median is the middle value, number {k // 2 + 1} in sorted order.\n"
                   f"Answer: {asc[k // 2]}")
        else:
            lo, hi = asc[k // 2 - 1], asc[k // 2]
            med = (f"With {k} numbers, the median is the average of the two middle values: "
                   f"({lo} + {hi}) ÷ 2 = {fmt_exact(Fraction(lo + hi, 2))}\nAnswer: {fmt_exact(Fraction(lo + hi, 2))}")
        return [(q, a), (f, fa), ("What is the median?", med)]

    words = rng.sample(WORDS, rng.randint(5, 6))
    shown = ", ".join(words)
    q = rng.choice([
        f"Sort these words alphabetically: {shown}",
        f"Put these words in alphabetical order: {shown}",
        f"Arrange the following words from A to Z: {shown}",
    ])
    a = ("Alphabetical order compares the first letters, then the next letters when the first ones match.\n"
         f"Answer: {', '.join(sorted(words))}")
    fa = f"From Z to A:\nAnswer: {', '.join(sorted(words, reverse=True))}"
    longest = max(len(w) for w in words)
    winners = [w for w in words if len(w) == longest]
    if len(winners) == 1:
        fb = f'"{winners[0]}" has {longest} letters, more than any other word in the list.\nAnswer: {winners[0]}'
    else:
        fb = f"{listing(winners)} are tied, with {longest} letters each.\nAnswer: {', '.join(winners)}"
    return [(q, a), ("Now sort them in reverse alphabetical order.", fa), ("Which word is the longest?", fb)]


def to_base(n: int, base: int) -> str:
    digits = ""
    while n:
        n, r = divmod(n, base)
        digits = HEX_DIGITS[r] + digits
    return digits or "0"


def explain_division(n: int, base: int) -> str:
    lines = []
    value = n
    while value:
        q, r = divmod(value, base)
        note = f" ({HEX_DIGITS[r]})" if r >= 10 else ""
        lines.append(f"{value} ÷ {base} = {q} remainder {r}{note}")
        value = q
    result = to_base(n, base)
    lines.append(f"Reading the remainders from bottom to top gives {result}.")
    lines.append(f"Answer: {result}")
    return "\n".join(lines)


def explain_to_binary(n: int) -> str:
    powers = [2**i for i in range(n.bit_length() - 1, -1, -1) if n & 2**i]
    b = to_base(n, 2)
    if len(powers) == 1:
        return (f"{n} is a power of two: 2^{n.bit_length() - 1}.\n"
                f"Writing 1 in that place and 0 in every lower place gives {b}.\nAnswer: {b}")
    return (f"{n} = {' + '.join(map(str, powers))}\n"
            f"Writing 1 for each power of two used, from {2 ** (n.bit_length() - 1)} down to 1, gives {b}.\n"
            f"Answer: {b}")


def task_number_base(rng):
    kind = rng.choice(["dec_bin", "bin_dec", "dec_hex", "hex_dec"])
    if kind == "dec_bin":
        n = rng.randint(5, 255)
        q = rng.choice([f"Convert {n} to binary.", f"What is {n} in base 2?",
                        f"Write the decimal number {n} in binary."])
        ex = [(q, explain_to_binary(n)), ("Now write it in hexadecimal.", explain_division(n, 16))]
    elif kind == "bin_dec":
        n = rng.randint(5, 255)
        b = to_base(n, 2)
        powers = [2**i for i in range(n.bit_length() - 1, -1, -1) if n & 2**i]
        q = rng.choice([f"Convert the binary number {b} to decimal.", f"What is {b} (base 2) in base 10?"])
        if len(powers) == 1:
            a = f"The only 1 bit of {b} has place value {n}.\nAnswer: {n}"
        else:
            a = (f"The 1 bits of {b} have place values {listing(powers)}.\n"
                 f"{' + '.join(map(str, powers))} = {n}\nAnswer: {n}")
        ex = [(q, a), ("Now write it in hexadecimal.", explain_division(n, 16))]
    elif kind == "dec_hex":
        n = rng.randint(20, 4095)
        q = rng.choice([f"Convert {n} to hexadecimal.", f"What is {n} in base 16?", f"Write the number {n} in hex."])
        ex = [(q, explain_division(n, 16)), ("And in binary?", explain_to_binary(n))]
    else:
        n = rng.randint(20, 4095)
        h = to_base(n, 16)
        terms = []
        values = []
        for i, d in enumerate(h):
            place = 16 ** (len(h) - 1 - i)
            v = HEX_DIGITS.index(d)
            terms.append(f"{v} × {place}")
            values.append(v * place)
        letters = [f"{d} = {HEX_DIGITS.index(d)}" for d in dict.fromkeys(h) if d in "ABCDEF"]
        note = f" ({', '.join(letters)})" if letters else ""
        q = rng.choice([f"Convert the hexadecimal number {h} to decimal.", f"What is hex {h} in base 10?"])
        a = (f"{h}{note} = {' + '.join(terms)}\n"
             f"= {' + '.join(map(str, values))} = {n}\nAnswer: {n}")
        ex = [(q, a), ("And in binary?", explain_to_binary(n))]
    ex.append(("And in octal?", explain_division(n, 8)))
    return ex


PY_FUNCS = [
    ("sum_list", "returns the sum of a list of numbers",
     "def sum_list(numbers):\n    total = 0\n    for n in numbers:\n        total += n\n    return total",
     lambda rng: (rng.sample(range(1, 30), rng.randint(3, 5)),)),
    ("find_max", "returns the largest number in a non-empty list",
     "def find_max(numbers):\n    largest = numbers[0]\n    for n in numbers[1:]:\n        if n > largest:\n"
     "            largest = n\n    return largest",
     lambda rng: (rng.sample(range(1, 100), rng.randint(3, 5)),)),
    ("count_vowels", "counts the vowels in a string",
     'def count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in "aeiou")',
     lambda rng: (rng.choice(WORDS),)),
    ("reverse_string", "reverses a string",
     "def reverse_string(text):\n    return text[::-1]",
     lambda rng: (rng.choice(WORDS),)),
    ("is_even", "checks whether a number is even",
     "def is_even(n):\n    return n % 2 == 0",
     lambda rng: (rng.randint(1, 500),)),
    ("factorial", "returns the factorial of a non-negative integer",
     "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
     lambda rng: (rng.randint(0, 10),)),
    ("is_palindrome", "checks whether a word is a palindrome, ignoring case",
     "def is_palindrome(text):\n    cleaned = text.lower()\n    return cleaned == cleaned[::-1]",
     lambda rng: (rng.choice(PALINDROMES + WORDS[:8]).capitalize(),)),
    ("celsius_to_fahrenheit", "converts a temperature from Celsius to Fahrenheit",
     "def celsius_to_fahrenheit(celsius):\n    return celsius * 9 / 5 + 32",
     lambda rng: (rng.choice(range(-20, 45, 5)),)),
    ("count_words", "counts the words in a sentence",
     "def count_words(sentence):\n    return len(sentence.split())",
     lambda rng: (" ".join(rng.sample(WORDS, rng.randint(2, 5))),)),
    ("squares", "returns a list of the squares of the numbers from 1 to n",
     "def squares(n):\n    return [i * i for i in range(1, n + 1)]",
     lambda rng: (rng.randint(2, 7),)),
]


def task_python_function(rng):
    name, ask, code, make_args = rng.choice(PY_FUNCS)
    namespace: dict = {}
    exec(code, namespace)  # run the snippet so every example output is real
    fn = namespace[name]

    def example():
        args = make_args(rng)
        call = f"{name}({', '.join(repr(x) for x in args)})"
        return f"`{call}` returns `{fn(*args)!r}`."

    q = rng.choice([
        f"Write a Python function that {ask}.",
        f"How can I write a Python function that {ask}?",
        f"Give me a short Python function that {ask}.",
    ])
    a = f"Here is a simple solution:\n\n```python\n{code}\n```\n\nExample: {example()}"
    return [(q, a), ("Show me another example.", example()), ("One more example, please.", example())]


def task_sentence_to_json(rng):
    name, _ = rng.choice(PEOPLE)
    kind = rng.choice(["person", "product", "pet", "meeting", "flight"])
    if kind == "person":
        age, city = rng.randint(18, 80), rng.choice(CITIES)
        sentence = rng.choice([f"{name} is {age} years old and lives in {city}.",
                               f"{name}, aged {age}, lives in {city}."])
        obj = {"name": name, "age": age, "city": city}
    elif kind == "product":
        color = rng.choice(["red", "blue", "green", "black", "white"])
        product = rng.choice(["backpack", "lamp", "kettle", "chair", "scarf", "umbrella"])
        price = rng.randint(5, 120)
        sentence = f"The {color} {product} costs {price} dollars."
        obj = {"product": product, "color": color, "price": price}
    elif kind == "pet":
        pet = rng.choice(["Biscuit", "Luna", "Pepper", "Milo", "Coco", "Rex"])
        species = rng.choice(["dog", "cat", "rabbit", "parrot"])
        age = rng.randint(1, 14)
        food = rng.choice(["carrots", "fish", "apples", "rice"])
        sentence = f"{pet} is a {age}-year-old {species} who loves {food}."
        obj = {"name": pet, "species": species, "age": age, "favorite_food": food}
    elif kind == "meeting":
        event = rng.choice(["team meeting", "budget review", "design workshop", "project kickoff"])
        day = rng.choice(WEEKDAYS[:5])
        time = f"{rng.randint(9, 17):02d}:{rng.choice(['00', '15', '30', '45'])}"
        room = rng.randint(1, 40)
        sentence = f"The {event} is on {day} at {time} in room {room}."
        obj = {"event": event, "day": day, "time": time, "room": room}
    else:
        origin, dest = rng.sample(CITIES, 2)
        flight = f"{rng.choice(['TR', 'SK', 'LX', 'QA'])}{rng.randint(100, 999)}"
        time = f"{rng.randint(0, 23):02d}:{rng.choice(['05', '20', '35', '50'])}"
        sentence = f"Flight {flight} leaves {origin} for {dest} at {time}."
        obj = {"flight": flight, "from": origin, "to": dest, "departure": time}
    keys = listing(obj)
    q = rng.choice([
        f"Convert this sentence into a JSON object with the keys {keys}: {sentence}",
        f"Extract the fields {keys} from the sentence below and return them as JSON.\n\n{sentence}",
        f"Turn the following sentence into JSON ({keys}): {sentence}",
    ])

    def block(o):
        return f"```json\n{json.dumps(o, ensure_ascii=False)}\n```"

    with_id = dict(obj, id=rng.randint(1, 999))
    dropped = rng.choice(list(obj))
    without = {k: v for k, v in with_id.items() if k != dropped}
    return [(q, block(obj)),
            (f'Add a key "id" with the value {with_id["id"]}.', block(with_id)),
            (f'Now remove the "{dropped}" key.', block(without))]


def long_date(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def task_date_format(rng):
    d = date(1990, 1, 1) + timedelta(days=rng.randrange(40 * 365))
    iso = d.isoformat()
    mm, dd, yyyy = f"{d.month:02d}", f"{d.day:02d}", str(d.year)
    month = MONTHS[d.month - 1]
    kind = rng.choice(["iso_long", "us_iso", "eu_iso", "long_iso"])
    if kind == "iso_long":
        q = rng.choice([f'Convert the ISO date {iso} to the format "Month D, YYYY".',
                        f"Write {iso} as a date in words, like January 5, 2020."])
        a = f"Year: {yyyy}, month: {mm} ({month}), day: {dd}.\nAnswer: {long_date(d)}"
    elif kind == "us_iso":
        us = f"{mm}/{dd}/{yyyy}"
        q = rng.choice([f"Convert the US date {us} (MM/DD/YYYY) to ISO 8601 format (YYYY-MM-DD).",
                        f"Rewrite {us}, given as month/day/year, in YYYY-MM-DD format."])
        a = f"Month: {mm}, day: {dd}, year: {yyyy}.\nAnswer: {iso}"
    elif kind == "eu_iso":
        eu = f"{dd}/{mm}/{yyyy}"
        q = rng.choice([f"Convert the date {eu} (DD/MM/YYYY) to ISO 8601 format (YYYY-MM-DD).",
                        f"Rewrite {eu}, given as day/month/year, in YYYY-MM-DD format."])
        a = f"Day: {dd}, month: {mm}, year: {yyyy}.\nAnswer: {iso}"
    else:
        q = rng.choice([f"Write {long_date(d)} in YYYY-MM-DD format.",
                        f"Convert {long_date(d)} to an ISO 8601 date."])
        a = f"{month} is month {mm}, and the day is {dd}.\nAnswer: {iso}"
    weekday = WEEKDAYS[d.weekday()]
    later = d + timedelta(days=7)
    fa = f"{long_date(d)} falls on a {weekday}.\nAnswer: {weekday}"
    fb = f"Adding 7 days to {long_date(d)} gives {long_date(later)}.\nAnswer: {later.isoformat()}"
    return [(q, a), ("What day of the week does that date fall on?", fa), ("What date is one week later?", fb)]


def task_compare_fractions(rng):
    while True:
        b, d = rng.randint(2, 12), rng.randint(2, 12)
        a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
        if b != d and math.gcd(a, b) == 1 and math.gcd(c, d) == 1 and a * d != c * b:
            break
    x, y = Fraction(a, b), Fraction(c, d)
    ad, cb = a * d, c * b
    sign = "<" if ad < cb else ">"
    want_larger = rng.random() < 0.7
    pick = max(x, y) if want_larger else min(x, y)
    word = rng.choice(["larger", "bigger", "greater"]) if want_larger else "smaller"
    q = rng.choice([
        f"Which is {word}, {a}/{b} or {c}/{d}?",
        f"Which fraction is {word}: {a}/{b} or {c}/{d}?",
        f"Compare {a}/{b} and {c}/{d}. Which one is {word}?",
    ])
    ans = (f"Cross-multiply: {a} × {d} = {ad} and {c} × {b} = {cb}.\n"
           f"Since {ad} {sign} {cb}, {a}/{b} {sign} {c}/{d}.\n"
           f"Answer: {pick}")

    lcd = b * d // math.gcd(b, d)
    big, small = max(x, y), min(x, y)

    def combine(op):
        p1 = big.numerator * (lcd // big.denominator)
        p2 = small.numerator * (lcd // small.denominator)
        raw = p1 - p2 if op == "-" else p1 + p2
        result = Fraction(raw, lcd)
        simplify = "" if (result.numerator, result.denominator) == (raw, lcd) else f" = {result}"
        return (f"Common denominator {lcd}: {big} = {p1}/{lcd} and {small} = {p2}/{lcd}.\n"
                f"{p1}/{lcd} {op} {p2}/{lcd} = {raw}/{lcd}{simplify}\n"
                f"Answer: {result}")

    return [(q, ans),
            ("What is the difference between the larger and the smaller one?", combine("-")),
            ("And their sum?", combine("+"))]


def task_day_of_week(rng):
    start = rng.randrange(7)

    def shift(day, n, forward):
        weeks, rem = divmod(n, 7)
        new = (day + (rem if forward else -rem)) % 7
        if rem == 0:
            steps = f"{n} = {weeks} × 7, so {n} days is exactly {plural(weeks, 'week')}; the weekday does not change."
        else:
            sign = "+" if forward else "-"
            steps = (f"{n} = {weeks} × 7 + {rem}, so {n} days is {plural(weeks, 'week')} and {plural(rem, 'day')}.\n"
                     f"{WEEKDAYS[day]} {sign} {plural(rem, 'day')} = {WEEKDAYS[new]}")
        return new, f"{steps}\nAnswer: {WEEKDAYS[new]}"

    n = rng.randint(8, 150)
    forward = rng.random() < 0.7
    day1, a = shift(start, n, forward)
    if forward:
        q = rng.choice([f"If today is {WEEKDAYS[start]}, what day of the week will it be in {n} days?",
                        f"Today is {WEEKDAYS[start]}. What day will it be {n} days from now?"])
    else:
        q = rng.choice([f"If today is {WEEKDAYS[start]}, what day of the week was it {n} days ago?",
                        f"Today is {WEEKDAYS[start]}. What day was it {n} days ago?"])
    m1, m2 = rng.randint(8, 60), rng.randint(8, 60)
    day2, fa = shift(day1, m1, True)
    _, fb = shift(day2, m2, False)
    return [(q, a), (f"And {m1} days after that?", fa), (f"What about {m2} days before that day?", fb)]


PASSIVE_VERBS = {  # base: (past, present 3rd person, past participle)
    "cook": ("cooked", "cooks", "cooked"), "write": ("wrote", "writes", "written"),
    "paint": ("painted", "paints", "painted"), "build": ("built", "builds", "built"),
    "repair": ("repaired", "repairs", "repaired"), "bake": ("baked", "bakes", "baked"),
    "clean": ("cleaned", "cleans", "cleaned"), "deliver": ("delivered", "delivers", "delivered"),
    "plant": ("planted", "plants", "planted"), "sing": ("sang", "sings", "sung"),
    "feed": ("fed", "feeds", "fed"), "design": ("designed", "designs", "designed"),
    "wash": ("washed", "washes", "washed"), "catch": ("caught", "catches", "caught"),
    "teach": ("taught", "teaches", "taught"), "drive": ("drove", "drives", "driven"),
    "answer": ("answered", "answers", "answered"),
}
PASSIVE_CLAUSES = [  # (agent, verb, object, object is plural)
    ("the chef", "cook", "the soup", False), ("the chef", "cook", "the vegetables", True),
    ("the author", "write", "the letter", False), ("the student", "write", "the essays", True),
    ("the artist", "paint", "the portrait", False), ("the company", "build", "the bridge", False),
    ("the carpenter", "build", "the shelves", True), ("the mechanic", "repair", "the car", False),
    ("the plumber", "repair", "the pipes", True), ("the baker", "bake", "the bread", False),
    ("the baker", "bake", "the cookies", True), ("the janitor", "clean", "the classrooms", True),
    ("the courier", "deliver", "the package", False), ("the mail carrier", "deliver", "the letters", True),
    ("the gardener", "plant", "the roses", True), ("the choir", "sing", "the anthem", False),
    ("the zookeeper", "feed", "the lions", True), ("the architect", "design", "the museum", False),
    ("the robot", "wash", "the dishes", True), ("the goalkeeper", "catch", "the ball", False),
    ("the professor", "teach", "the course", False), ("the driver", "drive", "the bus", False),
    ("the assistant", "answer", "the phone", False),
]


def task_passive_voice(rng):
    agent, verb, obj, obj_plural = rng.choice(PASSIVE_CLAUSES)
    past, present, participle = PASSIVE_VERBS[verb]
    be = {"past": "were" if obj_plural else "was", "present": "are" if obj_plural else "is"}
    tense = rng.choice(["past", "present"])
    other = "present" if tense == "past" else "past"
    active = sentence_case(f"{agent} {past if tense == 'past' else present} {obj}.")

    def passive(t):
        return sentence_case(f"{obj} {be[t]} {participle} by {agent}.")

    q = rng.choice([
        f"Rewrite this sentence in the passive voice: {active}",
        f"Change to passive voice: {active}",
        f'What is the passive form of "{active}"?',
    ])
    a = (f'The object "{obj}" becomes the subject, the verb becomes "{be[tense]} {participle}", '
         f'and "{agent}" moves after "by".\nAnswer: {passive(tense)}')
    fa = f'In the {other} tense, "{be[tense]}" becomes "{be[other]}".\nAnswer: {passive(other)}'
    return [(q, a), (f"Now put the passive sentence in the {other} tense.", fa)]


DEFINITIONS = [  # (how the question names it, definition, example, second example)
    (
        'a variable in programming',
        ('In programming, a variable is a name that refers to a stored value, which the program can '
         'read and change while it runs.'),
        'In `count = 3`, the variable `count` holds the value 3.',
        'In `name = "Ana"`, the variable `name` refers to the string "Ana".',
    ),
    (
        'a function in programming',
        ('A function is a named block of code that performs a specific task. It can take inputs, '
         'called arguments, and can return a result.'),
        '`len("hello")` calls Python\'s built-in `len` function, which returns 5.',
        '`def double(x): return 2 * x` defines a function, and `double(4)` returns 8.',
    ),
    (
        'a loop',
        ('A loop is a control structure that repeats a block of code, either a fixed number of times '
         'or while a condition stays true.'),
        'In Python, `for i in range(3): print(i)` prints 0, 1 and 2.',
        '`while n > 0: n = n - 1` keeps repeating until `n` is no longer greater than 0.',
    ),
    (
        'an algorithm',
        'An algorithm is a finite sequence of well-defined steps that solves a problem or performs a computation.',
        'Binary search finds an item in a sorted list by repeatedly halving the range it searches.',
        ('Bubble sort is an algorithm that sorts a list by repeatedly swapping neighboring items that '
         'are in the wrong order.'),
    ),
    (
        'a compiler',
        ('A compiler is a program that translates source code written in a programming language into a'
         ' lower-level form, such as machine code, that a computer can run.'),
        'GCC compiles C source files into executable programs.',
        'The Rust compiler, rustc, turns Rust source code into machine code.',
    ),
    (
        'recursion',
        ('Recursion is a technique in which a function solves a problem by calling itself on smaller '
         'versions of the same problem until it reaches a simple base case.'),
        'factorial(n) can be defined as n × factorial(n - 1), with factorial(0) = 1 as the base case.',
        ('A function can sum a list by adding the first item to the sum of the rest of the list, '
         'stopping when the list is empty.'),
    ),
    (
        'an API',
        ('An API (application programming interface) is a set of defined rules and operations that '
         'lets one piece of software request services or data from another.'),
        "A weather app can call a weather service's API to get the current temperature for a city.",
        "A website can use a map service's API to show an interactive map on its pages.",
    ),
    (
        'an array',
        ('An array is a data structure that stores a sequence of elements, each of which can be '
         'accessed by its numeric index.'),
        'In the array [10, 20, 30], the element at index 0 is 10.',
        'In many languages indexes start at 0, so in an array of five temperatures the third one is at index 2.',
    ),
    (
        'a boolean',
        ('A boolean is a data type with only two possible values, true and false. It is commonly used '
         'in conditions and comparisons.'),
        'The comparison 5 > 3 evaluates to true.',
        'In Python, `is_raining = False` stores a boolean value in a variable.',
    ),
    (
        'a bug in software',
        'A bug is an error or flaw in a program that makes it behave incorrectly or unexpectedly.',
        'A loop that stops one step too early and skips the last item of a list is a common bug.',
        ('A program that divides by a number the user types in, without checking for zero, has a bug '
         'that can make it crash.'),
    ),
    (
        'a CPU',
        ('The CPU (central processing unit) is the main processor of a computer. It executes program '
         'instructions, performing arithmetic, logic and control operations.'),
        'When you run a program, the CPU fetches its instructions from memory and executes them one after another.',
        'When a spreadsheet adds up a column of numbers, the CPU carries out the additions.',
    ),
    (
        'RAM',
        ("RAM (random-access memory) is a computer's fast, temporary working memory. It holds the "
         'programs and data currently in use, and its contents are lost when the power is turned off.'),
        'An open document is kept in RAM while you edit it; saving it writes a copy to permanent storage.',
        ('A computer with more RAM can keep more programs open at the same time before it has to move '
         'data to slower storage.'),
    ),
    (
        'a database',
        ('A database is an organized collection of data, stored so that it can be easily accessed, '
         'managed and updated.'),
        'An online store keeps its products, prices and orders in a database.',
        'A library can use a database to record which books are on loan and when they are due back.',
    ),
    (
        'a string in programming',
        ('In programming, a string is a data type that represents a sequence of characters, such as '
         'letters, digits and spaces.'),
        'In Python, "hello world" is a string of 11 characters.',
        'In Python, "4" + "2" joins two strings and gives the string "42", not the number 6.',
    ),
    (
        'photosynthesis',
        ('Photosynthesis is the process by which plants, algae and some bacteria use light energy to '
         'turn carbon dioxide and water into glucose, releasing oxygen as a by-product.'),
        'A leaf in sunlight takes in carbon dioxide from the air and releases oxygen.',
        'Grass uses photosynthesis to make the sugar it needs to grow.',
    ),
    (
        'an atom',
        ("An atom is the smallest unit of a chemical element that keeps the element's chemical "
         'properties. It has a nucleus of protons and neutrons, surrounded by electrons.'),
        'A hydrogen atom usually has one proton and one electron.',
        'An oxygen atom has eight protons in its nucleus.',
    ),
    (
        'a molecule',
        'A molecule is a group of two or more atoms held together by chemical bonds.',
        'A water molecule, H2O, contains two hydrogen atoms bonded to one oxygen atom.',
        'Oxygen gas is made of O2 molecules, each containing two oxygen atoms.',
    ),
    (
        'gravity',
        ('Gravity is the force of attraction between objects that have mass. The more massive an '
         'object is, the stronger its pull.'),
        "Earth's gravity makes a dropped ball fall to the ground.",
        'The Moon stays in orbit around Earth because of gravity.',
    ),
    (
        'an ecosystem',
        ('An ecosystem is a community of living organisms together with their physical environment, '
         'interacting as a system.'),
        'A pond, with its fish, insects, plants, water and mud, is an ecosystem.',
        'A forest, with its trees, animals, fungi, soil and climate, is an ecosystem.',
    ),
    (
        'DNA',
        ('DNA (deoxyribonucleic acid) is the molecule that carries the genetic instructions for the '
         'growth, functioning and reproduction of living organisms.'),
        'The DNA of a plant helps determine traits such as the color of its flowers.',
        'A person inherits DNA from both parents, which is one reason children often resemble them.',
    ),
    (
        'velocity',
        ("Velocity is the rate at which an object's position changes. Unlike speed, it includes both "
         'how fast the object moves and in which direction.'),
        'A car moving north at 60 km/h has a velocity of 60 km/h north.',
        ('A ball thrown straight up has an upward velocity that shrinks to zero at the top, then '
         'becomes downward as it falls.'),
    ),
    (
        'evaporation',
        'Evaporation is the process by which a liquid turns into a gas at its surface, usually as it absorbs heat.',
        'A puddle slowly disappears on a warm day because the water evaporates.',
        'Wet clothes dry on a washing line because the water in them evaporates.',
    ),
    (
        'friction',
        'Friction is a force that resists the sliding or rolling of one surface over another.',
        "Friction between a bicycle's brake pads and its wheels slows the bicycle down.",
        'Rubbing your hands together warms them because friction turns some of the motion into heat.',
    ),
    (
        'a cell in biology',
        'A cell is the smallest basic unit of life. All living organisms are made of one or more cells.',
        'A bacterium is a single cell, while the human body is made of trillions of cells.',
        'A red blood cell is a cell that carries oxygen around the body.',
    ),
]


def task_definition(rng):
    term, definition, example, another = rng.choice(DEFINITIONS)
    q = rng.choice([f"What is {term}?", f"Can you explain what {term} is?", f"Briefly define {term}."])
    return [(q, f"{definition}\n\nExample: {example}"), ("Can you give another example?", f"Sure. {another}")]


def euclid_lines(a: int, b: int) -> list[str]:
    lines = []
    while b:
        q, r = divmod(a, b)
        lines.append(f"{a} = {q} × {b} + {r}")
        a, b = b, r
    return lines


def task_gcd_lcm(rng):
    while True:
        g = rng.randint(1, 16)
        x, y = rng.randint(1, 15), rng.randint(1, 15)
        if x != y and math.gcd(x, y) == 1 and g * max(x, y) >= 8:
            break
    a, b = g * x, g * y
    big, small = max(a, b), min(a, b)
    lcm = a * b // g
    euclid = "\n".join(euclid_lines(big, small))
    gcd_text = (f"Use the Euclidean algorithm:\n{euclid}\n"
                f"The remainder is now 0, so the GCD is the last divisor, {g}.\nAnswer: {g}")
    lcm_from_gcd = f"LCM = {a} × {b} ÷ GCD = {a * b} ÷ {g} = {lcm}\nAnswer: {lcm}"
    check = (f"GCD × LCM = {g} × {lcm} = {g * lcm}, and {a} × {b} = {a * b}. They are equal.\nAnswer: Yes")
    if rng.random() < 0.55:
        q = rng.choice([f"What is the greatest common divisor of {a} and {b}?",
                        f"Find the GCD of {a} and {b}.", f"Compute gcd({a}, {b})."])
        return [(q, gcd_text), ("And their least common multiple?", lcm_from_gcd),
                (f"Does GCD × LCM equal {a} × {b}?", check)]
    q = rng.choice([f"What is the least common multiple of {a} and {b}?", f"Find the LCM of {a} and {b}."])
    a_text = (f"First find the GCD with the Euclidean algorithm:\n{euclid}\nGCD = {g}\n"
              f"LCM = {a} × {b} ÷ {g} = {a * b} ÷ {g} = {lcm}\nAnswer: {lcm}")
    recall = f"From the Euclidean algorithm above, the GCD is {g}.\nAnswer: {g}"
    return [(q, a_text), ("And what is their GCD?", recall), (f"Does GCD × LCM equal {a} × {b}?", check)]


def task_percentage(rng):
    kind = rng.choice(["of", "what_percent", "discount", "increase"])
    p = rng.choice(range(5, 100, 5))
    n = rng.choice(range(20, 520, 20))
    rate = fmt_exact(Fraction(p, 100))
    part = n * p // 100  # exact: n is a multiple of 20 and p a multiple of 5
    if kind == "of":
        q = rng.choice([f"What is {p}% of {n}?", f"Calculate {p} percent of {n}.", f"Find {p}% of {n}."])
        a = f"{p}% = {p}/100 = {rate}\n{rate} × {n} = {part}\nAnswer: {part}"
        return [(q, a), (f"And what is {n} minus that?", f"{n} - {part} = {n - part}\nAnswer: {n - part}")]
    if kind == "what_percent":
        q = rng.choice([f"What percent of {n} is {part}?", f"{part} is what percentage of {n}?"])
        a = f"{part} ÷ {n} = {rate}\n{rate} × 100 = {p}%\nAnswer: {p}%"
        return [(q, a), ("And what percent is left over?", f"100% - {p}% = {100 - p}%\nAnswer: {100 - p}%")]
    if kind == "discount":
        item = rng.choice(["jacket", "lamp", "pair of shoes", "backpack", "bike helmet"])
        p2 = rng.choice([v for v in range(5, 100, 5) if v != p])

        def sale(pct):
            off = n * pct // 100
            r = fmt_exact(Fraction(pct, 100))
            return (f"Discount: {pct}% of ${n} = {r} × {n} = ${off}\n"
                    f"Sale price: ${n} - ${off} = ${n - off}\nAnswer: ${n - off}")

        q = rng.choice([f"A {item} costs ${n} and is on sale for {p}% off. What is the sale price?",
                        f"What do you pay for a ${n} {item} with a {p}% discount?"])
        return [(q, sale(p)), (f"What if the discount were {p2}% instead?", sale(p2))]
    # increase
    item = rng.choice(["ticket", "coffee subscription", "gym membership", "train pass"])
    new = n + part
    q = rng.choice([f"The price of a {item} rose from ${n} to ${new}. What is the percentage increase?",
                    f"A {item} used to cost ${n} and now costs ${new}. By what percent did the price go up?"])
    a = f"Increase: ${new} - ${n} = ${part}\n{part} ÷ {n} = {rate} = {p}%\nAnswer: {p}%"
    again = Fraction(new * (100 + p), 100)
    fa = (f"{p}% of ${new} = {rate} × {new} = {money(Fraction(new * p, 100))}\n"
          f"New price: ${new} + {money(Fraction(new * p, 100))} = {money(again)}\nAnswer: {money(again)}")
    return [(q, a), ("What would the price be after another increase of the same percentage?", fa)]


# --------------------------------------------------------------------------- registry and assembly

Task = namedtuple("Task", "name category make")
TASKS = [
    Task("word-problem", "math", task_word_problem),
    Task("unit-conversion", "math", task_unit_conversion),
    Task("reverse-word", "language", task_reverse_word),
    Task("spell-word", "language", task_spell_word),
    Task("count-letters", "language", task_count_letters),
    Task("sort-list", "general", task_sort_list),
    Task("number-base", "code", task_number_base),
    Task("python-function", "code", task_python_function),
    Task("sentence-to-json", "code", task_sentence_to_json),
    Task("date-format", "general", task_date_format),
    Task("compare-fractions", "math", task_compare_fractions),
    Task("day-of-week", "general", task_day_of_week),
    Task("passive-voice", "language", task_passive_voice),
    Task("definition", "general", task_definition),
    Task("gcd-lcm", "math", task_gcd_lcm),
    Task("percentage", "math", task_percentage),
]


def quality_score(conversations) -> float:
    """Deterministic pseudo quality score in [3.5, 5.0], derived from the content."""
    blob = json.dumps(conversations, ensure_ascii=False, sort_keys=True).encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") % 151
    return (350 + bucket) / 100


def build_rows() -> list[dict]:
    rng = random.Random(SEED)
    plan = [task for task in TASKS for _ in range(NUM_ROWS // len(TASKS))]
    assert len(plan) == NUM_ROWS
    rng.shuffle(plan)
    system_rows = set(rng.sample(range(NUM_ROWS), NUM_SYSTEM))
    multi_rows = set(rng.sample(range(NUM_ROWS), NUM_MULTI))
    rows = []
    seen_questions = set()
    for i, task in enumerate(plan):
        exchanges = task.make(rng)
        while exchanges[0][0] in seen_questions:  # keep every opening question unique
            exchanges = task.make(rng)
        seen_questions.add(exchanges[0][0])
        keep = min(len(exchanges), rng.choice([2, 2, 3])) if i in multi_rows else 1
        conversations = []
        if i in system_rows:
            conversations.append({"from": "system", "value": rng.choice(SYSTEM_PROMPTS[task.category])})
        for human, gpt in exchanges[:keep]:
            conversations.append({"from": "human", "value": human})
            conversations.append({"from": "gpt", "value": gpt})
        rows.append({"conversations": conversations, "source": f"trainer-sample/{task.name}",
                     "score": quality_score(conversations)})
    return rows


def validate(rows: list[dict]) -> None:
    assert len(rows) == NUM_ROWS
    for row in rows:
        turns = row["conversations"]
        roles = [t["from"] for t in turns]
        if roles[0] == "system":
            roles = roles[1:]
        assert roles and len(roles) % 2 == 0, row
        assert roles == ["human", "gpt"] * (len(roles) // 2), row
        for t in turns:
            assert set(t) == {"from", "value"}, row
            assert isinstance(t["value"], str) and t["value"] and t["value"] == t["value"].strip(), row
        assert 3.0 <= row["score"] <= 5.0
        assert row["source"].startswith("trainer-sample/")


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file on disk differs from what this script would generate")
    args = parser.parse_args(argv)

    rows = build_rows()
    validate(rows)
    data = render(rows).encode("utf-8")
    rel = OUTPUT_PATH.relative_to(REPO_ROOT)
    if args.check:
        if not OUTPUT_PATH.exists() or OUTPUT_PATH.read_bytes() != data:
            print(f"{rel} is out of date; run: python scripts/make_sample_data.py", file=sys.stderr)
            return 1
        print(f"{rel} is up to date ({len(rows)} rows)")
        return 0
    OUTPUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT_PATH.write_bytes(data)
    chars = [sum(len(t["value"]) for t in row["conversations"]) for row in rows]
    print(f"wrote {rel}: {len(rows)} rows, {len(data)} bytes, "
          f"chars per conversation min/mean/max {min(chars)}/{sum(chars) / len(chars):.0f}/{max(chars)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
