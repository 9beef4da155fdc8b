#!/bin/bash
# What the H200 sessions of 2026-12-03 ran (benchmarks/results/): one device call prepares the host once (wheels and
# random models, benchmarks/gpu_setup.sh), then runs the sessions named in $@, with logs and records under $OUT.
# Several in one call share the host's setup; the most important first. A device call the lender refuses ("no device
# machine could be started") still costs 90-330 s of the session's 30 minutes (one asked for during a "later means in
# N min" wait, 15 s), one whose machine is taken back before it ends about 420 s (2026-12-07, with nothing back), and
# a machine released after 30 s idle costs its start again: chain the work into few calls of up to 600 s. Where
# machines are scarce (2026-12-07/08: ten calls refused in a row, 1,456 s, none ran), a call's timeout_s must still fit
# in what is left: shorten it (one speed:CARD:SHAPE entry, T=300) after the first two refusals.
#   bash benchmarks/gpu_session.sh 2060s 3070        carry: [".whl", ".gpu"]
#   T=530 TESTS="packed or fits or heals or resume_after_kill" bash benchmarks/gpu_session.sh tests
#   T=510 TESTS="dpo_from or (orpo and fits)" bash benchmarks/gpu_session.sh tests
#   T=270 bash benchmarks/gpu_session.sh dpo3070 dpo2060s dpoquadro   bench --method dpo against Unsloth's DPO notebook
#   T=500 bash benchmarks/gpu_session.sh memory      (device call timeout_s 540) records/memory.jsonl in records.tgz
#            (WAVES="qwen3-0.6B gemma3-270M gemma3-1B|qwen3-14B|gemma3-12B-images": the sizes the fit knows offline
#            but extrapolates to, never measured; then python benchmarks/fit_memory.py --check)
#   T=520 bash benchmarks/gpu_session.sh fitted      the fit's settings per card and shape, predicted beside measured
#            (CARDS="quadro-rtx5000:15:5" for the 16 GB half, which the 2026-12-06 call did not reach;
#            CARDS="rtx3070:7:3" MODELS="1B 3B qwen3-4B" FITTED_SET=engine=transformers: the fallback's fit)
#   T=300 TESTS="other_process" bash benchmarks/gpu_session.sh tests   issue 36's other-process-holds-memory record
#   T=200 bash benchmarks/gpu_session.sh transformers   peaks of the transformers engine (the fallback), 1B and 3B
#   bash benchmarks/gpu_session.sh speed:rtx3070:qwen3-4B   bench --emulate CARD on a shape (tuned against the
#            notebook recipe, STEPS steps each, default 6): the measured speed beside the predicted one
#            (a 1B about 1.7 min of the call, a 3B-4B 2.5-5 min: Phi-4-mini and Gemma 3 load slowly, an 8B 3.5 min)
#   T=250 STEPS=4 bash benchmarks/gpu_session.sh speed:rtx3070:phi4-mini   the 2026-12-07 call: Phi-4-mini's fitted
#            rows, one conversation each (trainer/fit/choose.py UNPACKED), against the notebook recipe (the call before
#            it measured the packed rows, with --config padded:pad_to_multiple_of=64: Unsloth's attention_calls
#            counted none on them)
#   SETUP= T=550 STEPS=3 bash benchmarks/gpu_session.sh speed:rtx3070:gemma3-4B   Gemma 3 against its notebook
#            recipe: each configuration's first step compiles every layer (2-4 min, less once the host's compile cache holds it);
#            on 2026-12-07 the RTX 3070's took 6 min 15 s on a warm host, the Quadro's notebook did not finish in T=470.
#            The records come back as records.tgz, which this script writes: a device command that tars $OUT/records
#            again after it overwrites the archive with an empty one.
#
# memory: peak memory of worst-case batches (benchmarks/memory_sweep.py, its quick grid: 4 points a shape) for the 8
# shapes of benchmarks/gpu_models.py, for the memory model of issue 32. Expected: about 9 minutes unbounded, so T
# bounds the whole script (counted from its start): no point starts after T s, those running are stopped then
# (recorded as timed out), and what never started is recorded as such. The estimate: setup 40 s (wheels, 1B and 3B);
# bytecode for the wheels and torch 15 s (without it every child compiles unsloth again); building 6 more shapes
# about 2.5 min (an 8B ~30 s); per point ~35 s for a 1B-4B (import unsloth, quantize at load, 3 steps), ~70 s for an
# 8B; 32 points 4 at a time, ~5.5 min. The disk (64 GB) holds one wave of shapes in bf16 at a time (~33 GB), so the
# shapes are built, swept and deleted in waves (1B and 3B stay for the other entries), the least informative last:
# Mistral 7B with the Llama vocabulary is the Llama 3.1 8B shape but for rope. GRID=full (22 points a shape),
# PARALLEL (4; each child capped at a 1/PARALLEL share of 90% of the GPU's memory) and WAVES change it; MPS=1 runs
# the children under an MPS daemon started here, each on 100/PARALLEL % of the SMs.
export PYTHONUNBUFFERED=1
# Several invocations in one device call add to one archive of records (the last one's comes back).
if [ -f "$OUT/records.tgz" ]; then tar xzf "$OUT/records.tgz" -C "$OUT" && rm "$OUT/records.tgz"; fi
# SETUP: the shapes built first, which the named entries use (default 1B 3B); SETUP= builds none, for a call about
# one other shape (speed:CARD:SHAPE builds its own): 40 s of the call saved.
SETUP=${SETUP-1B 3B}
if [ ! -d /tmp/site ] || { [ -n "$SETUP" ] && [ ! -f /tmp/models/llama-3.2-3B-random/config.json ]; }; then
  # shellcheck disable=SC2086 source=/dev/null
  . benchmarks/gpu_setup.sh $SETUP > "$OUT/setup.log" 2>&1
