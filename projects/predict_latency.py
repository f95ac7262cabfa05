"""Zero-shot latency of architectures on a device known only by its 10 anchor latencies (MetaPredictor).

    python -m projects.predict_latency --model predictor.pt --anchors 1.2,3.4,... \\
        [--arch '|nor_conv_3x3~0|+|...|' ...] [--arch-file FILE]

``--anchors``: the 10 anchor latencies in ms, comma-separated, in the space's ``anchors()`` order.
``--arch`` (repeatable; empty values ignored) and/or ``--arch-file`` (one architecture string per line; blank
lines and ``#`` comments skipped). Prints ``arch,latency_ms`` CSV. Bad input: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # run as a script: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.cli import bad_input, run_main
from modnas_ops.errors import UserError


def parse_anchors(text: str) -> list[float]:
    """``"1.2,3.4,..."`` -> floats (ValueError naming the bad item)."""
    out = []
    for item in text.split(","):
        try:
            out.append(float(item))
        except ValueError:
            raise UserError(f"--anchors: {item.strip()!r} is not a number") from None
    return out


def read_arch_file(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--arch-file {p}: no such file")
    return [s for line in p.read_text().splitlines() if (s := line.strip()) and not s.startswith("#")]


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="MetaPredictor file (MetaPredictor.save)")
    parser.add_argument("--anchors", required=True, help="10 anchor latencies in ms, comma-separated")
    parser.add_argument("--arch", action="append", default=[], help="architecture string (repeatable)")
    parser.add_argument("--arch-file", default=None, help="file with one architecture string per line")
    args = parser.parse_args(argv)
    anchors = parse_anchors(args.anchors)
    archs = [a.strip() for a in args.arch if a.strip()] + (read_arch_file(args.arch_file) if args.arch_file else [])
    if not archs:
        raise UserError("no architectures: give --arch and/or --arch-file")

    from modnas_ops.devices import validate_anchor_latencies
    from modnas_ops.predictor import MetaPredictor, predict_latency_ms

    with bad_input("--anchors", (ValueError,)):
        validate_anchor_latencies(anchors, what="--anchors")  # before the (slower) model load
    with bad_input(f"--model {args.model}"):
        model = MetaPredictor.load(args.model)
    with bad_input("--arch", (ValueError,)):
        latency_ms = predict_latency_ms(model, anchors, archs)
    print("arch,latency_ms")
    for arch, ms in zip(archs, latency_ms, strict=True):
        print(f"{arch},{ms:.6g}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
