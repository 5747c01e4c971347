"""``python -m neurotts.runtime VOICE_DIR "Text." -o out.wav``: speak with an exported voice.

Needs numpy, onnxruntime and the text frontend's packages; never imports torch.
"""

from __future__ import annotations

import argparse
import sys

from neurotts.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurotts.runtime",
                                     description="Speak TEXT with a voice exported by `neurotts export`.")
    parser.add_argument("voice", help="the exported voice folder (voice.json and its .onnx graphs)")
    parser.add_argument("text", help="what to say; its sentences are decoded as one batch")
    parser.add_argument("-o", "--output", required=True, help="the .wav file to write")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the prenet dropout: the same seed gives the same audio")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads per graph")
    parser.add_argument("--speaker", default=None,
                        help="a multi-speaker voice's speaker (voice.json lists them; "
                             "default: the first)")
    args = parser.parse_args(argv)
    from neurotts.runtime.synth import Synthesizer, write_wav

    try:
        synth = Synthesizer(args.voice, args.threads)
        if args.speaker is None and synth.speakers:
            print(f"note: no --speaker: speaking as {synth.speakers[0]}, the first of the "
                  f"voice's speakers ({', '.join(synth.speakers)})", file=sys.stderr)
        spoken = synth.speak(args.text, args.seed, args.speaker)
        write_wav(args.output, spoken.wav, synth.sample_rate)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the output cannot be written
        print(f"error: {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    cut = sum(spoken.hit_max)
    note = f" ({cut} of {len(spoken.sentences)} sentences cut by the length guard)" if cut else ""
    print(f"wrote {args.output}: {spoken.wav.size / synth.sample_rate:.2f} s{note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
