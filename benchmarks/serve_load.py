"""How `trainer serve` answers requests sent at once: each one's latency, for 1, 2, 4, ... at a time.

    python -m trainer serve TARGET --port 8000 &          # then, once it listens:
    python benchmarks/serve_load.py http://127.0.0.1:8000/v1 [--counts 1,2,4,8,16] [--max-tokens 32] [--api-key K]

Every request asks the same question greedily for exactly --max-tokens tokens (ignore_eos is not an OpenAI option, so
the question asks for a long answer), through the official openai client; prints one line per count.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from openai import OpenAI

QUESTION = [{"role": "user", "content": "Describe the history of Paris in detail."}]


def burst(client: OpenAI, model: str, count: int, max_tokens: int) -> list[tuple[float, int]]:
    """`count` requests released together: (latency in s, completion tokens) each."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        barrier.wait()
        began = time.perf_counter()
        reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=max_tokens)
        results[i] = (time.perf_counter() - began, reply.usage.completion_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--counts", default="1,2,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--api-key", default="none")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=3600)
    model = client.models.list().data[0].id
    burst(client, model, 1, args.max_tokens)  # warm-up
    for count in (int(c) for c in args.counts.split(",")):
        results = burst(client, model, count, args.max_tokens)
        latencies = sorted(seconds for seconds, _ in results)
        tokens = sum(n for _, n in results)
        print(f"{count:>3} at once: all {len(results)} answered, {tokens} tokens; latency min {latencies[0]:.2f} s, "
              f"median {statistics.median(latencies):.2f} s, max {latencies[-1]:.2f} s; "
              f"{tokens / latencies[-1]:.1f} tokens/s overall", flush=True)


if __name__ == "__main__":
    main()
