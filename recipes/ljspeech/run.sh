#!/usr/bin/env bash
# LJSpeech recipe: download -> prepare -> train Tacotron 2 -> train WaveNet -> synthesise -> eval.
# Only `neurotts` commands; GPU defaults (both trainings resume if interrupted: rerun the stage).
#
#   recipes/ljspeech/run.sh                         # everything
#   recipes/ljspeech/run.sh --stage 2 --stop-stage 2 --ngpu 4   # only Tacotron 2, on 4 GPUs
#
# Stages: 0 download, 1 prepare, 2 train tacotron2, 3 train wavenet, 4 synthesise samples, 5 eval,
#         6 (opt-in: --stop-stage 6) train the two other attention types and compare all three on
#           the built-in long passages (failures per attention type in $exp/eval/attention)
set -euo pipefail

stage=0
stop_stage=5
ngpu=1
data=data                      # where LJSpeech-1.1 is (or is downloaded to)
features=features/ljspeech     # feature store
exp=exp/ljspeech               # run folders, samples and reports
text=characters                # or arpabet
attention=location             # location | dca | multihead
tts_overrides=""               # extra overrides for stage 2, e.g. "trainer.max_steps=50000"
voc_overrides=""               # extra overrides for stage 3
compare_steps=50000            # stage 6: training steps for each other attention type

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; echo "options: --stage N --stop-stage N --ngpu N --data DIR --features DIR --exp DIR --text characters|arpabet --attention TYPE --tts-overrides '...' --voc-overrides '...' --compare-steps N"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --ngpu) ngpu=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --features) features=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --text) text=$2; shift 2 ;;
    --attention) attention=$2; shift 2 ;;
    --compare-steps) compare_steps=$2; shift 2 ;;
    --tts-overrides) tts_overrides=$2; shift 2 ;;
    --voc-overrides) voc_overrides=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
say() { printf '\n=== stage %s: %s\n' "$1" "$2"; }
train() {  # one process per GPU under torchrun; plain `neurotts train` for one
  if [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc_per_node="$ngpu" -m neurotts.cli train "$@"
  else
    neurotts train "$@"
  fi
}

if run_stage 0; then
  say 0 "download LJSpeech-1.1 into $data"
  neurotts download data.download_dir="$data"
fi

if run_stage 1; then
  say 1 "prepare features into $features"
  neurotts prepare data.root="$data/LJSpeech-1.1" out="$features" text="$text"
fi

if run_stage 2; then
  say 2 "train Tacotron 2 ($attention attention) into $exp/tacotron2"
  # shellcheck disable=SC2086
  train experiment=tacotron2_ljspeech data.features="$features" run.dir="$exp/tacotron2" \
    model.attention.type="$attention" $tts_overrides
fi

if run_stage 3; then
  say 3 "train WaveNet into $exp/wavenet"
  # shellcheck disable=SC2086
  train experiment=wavenet_ljspeech data.features="$features" run.dir="$exp/wavenet" $voc_overrides
fi

if run_stage 4; then
  say 4 "synthesise samples into $exp/samples"
  # --force: a rerun of this stage replaces the samples it wrote before.
  neurotts synth --input "$here/samples.txt" --acoustic "$exp/tacotron2" \
    --vocoder "$exp/wavenet" -o "$exp/samples/wavenet" --force
  neurotts synth --input "$here/samples.txt" --acoustic "$exp/tacotron2" \
    --vocoder griffinlim -o "$exp/samples/griffinlim" --force
fi

if run_stage 5; then
  say 5 "evaluate on the test split into $exp/eval"
  neurotts eval --acoustic "$exp/tacotron2" --vocoder "$exp/wavenet" \
    data.features="$features" out="$exp/eval/test"
  neurotts eval --acoustic "$exp/tacotron2" --vocoder griffinlim texts=long asr=false \
    out="$exp/eval/long"
fi

if run_stage 6; then
  say 6 "train the other attention types ($compare_steps steps each) and compare on long passages"
  runs=("$exp/tacotron2")
  for other in location dca multihead; do
    [ "$other" = "$attention" ] && continue
    # shellcheck disable=SC2086
    train experiment=tacotron2_ljspeech data.features="$features" run.dir="$exp/tacotron2-$other" \
      model.attention.type="$other" trainer.max_steps="$compare_steps" $tts_overrides
    runs+=("$exp/tacotron2-$other")
  done
  args=()
  for r in "${runs[@]}"; do args+=(--acoustic "$r"); done
  neurotts eval "${args[@]}" --vocoder griffinlim texts=long asr=false out="$exp/eval/attention"
fi
