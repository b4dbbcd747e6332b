"""Run a grid of fine-tuning experiments (variants x data splits x seeds) through a launcher and tabulate it.

The grid is a TOML file (see configs/): every run is a normal launcher run in its own folder
<out>/<variant>__<data>__seed<S>; finished runs (test_metrics.json present) are skipped, so a killed grid
continues where it stopped (an interrupted run resumes from its last checkpoint). At the end
scripts/compare_runs.py's table (CSV, LaTeX, figure; mean +- std over seeds and splits) is written to
<out>/comparison.
"""
import argparse
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import run_or_exit  # noqa: E402
from rheed.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="grid definition (TOML), e.g. configs/cpu_scratch_vs_fcmae.toml")
    parser.add_argument("--dry_run", action="store_true", help="list the runs and their commands only")
    parser.add_argument("--max_runs", type=int, default=0, help="stop after starting this many runs (0: all)")
    return parser


def load_config(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise UserError("reading the TOML grid needs Python >= 3.11 (the conda environment has it)") from None
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    for key in ("out", "launcher", "data", "seeds", "variants"):
        if key not in config:
            raise UserError(f"{path} lacks '{key}'")
    if not (REPO / config["launcher"]).is_file():
        raise UserError(f"{path}: launcher {config['launcher']} not found")
    names = [v.get("name") for v in config["variants"]]
    if None in names or len(set(names)) != len(names):
        raise UserError(f"{path}: every [[variants]] entry needs a unique name")
    return config


def expand_data(patterns) -> list[str]:
    roots = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not found or not all(os.path.isdir(p) for p in found):
            raise UserError(f"data split not found: {pattern}")
        roots += found
    return roots


def plan_runs(config: dict) -> list[dict]:
    runs = []
    for variant in config["variants"]:
        for data in expand_data(config["data"]):
            for seed in config["seeds"]:
                out = Path(config["out"]) / f"{variant['name']}__{Path(data).name}__seed{seed}"
                env = {k: str(v) for k, v in config.get("variables", {}).items()}
                env.update({k: str(v) for k, v in variant.items() if k != "name"})
                extra = " ".join(x for x in (env.get("EXTRA_ARGS", ""), f"--seed {seed}") if x)
                env.update(DATA=data, OUTPUT=str(out), EXTRA_ARGS=extra)
                runs.append({"out": out, "env": env})
    return runs


def run_grid(args) -> None:
    config = load_config(args.config)
    runs = plan_runs(config)
    todo = [r for r in runs if not (r["out"] / "test_metrics.json").is_file()]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} finished, {len(todo)} to run")
    durations = []
    for i, run in enumerate(todo):
        if args.max_runs and i >= args.max_runs:
            print(f"stopping after {args.max_runs} runs (--max_runs); run the same command again to continue")
            return
        variables = " ".join(f"{k}={v}" for k, v in sorted(run["env"].items()))
        eta = f", about {(len(todo) - i) * sum(durations) / len(durations) / 60:.0f} min left" if durations else ""
        print(f"[{i + 1}/{len(todo)}{eta}] {variables} bash {config['launcher']}", flush=True)
        if args.dry_run:
            continue
        start = time.time()
        run["out"].mkdir(parents=True, exist_ok=True)
        with open(run["out"] / "launcher.log", "a") as log:
            proc = subprocess.run(["bash", config["launcher"]], cwd=REPO, env={**os.environ, **run["env"]},
                                  stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise UserError(f"run {run['out']} failed (exit {proc.returncode}); see {run['out'] / 'launcher.log'}")
        durations.append(time.time() - start)
    if args.dry_run:
        return
    from rheed.compare import compare_runs
    written = compare_runs([r["out"] for r in runs], Path(config["out"]) / "comparison", group_by=r"(.*?)__")
    print("comparison: " + ", ".join(str(p) for p in written))


def main(argv=None) -> None:
    run_or_exit(run_grid, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    main()
