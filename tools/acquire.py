#!/usr/bin/env python
"""Score the unlabeled pool of a run with its latest checkpoint; write the samples to label next."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

import lossal_tasks as lt
from lossal_tasks import distributed
from lossal_tasks.export import write_coco_image_list
from lossal_tasks.runlock import RunLock
from lossal_tasks.labeling import is_labeling_project, record_selection, unannotated


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    # --run-dir: torchrun's own parser takes "--run" for an abbreviation of its --run-path
    parser.add_argument("--run", "--run-dir", dest="run", required=True,
                        help="run directory written by tools/train.py")
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
    """Run the tool; under torchrun join the process group first and print on rank 0 only."""
    args = parse_args(argv)
    try:
        with distributed.process_group_session(args.device):
            return _main(args)
    except lt.LossalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _inside(path: str, run_dir: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(run_dir).resolve())


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    writes_elsewhere = args.out is not None and not _inside(args.out, args.run)
    with contextlib.ExitStack() as held:  # the run's lock, while this writes into the run directory
        if not writes_elsewhere:
            held.enter_context(RunLock(args.run, command="tools/acquire.py"))
        run = lt.open_run(args.run)
        strategy = args.strategy or run.config["strategy"]
        project = is_labeling_project(run.data.train)
        candidates = unannotated(run.data.train, run.pool) if project else run.pool.unlabeled
        selection = lt.acquire(run.model, run.task, run.data.train, candidates, args.budget,
                               strategy=strategy, subset_size=args.subset or None, seed=args.seed,
                               batch_size=args.batch_size, device=args.device, num_workers=args.workers)
        out = Path(args.out or Path(args.run) / "acquisitions" / f"{strategy}-b{args.budget}")
        extra = {"run": str(args.run), "checkpoint": str(run.checkpoint)}
        if project:
            # sample_key is the image's path relative to this folder, as the annotation files write it
            extra["image_folder"] = str(getattr(run.data.train, "image_folder", ""))
            if writes_elsewhere:
                held.enter_context(RunLock(args.run, command="tools/acquire.py"))
            record_selection(args.run, int(run.pool.meta.get("completed_cycles", 1)) - 1, selection.to_dict())
        csv_path, json_path = lt.write_selection(selection, run.data.train, out, extra=extra)
        coco_path = None
        if args.coco_json:
            coco_path = write_coco_image_list(out.with_name(out.name + ".coco.json"), run.data.train,
                                              selection.indices, selection.scores,
                                              {"description": f"lossal selection by {strategy}", "run": str(args.run)})
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
