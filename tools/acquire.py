#!/usr/bin/env python
"""Score the unlabeled pool of a run with its latest checkpoint; write the samples to label next."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import lossal_tasks as lt
from lossal_tasks.export import write_coco_image_list


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="run directory written by tools/train.py")
    parser.add_argument("--budget", type=int, required=True, help="how many samples to choose")
    parser.add_argument("--strategy", default=None, help="default: the run's strategy; "
                        f"one of: {', '.join(lt.STRATEGIES.names())}")
    parser.add_argument("--subset", type=int, default=0, help="score a random subset of M candidates (0: all)")
    parser.add_argument("--out", default=None, help="output path without extension "
                        "(default: <run>/acquisitions/<strategy>-b<budget>); writes .csv and .json")
    parser.add_argument("--coco-json", action="store_true",
                        help="also write <out>.coco.json: the chosen images as a COCO image list for a labeling tool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run = lt.open_run(args.run)
        strategy = args.strategy or run.config["strategy"]
        selection = lt.acquire(run.model, run.task, run.data.train, run.pool.unlabeled, args.budget,
                               strategy=strategy, subset_size=args.subset or None, seed=args.seed,
                               batch_size=args.batch_size, device=args.device, num_workers=args.workers)
        out = Path(args.out or Path(args.run) / "acquisitions" / f"{strategy}-b{args.budget}")
        csv_path, json_path = lt.write_selection(selection, run.data.train, out,
                                                 extra={"run": str(args.run), "checkpoint": str(run.checkpoint)})
        coco_path = None
        if args.coco_json:
            coco_path = write_coco_image_list(out.with_name(out.name + ".coco.json"), run.data.train,
                                              selection.indices, selection.scores,
                                              {"description": f"lossal selection by {strategy}", "run": str(args.run)})
    except lt.LossalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"scored {selection.num_scored} of {selection.num_candidates} unlabeled samples with "
          f"{run.checkpoint} in {selection.seconds:.1f}s; chose {len(selection)} by {strategy}")
    for row in lt.runs.selection_rows(selection, run.data.train)[:5]:
        score = "-" if row["score"] is None else f"{row['score']:.4f}"
        print(f"  {row['rank']:>4} {row['sample_key']:<32} score {score}")
    print(f"wrote {csv_path} and {json_path}")
    if coco_path is not None:
        print(f"wrote {coco_path} (COCO image list)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
