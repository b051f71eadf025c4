#!/usr/bin/env bash
# One lent-GPU call that trains reader candidates, validates them and exports the best.
#
#   bench/train_reader_gpu.sh KORQUAD_DEV.json[.gz] "CLOZE.json[.gz] ..." OUT_DIR
#
# From the shipped reader (START), in parallel on one GPU, each "NAME LR SEED" of
#   KQ_VARIANTS     KorQuAD's train split (3.5k questions), 4 epochs      (default A and C)
#   CLOZE_VARIANTS  first 1 epoch over the cloze files (`korqa cloze`) + the train split at
#                   lr 5e-5 (run B1), then from B1/last as above            (default B and D)
# plus weight averages (`korqa average`): all best/ ("soup"), and the cloze variants' ("soupB").
# Every candidate is scored on the validation fold; the best is exported as int8 blocks into
# OUT_DIR, cut into 15 MB parts (a device call returns files of at most 16 MiB):
# `cat model.safetensors.part-* > model.safetensors` rejoins them. Test questions are never
# trained, validated or scored here. Validation skips the particle trimming (no kiwipiepy on
# the device), so its F1 is a point or so under `korqa evaluate`'s; it is only compared with
# itself.
#
# DRY=1 runs every step with a handful of training steps (a CPU check of the script).
set -uo pipefail
DATA=$1 OUT=$3
read -ra CLOZE <<<"$2"
KQ_VARIANTS=${KQ_VARIANTS-"A 3e-5 11,C 5e-5 14"}
CLOZE_VARIANTS=${CLOZE_VARIANTS-"B 3e-5 13,D 5e-5 15"}
START=${START:-models/korqa-reader}
RUNS=${RUNS:-runs/gpu}
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-360}  # then stop training and choose among what was saved
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$RUNS"
korqa() { "$PY" -m korqa "$@"; }
train() {  # korqa train, stopped at the training deadline (its best/ and last/ stay usable)
  timeout $(( TRAIN_BUDGET_S - SECONDS > 1 ? TRAIN_BUDGET_S - SECONDS : 1 )) \
    "$PY" -m korqa train "$@"
}

BATCH=32
[[ ${DRY:-0} == 1 ]] && BATCH=4  # a CPU holds ~14 GB of activations per run at 32 x 384
common=(--data "$DATA" --split train --validation-fold 0 --batch-size "$BATCH"
        --max-seq-length 384 --doc-stride 128 --max-query-length 64 --layer-lr-decay 0.9
        --warmup 0.06 --no-trim --no-progress --threads 2)
kq_len=(--epochs 4) cloze_len=(--epochs 1 --eval-every 500)
if [[ ${DRY:-0} == 1 ]]; then
  kq_len=(--max-steps 2 --eval-limit 8) cloze_len=(--max-steps 2 --eval-limit 8)
fi

nvidia-smi -L 2>/dev/null
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
SECONDS=0
LOGS=$RUNS/logs; mkdir -p "$LOGS"
IFS=, read -ra kq_variants <<<"$KQ_VARIANTS"
IFS=, read -ra cloze_variants <<<"$CLOZE_VARIANTS"
for variant in "${kq_variants[@]}"; do
  read -r name lr seed <<<"$variant"
  train --model "$START" --out "$RUNS/$name" --lr "$lr" --seed "$seed" "${common[@]}" \
    "${kq_len[@]}" > "$LOGS/$name.log" 2>&1 &
done
if (( ${#cloze_variants[@]} )); then {
  train --model "$START" --out "$RUNS/B1" --extra-data "${CLOZE[@]}" --lr 5e-5 --seed 12 \
    "${common[@]}" "${cloze_len[@]}" > "$LOGS/B1.log" 2>&1
  for variant in "${cloze_variants[@]}"; do
    read -r name lr seed <<<"$variant"
    train --model "$RUNS/B1/last" --out "$RUNS/$name" --lr "$lr" --seed "$seed" \
      "${common[@]}" "${kq_len[@]}" > "$LOGS/$name.log" 2>&1 &
  done
  wait
} & fi
wait
echo "training done after ${SECONDS}s"

candidates=() bests=() cloze_bests=()
for variant in "${kq_variants[@]}" "B1" "${cloze_variants[@]}"; do
  read -r run _ <<<"$variant"
  [[ -f $RUNS/$run/best/model.safetensors ]] || continue
  candidates+=("$run")
  [[ $run == B1 ]] || bests+=("$RUNS/$run/best")
  [[ $run == B1 || " ${cloze_variants[*]} " != *" $run "* ]] || cloze_bests+=("$RUNS/$run/best")
done
if (( ${#bests[@]} >= 2 )) && korqa average --models "${bests[@]}" --out "$RUNS/soup/best" \
  > "$LOGS/soup.log" 2>&1; then candidates+=(soup); fi
if (( ${#cloze_bests[@]} >= 2 && ${#cloze_bests[@]} < ${#bests[@]} )) \
  && korqa average --models "${cloze_bests[@]}" --out "$RUNS/soupB/best" \
  > "$LOGS/soupB.log" 2>&1; then candidates+=(soupB); fi

for run in "${candidates[@]}"; do
  korqa evaluate --model "$RUNS/$run/best" --data "$DATA" --split validation --no-trim \
    --device "${EVAL_DEVICE:-cuda}" --engine torch --json --no-progress > "$LOGS/val-$run.json" \
    2> "$LOGS/eval-$run.log" &
done
wait
best_name="" best_f1=-1
for run in "${candidates[@]}"; do
  f1=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['f1'])" \
       "$LOGS/val-$run.json" 2>/dev/null) || continue
  echo "$run: validation F1 (no trimming) $f1"
  if "$PY" -c "import sys; sys.exit(float(sys.argv[1]) <= float(sys.argv[2]))" "$f1" "$best_f1"
  then best_name=$run best_f1=$f1; fi
done
echo "best: $best_name ($best_f1) after ${SECONDS}s"
tar -czf "$OUT/logs.tar.gz" "$LOGS" "$RUNS"/*/log.jsonl "$RUNS"/*/summary.json 2>/dev/null
[[ -n $best_name ]] || exit 1
korqa export --model "$RUNS/$best_name/best" --out "$RUNS/export" --dtype int8
split -b 15000000 "$RUNS/export/model.safetensors" "$OUT/model.safetensors.part-"
tar -C "$RUNS/export" -cf "$OUT/export-files.tar" --exclude model.safetensors .
echo "$best_name" > "$OUT/chosen.txt"
ls -la "$OUT"; echo "all done after ${SECONDS}s"
