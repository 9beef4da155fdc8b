"""`finetome-like` and `pairs-like`: generated data with the shape of FineTome-100k and of a preference dataset, so
the benchmark runs without the Hub.

Speed depends on how many tokens each row has, not on what they say, so only the lengths imitate FineTome-100k
(mlabonne/FineTome-100k: 100,000 ShareGPT conversations, mostly one question and one long answer):
- total words per conversation: log-normal with median 480 and sigma 0.75 (mean about 630; about 3% longer than the
  2048-token rows the profiles train on, which are truncated as FineTome's are);
- 15% of conversations have two exchanges; the question takes 10-40% of each exchange, the answer the rest.
These numbers are an assumption, not a measurement of FineTome: the Hub is unreachable from our machines. Rendered with
the real Llama 3.2 tokenizer and template they give about 680 tokens per row, within 2% of the ~670 real tokens per row
that our first GPU measurement of the notebook recipe saw (2,337 tokens/s at 26.2 steps/min of 8 rows). Benchmark your
real data with `--data PATH` where you have it.
`longest`: conversations longer than any max_seq_length, for the worst case of memory.
`pairs-like` (bench --method dpo|orpo) imitates UltraFeedback-binarized (HuggingFaceH4/ultrafeedback_binarized, the
data of Unsloth's DPO notebook) as an assumption too: a prompt of median 90 words (log-normal, sigma 0.9) and two
answers of median 230 words each (sigma 0.7), in TRL's standard format.
Each word below is a single token (with its leading space) in Llama 3's and SmolLM2's vocabularies, so words ~ tokens.
"""

from __future__ import annotations

import math
import random
from typing import Any

ROWS = 2000
MEDIAN_WORDS = 480
SIGMA = 0.75
TWO_EXCHANGES = 0.15
# The mean rendered length of a finetome-like row with the real Llama 3.2 tokenizer and template, truncated to 2048
# tokens (680.3; measured by tests/test_bench.py, which keeps this number honest; 690 with the SmolLM2-vocabulary
# stand-in used before): the tokens per row of the projected FineTome epoch.
TOKENS_PER_ROW = 680
FINETOME_ROWS = 100_000
PAIRS = 2000
PROMPT_WORDS, PROMPT_SIGMA = 90, 0.9
ANSWER_WORDS, ANSWER_SIGMA = 230, 0.7

WORDS = (
    "the of and to in is that for it as with was on be by this are from or at an which have not can all one "
    "their has its more other will time some these two would when what there been into only about many most also "
    "new first used where each such through between after over how then both well made called may like any them "
    "number water people part three because could example those different same large system should found work "
    "while small form world during since four data often much under early high long year state order point "
    "model energy light power process value change field group result line use set case level given way"
).split()


def finetome_like(rows: int = ROWS, seed: int = 0) -> list[dict[str, Any]]:
    """`rows` conversations in FineTome's schema (conversations/source/score), the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        words = max(16, int(rng.lognormvariate(math.log(MEDIAN_WORDS), SIGMA)))
        exchanges = 2 if rng.random() < TWO_EXCHANGES else 1
        conversation = []
        for _ in range(exchanges):
            share = words // exchanges
            question = max(4, int(share * rng.uniform(0.1, 0.4)))
            conversation += [{"from": "human", "value": _text(rng, question)},
                             {"from": "gpt", "value": _text(rng, max(4, share - question))}]
        out.append({"conversations": conversation, "source": "finetome-like", "score": 4.5})
    return out


def pairs_like(rows: int = PAIRS, seed: int = 0) -> list[dict[str, str]]:
    """`rows` preference pairs (prompt, chosen, rejected), the same for the same seed."""
    rng = random.Random(seed)

    def words(median: int, sigma: float) -> int:
        return max(4, int(rng.lognormvariate(math.log(median), sigma)))

    return [{"prompt": _text(rng, words(PROMPT_WORDS, PROMPT_SIGMA)),
             "chosen": _text(rng, words(ANSWER_WORDS, ANSWER_SIGMA)),
             "rejected": _text(rng, words(ANSWER_WORDS, ANSWER_SIGMA))} for _ in range(rows)]


def longest(rows: int, seed: int = 0) -> list[dict[str, Any]]:
    """`rows` conversations of a 3,000-word answer, longer than any max_seq_length we train: every training row is
    cut to it, the worst case for memory (the GPU fit tests and benchmarks/memory_sweep.py)."""
    rng = random.Random(seed)
    return [{"conversations": [{"from": "human", "value": "Write a long text."},
                               {"from": "gpt", "value": _text(rng, 3000)}]} for _ in range(rows)]


def _text(rng: random.Random, words: int) -> str:
    picked = rng.choices(WORDS, k=words)
    picked[0] = picked[0].capitalize()
    return " ".join(w + ("." if i % 14 == 13 else "") for i, w in enumerate(picked)) + "."
