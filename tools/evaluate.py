#!/usr/bin/env python
"""Evaluate a run's checkpoint (default: the latest) on its test split."""
from __future__ import annotations

import argparse
import json
import sys

import lossal_tasks as lt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="run directory written by tools/train.py")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint.pt of that run (default: latest)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        run = lt.open_run(args.run)
        model = run.model
        if args.checkpoint:
            model, _ = lt.load_checkpoint(args.checkpoint, run.task)
        results = lt.evaluate(run.task, model, run.data.test, args.batch_size, args.device)
    except lt.LossalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": str(args.checkpoint or run.checkpoint), **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
