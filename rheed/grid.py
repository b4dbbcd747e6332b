"""Experiment grids (scripts/run_experiments.py): the TOML grid, its runs, and three ways to run them.

A run is one launcher call (`bash <launcher>` with launcher variables in the environment) writing to its
own folder <out>/<variant>__<data>__seed<S>. A run counts as finished once its test_metrics.json exists.
Runs go one after another (CPU, or a launcher that uses every GPU), several at once with one GPU each
(`devices`), or each as its own SLURM job through submitit.
"""
import glob
import os
import subprocess
import time
from pathlib import Path

from rheed.errors import UserError

REPO = Path(__file__).resolve().parent.parent


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
    """[{'out': Path, 'env': {launcher variable: value}}] for variants x data x seeds, in that order."""
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


def is_finished(run: dict) -> bool:
    return (run["out"] / "test_metrics.json").is_file()


class LauncherRun:
    """One run as a picklable callable (submitit sends it to the job): `bash <launcher>` from the repository
    with the run's variables, output appended to <out>/launcher.log; a failure raises UserError."""

    def __init__(self, launcher: str, run: dict, extra_env: dict | None = None):
        self.launcher = launcher
        self.out = Path(run["out"])
        self.env = {**run["env"], **(extra_env or {})}

    def start(self) -> subprocess.Popen:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "launcher.log", "a") as log:
            return subprocess.Popen(["bash", self.launcher], cwd=REPO, env={**os.environ, **self.env},
                                    stdout=log, stderr=subprocess.STDOUT)

    def check(self, returncode: int) -> None:
        if returncode != 0:
            raise UserError(f"run {self.out} failed (exit {returncode}); see {self.out / 'launcher.log'}")

    def __call__(self) -> str:
        self.check(self.start().wait())
        return str(self.out)


def describe(run: dict, launcher: str) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(run["env"].items())) + f" bash {launcher}"


def run_in_turn(todo: list[dict], launcher: str, max_runs: int = 0) -> bool:
    """One run after another; False when --max_runs stopped the grid early."""
    durations = []
    for i, run in enumerate(todo):
        if max_runs and i >= max_runs:
            return False
        eta = f", about {(len(todo) - i) * sum(durations) / len(durations) / 60:.0f} min left" if durations else ""
        print(f"[{i + 1}/{len(todo)}{eta}] {describe(run, launcher)}", flush=True)
        start = time.time()
        LauncherRun(launcher, run)()
        durations.append(time.time() - start)
    return True


def run_on_devices(todo: list[dict], launcher: str, devices: list[str], max_runs: int = 0) -> bool:
    """len(devices) runs at a time, each alone on its GPU (CUDA_VISIBLE_DEVICES=<device>, GPUS=1).
    A failed run stops new ones from starting; the runs already going are finished first."""
    queue = list(todo[:max_runs] if max_runs else todo)
    free, going, failed, started, done_times = list(devices), [], None, 0, []
    while (queue and failed is None) or going:
        while queue and free and failed is None:
            device, run = free.pop(0), queue.pop(0)
            job = LauncherRun(launcher, run, {"CUDA_VISIBLE_DEVICES": device, "GPUS": "1"})
            started += 1
            left = len(queue) + len(going) + 1
            eta = (f", about {left * sum(done_times) / len(done_times) / len(devices) / 60:.0f} min left"
                   if done_times else "")
            print(f"[{started}/{len(todo)} on GPU {device}{eta}] {describe(run, launcher)}", flush=True)
            going.append((job, job.start(), device, time.time()))
        time.sleep(0.2)
        for item in list(going):
            job, proc, device, t0 = item
            if proc.poll() is None:
                continue
            going.remove(item)
            free.append(device)
            done_times.append(time.time() - t0)
            try:
                job.check(proc.returncode)
            except UserError as e:
                failed = failed or e
    if failed is not None:
        raise failed
    return not (max_runs and len(todo) > max_runs)


def run_with_submitit(todo: list[dict], launcher: str, folder: Path, partition: str, timeout_min: int,
                      cluster: str | None = None, max_runs: int = 0) -> bool:
    """Every run as its own job (GPUs per job: the run's GPUS variable, default 1), all submitted at once;
    waits for them. `cluster` None lets submitit pick (SLURM when present); 'local' and 'debug' run here."""
    try:
        import submitit
    except ImportError:
        raise UserError("--submitit needs the submitit package (pip install submitit)") from None
    chosen = todo[:max_runs] if max_runs else todo
    jobs = []
    for run in chosen:
        gpus = int(run["env"].get("GPUS", "1"))
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        executor.update_parameters(name=run["out"].name, timeout_min=timeout_min, gpus_per_node=gpus,
                                   tasks_per_node=1, cpus_per_task=max(2, 8 * gpus),
                                   **({"slurm_partition": partition} if partition else {}))
        job = executor.submit(LauncherRun(launcher, run))
        print(f"submitted job {job.job_id}: {describe(run, launcher)}", flush=True)
        jobs.append((job, run))
    failures = []
    for job, run in jobs:
        try:
            job.result()
        except Exception as e:  # submitit wraps the job's own error
            failures.append(f"{run['out']} (job {job.job_id}): {str(e).strip().splitlines()[-1]}")
    if failures:
        raise UserError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return len(chosen) == len(todo)
