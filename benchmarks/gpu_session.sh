#!/bin/bash
# What the H200 sessions of 2026-12-03 ran (benchmarks/results/): one device call prepares the host once (wheels and
# random models, benchmarks/gpu_setup.sh), then runs the sessions named in $@, with logs and records under $OUT:
#   bash benchmarks/gpu_session.sh 2060s 3070        carry: [".whl", ".gpu"]
#   T=530 TESTS="packed or fits or heals or resume_after_kill" bash benchmarks/gpu_session.sh tests
#   T=510 TESTS="dpo_from or (orpo and fits)" bash benchmarks/gpu_session.sh tests
#   T=270 bash benchmarks/gpu_session.sh dpo3070 dpo2060s dpoquadro   bench --method dpo against Unsloth's DPO notebook
export PYTHONUNBUFFERED=1
if [ ! -d /tmp/models/llama-3.2-3B-random ]; then . benchmarks/gpu_setup.sh 1B 3B > "$OUT/setup.log" 2>&1; fi
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TRAINER_GPU_MODELS=/tmp/models TRAINER_RECORDS_DIR=$OUT/records
M1=$TRAINER_GPU_MODELS/llama-3.2-1B-random M3=$TRAINER_GPU_MODELS/llama-3.2-3B-random
bench() { echo "== $(date +%T) bench $*"; timeout "${T:-500}" python3 -m trainer bench "$@"; echo "== $(date +%T) rc=$?"; }
for what in "$@"; do
  case $what in
    2060s) bench --model "$M1" --emulate rtx2060s --engines unsloth --config all-positions:trained_positions_only=off \
             --config rows1024:max_seq_length=1024,micro_batch_size=4 --steps 20 ;;
    3070) bench --model "$M1" --emulate rtx3070 --engines unsloth --config all-positions:trained_positions_only=off --steps 15 ;;
    3070win) bench --model "$M1" --emulate rtx3070 --platform windows --engines unsloth --steps 12 ;;
    quadro) bench --model "$M3" --emulate quadro-rtx5000 --engines unsloth --config all-positions:trained_positions_only=off --steps 12 ;;
    dpo3070) bench --model "$M1" --emulate rtx3070 --engines unsloth --method dpo --steps 6 ;;
    dpo2060s) bench --model "$M1" --emulate rtx2060s --engines unsloth --method dpo --steps 6 ;;
    dpoquadro) bench --model "$M3" --emulate quadro-rtx5000 --engines unsloth --method dpo --steps 6 ;;
    tests) echo "== $(date +%T) tests $TESTS"; timeout "${T:-560}" python3 -m pytest -q -p no:cacheprovider tests/gpu -k "$TESTS" -rA ;;
  esac 2>&1 | tee -a "$OUT/$what.log"
done
ls -la "$OUT" "$OUT/records"
# Only 8 files come back from a device call: the records travel as one archive.
if [ -d "$OUT/records" ]; then tar czf "$OUT/records.tgz" -C "$OUT" records && rm -rf "$OUT/records"; fi
