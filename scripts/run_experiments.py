"""Run a grid of fine-tuning experiments (variants x data splits x seeds) through a launcher and tabulate it.

The grid is a TOML file (see configs/): every run is a normal launcher run in its own folder
<out>/<variant>__<data>__seed<S>; finished runs (test_metrics.json present) are skipped, so a killed grid
continues where it stopped (an interrupted run resumes from its last checkpoint). Runs go one after another,
several at once with one GPU each (--devices 0,1,2,3), or as SLURM jobs (--submitit). At the end
scripts/compare_runs.py's table (CSV, LaTeX, figure; mean +- std over seeds and splits) is written to
<out>/comparison. The logic lives in rheed/grid.py.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed import grid  # noqa: E402
from rheed.cli import run_or_exit  # noqa: E402
from rheed.errors import UserError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="grid definition (TOML), e.g. configs/cpu_scratch_vs_fcmae.toml")
    parser.add_argument("--dry_run", action="store_true", help="list the runs and their commands only")
    parser.add_argument("--max_runs", type=int, default=0, help="stop after starting this many runs (0: all)")
    parser.add_argument("--devices", default="",
                        help="comma-separated GPU ids, e.g. 0,1,2,3: that many runs at once, each on one GPU "
                             "(CUDA_VISIBLE_DEVICES=<id>, GPUS=1); small data trains faster this way than on "
                             "all GPUs per run")
    parser.add_argument("--submitit", action="store_true",
                        help="submit every run as its own SLURM job through submitit and wait for all of them")
    parser.add_argument("--partition", default="", help="SLURM partition for --submitit (default: the cluster's)")
    parser.add_argument("--timeout_min", type=int, default=720, help="time limit of each --submitit job (minutes)")
    parser.add_argument("--submitit_cluster", default=None, choices=("slurm", "local", "debug"),
                        help="force a submitit executor (default: SLURM when available); local/debug run here")
    return parser


def run_grid(args) -> None:
    if args.devices and args.submitit:
        raise UserError("choose one of --devices and --submitit")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    config = grid.load_config(args.config)
    runs = grid.plan_runs(config)
    todo = [r for r in runs if not grid.is_finished(r)]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} finished, {len(todo)} to run")
    launcher = config["launcher"]
    if args.dry_run:
        for i, run in enumerate(todo):
            print(f"[{i + 1}/{len(todo)}] {grid.describe(run, launcher)}")
        return
    if devices:
        complete = grid.run_on_devices(todo, launcher, devices, args.max_runs)
    elif args.submitit:
        complete = grid.run_with_submitit(todo, launcher, Path(config["out"]) / "submitit", args.partition,
                                          args.timeout_min, args.submitit_cluster, args.max_runs)
    else:
        complete = grid.run_in_turn(todo, launcher, args.max_runs)
    if not complete:
        print(f"stopping after {args.max_runs} runs (--max_runs); run the same command again to continue")
        return
    from rheed.compare import compare_runs
    written = compare_runs([r["out"] for r in runs], Path(config["out"]) / "comparison", group_by=r"(.*?)__")
    print("comparison: " + ", ".join(str(p) for p in written))


def main(argv=None) -> None:
    run_or_exit(run_grid, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    main()