fi
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TRAINER_GPU_MODELS=/tmp/models TRAINER_RECORDS_DIR=$OUT/records
M1=$TRAINER_GPU_MODELS/llama-3.2-1B-random M3=$TRAINER_GPU_MODELS/llama-3.2-3B-random
WAVES=${WAVES:-"1B 3B qwen3-4B gemma3-4B phi4-mini|8B qwen3-8B|mistral-7B"}
# Bytecode for the wheels and torch, once a host (15 s): the host sets PYTHONDONTWRITEBYTECODE, and without it every
# child process compiles unsloth's sources again.
bytecode() {
  unset PYTHONDONTWRITEBYTECODE
  [ -f /tmp/site/.bytecode ] && return
  python3 -m compileall -q -j 16 /tmp/site "$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')" \
    > /dev/null 2>&1
  touch /tmp/site/.bytecode
}
memory() {
  bytecode
  if [ "${MPS:-0}" = 1 ]; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
    mkdir -p /tmp/mps /tmp/mpslog && nvidia-cuda-mps-control -d
  fi
  mkdir -p "$OUT/records"
  local wave names folders left
  IFS='|' read -ra waves <<< "$WAVES"
  for wave in "${waves[@]}"; do
    read -ra names <<< "$wave"
    left=$(( ${T:-500} - SECONDS ))
    if [ "$left" -lt 60 ]; then echo "== $(date +%T) T spent: not swept: $wave"; continue; fi
    echo "== $(date +%T) build $wave"
    mapfile -t folders < <(timeout "$left" python3 benchmarks/gpu_models.py "$TRAINER_GPU_MODELS" "${names[@]}" \
                           | cut -d' ' -f1)
    left=$(( ${T:-500} - SECONDS ))
    echo "== $(date +%T) sweep ${folders[*]} (${left} s left)"
    if [ "${#folders[@]}" -gt 0 ] && [ "$left" -gt 30 ]; then
      timeout $(( left + 20 )) python3 benchmarks/memory_sweep.py "${folders[@]}" --out "$OUT/records/memory.jsonl" \
        --grid "${GRID:-quick}" --parallel "${PARALLEL:-4}" --budget-s "$left" --set dtype=bfloat16 \
        --set load_in_4bit=true
    fi
    for folder in "${folders[@]}"; do
      case $folder in */llama-3.2-1B-random|*/llama-3.2-3B-random) ;; *) rm -rf "$folder" ;; esac
    done
    rm -rf "$TRAINER_GPU_MODELS"/*.partial  # a build stopped by the timeout
  done
  if [ "${MPS:-0}" = 1 ]; then echo quit | nvidia-cuda-mps-control; fi
}
# The settings the fit chooses, for each card's budget (its emulated cap) and model shape: one run each on worst-case
# rows, the predicted peak recorded beside the measured (memory only: the children share the GPU, no MPS).
fitted() {  # MODELS: gpu_models.py's shape names; FITTED_SET: one more --set for every run (engine=transformers)
  echo "== $(date +%T) build"
  local folders left extra=()
  # shellcheck disable=SC2086  # MODELS: several names
  mapfile -t folders < <(python3 benchmarks/gpu_models.py "$TRAINER_GPU_MODELS" \
                         ${MODELS:-8B qwen3-4B gemma3-4B phi4-mini 3B} | cut -d' ' -f1)  # the disk: 64 GB
  [ -n "${FITTED_SET:-}" ] && extra=(--set "$FITTED_SET")
  mkdir -p "$OUT/records"
  for card in ${CARDS:-rtx3070:7:6 quadro-rtx5000:15:5}; do
    IFS=: read -r profile cap parallel <<< "$card"
    left=$(( ${T:-500} - SECONDS ))
    echo "== $(date +%T) fitted $profile under $cap GB ($left s left) ${extra[*]}"
    [ "$left" -gt 60 ] && timeout $(( left + 20 )) python3 benchmarks/memory_sweep.py --fitted --profile "$profile" \
      --cap-gb "$cap" --parallel "$parallel" --budget-s "$left" --out "$OUT/records/fitted.jsonl" "${extra[@]}" \
      "${folders[@]}"
  done
}
# The transformers engine's peaks (no unsloth: PEFT, TRL's chunked loss, its own checkpointing) for the fit's
# fallback coefficients (LOSS: chunked_nll, what the fallback runs, or nll): one row of 1,024 without checkpointing, 1 to 4 rows of 2,048 with.
transformers_peaks() {
  local left=$(( ${T:-200} - SECONDS ))
  mkdir -p "$OUT/records"
  timeout $(( left + 20 )) python3 benchmarks/memory_sweep.py "$M1" "$M3" --out "$OUT/records/memory-transformers.jsonl" \
    --parallel 4 --budget-s "$left" --set engine=transformers --set dtype=bfloat16 --set load_in_4bit=true \
    --set loss_type="${LOSS:-chunked_nll}" --set trained_positions_only=off \
    --point micro_batch_size=1,max_seq_length=1024,gradient_checkpointing=off \
    --point micro_batch_size=1,max_seq_length=2048,gradient_checkpointing=on \
    --point micro_batch_size=2,max_seq_length=2048,gradient_checkpointing=on \
    --point micro_batch_size=4,max_seq_length=2048,gradient_checkpointing=on
}
speed() {  # speed:CARD:SHAPE
  local card shape folder
  IFS=: read -r _ card shape <<< "$1"
  bytecode
  folder=$(python3 benchmarks/gpu_models.py "$TRAINER_GPU_MODELS" "$shape" | cut -d' ' -f1)
  # bench trains each configuration in a folder it deletes at the end: its log (every step, the warnings) is copied
  # as it grows into records/logs/, which travel in records.tgz
  local logs=$OUT/records/logs/$card-$shape watcher
  mkdir -p "$logs"
  (while sleep 5; do for f in /tmp/trainer-bench-*/*/train.log; do
     [ -f "$f" ] && cp "$f" "$logs/$(basename "$(dirname "$f")").log"; done; done) &
  watcher=$!
  # BENCH_ARGS (e.g. "--config nopack:packing=false") in place of the built-in tuned and notebook configurations
  # shellcheck disable=SC2086
  TRAINER_RECORDS_DIR=$OUT/records bench --model "$folder" --emulate "$card" ${BENCH_ARGS:---engines unsloth} \
    --steps "${STEPS:-6}"
  kill "$watcher"
  grep -h -i "^step\|eager\|recompil" "$logs"/*.log | cut -c1-160 | tail -20
  # how Unsloth ran attention over packed rows, per configuration (a family on transformers' modeling path)
  cat "$OUT"/records/*.jsonl 2>/dev/null | python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r.get("model", "").endswith(sys.argv[1]):
        print("attention", r.get("session"), r["config"], r.get("attention_calls"))' "$(basename "$folder")"
}
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
    memory) memory ;;
    fitted) fitted ;;
    transformers) transformers_peaks ;;
    speed:*) speed "$what" ;;
    tests) echo "== $(date +%T) tests $TESTS"; timeout "${T:-560}" python3 -m pytest -q -p no:cacheprovider tests/gpu -k "$TESTS" -rA ;;
  esac 2>&1 | tee -a "$OUT/${what//:/-}.log"
done
ls -la "$OUT" "$OUT/records"
# Only 8 files come back from a device call: the records travel as one archive.
if [ -d "$OUT/records" ]; then tar czf "$OUT/records.tgz" -C "$OUT" records && rm -rf "$OUT/records"; fi
