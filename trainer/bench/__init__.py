"""The benchmark command: how fast configurations train, on this GPU or on an emulated consumer card.

- `sweep`: trains each configuration for a few steps in its own process and records it (benchmarks/results/*.jsonl);
- `emulate`: confines those processes to a card-sized share of the GPU (CUDA MPS) and measures that share;
- `cards`: the consumer cards' published specifications, MFU and the card estimate from an emulated run;
- `report`: benchmarks/RESULTS.md from the records.
A run's own numbers (benchmark.json) come from trainer/runs/speed.py, which training uses without the benchmark.
"""
