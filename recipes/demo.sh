#!/usr/bin/env bash
# The whole chain with tiny models on CPU: corpus -> prepare -> train Tacotron 2 -> train
# WaveNet -> synthesise -> eval. Uses the LJSpeech sample in ../shared when it is there,
# otherwise a synthetic corpus made on the spot (no download). `make demo` runs this.
#
# Environment knobs (defaults fit in ~15 minutes on 2 cores):
#   DEMO_DIR (demo)  DEMO_TTS_STEPS (800)  DEMO_VOC_STEPS (1000)  DEMO_EVAL (6)
#   DEMO_CORPUS (auto: the sample if present, else toy; or toy, or an LJSpeech-layout folder)
#   DEMO_TOY_UTTERANCES (200)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${DEMO_DIR:-demo}
tts_steps=${DEMO_TTS_STEPS:-800}
voc_steps=${DEMO_VOC_STEPS:-1000}
n_eval=${DEMO_EVAL:-6}
corpus=${DEMO_CORPUS:-auto}
sample="$here/../shared/data/ljspeech-sample/LJSpeech-1.1"
mkdir -p "$out"
cat <<'MSG'
neurotts demo: tiny models trained for minutes on a CPU. This proves that the chain runs end
to end (prepare -> train -> synthesise -> evaluate) and shows what each step writes; it does
not make a voice (expect buzzing, mumbled speech). A voice takes the full-size presets on a
GPU: recipes/ljspeech/run.sh (README: Quickstart, Train).
MSG
t0=$(date +%s)
step() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$1"; }

if [ "$corpus" = auto ]; then
  if [ -f "$sample/metadata.csv" ]; then corpus=$sample; else corpus=toy; fi
fi
if [ "$corpus" = toy ]; then
  step "making a synthetic corpus (no LJSpeech sample found)"
  neurotts toy-corpus "$out/corpus" --utterances "${DEMO_TOY_UTTERANCES:-200}"
  corpus="$out/corpus"
fi

# Clips up to 6 s: shorter sequences train faster and align sooner on a CPU. The val and test
# clips are drawn from the clips kept, so the split has exactly 8 and $n_eval of them.
step "prepare $corpus -> $out/features"
neurotts prepare data.root="$corpus" out="$out/features" \
  data.split.val_size=8 data.split.test_size="$n_eval" audio.max_duration=6.0

every=$(( tts_steps / 5 > 0 ? tts_steps / 5 : 1 ))
step "train a tiny Tacotron 2 for $tts_steps steps -> $out/tacotron2"
neurotts train model=tacotron2 experiment=tiny data.features="$out/features" \
  run.dir="$out/tacotron2" trainer.max_steps="$tts_steps" trainer.batch_size=8 \
  trainer.val_every="$every" trainer.checkpoint_every="$every" trainer.log_every=50 \
  trainer.schedule.decay=cosine trainer.schedule.min_lr=1.0e-4 trainer.media.griffin_lim_iters=16

every=$(( voc_steps / 5 > 0 ? voc_steps / 5 : 1 ))
step "train a tiny WaveNet for $voc_steps steps -> $out/wavenet"
neurotts train model=wavenet experiment=tiny data.features="$out/features" \
  run.dir="$out/wavenet" trainer.max_steps="$voc_steps" trainer.val_every="$every" \
  trainer.checkpoint_every="$every" trainer.log_every=100

step "synthesise -> $out/wavs"
printf '%s\n' "Printing, in the only sense with which we are at present concerned." \
  "The old house stood by the river." > "$out/sentences.txt"
# --force: a rerun of the demo replaces the files it wrote before.
neurotts synth --input "$out/sentences.txt" --acoustic "$out/tacotron2" --vocoder griffinlim \
  -o "$out/wavs/griffinlim" --force
neurotts synth "The old house stood by the river." --acoustic "$out/tacotron2" \
  --vocoder "$out/wavenet" -o "$out/wavs/wavenet/001.wav" --force

step "evaluate up to $n_eval test utterances -> $out/eval"
neurotts eval --acoustic "$out/tacotron2" --vocoder griffinlim data.features="$out/features" \
  out="$out/eval" limit="$n_eval" device=cpu

step "done"
cat <<MSG
  wavs:        $out/wavs/griffinlim/*.wav  $out/wavs/wavenet/001.wav
  tensorboard: tensorboard --logdir $out   ($out/tacotron2/tensorboard, $out/wavenet/tensorboard)
  eval report: $out/eval/report.md  (report.json, alignments.png, mel_*.png)
MSG
