"""Simulated labelling study: macro-F1 against the number of labelled frames, for three ways of spending a
labelling budget on the frames of growth videos.

- random:    a random subset of the pool (stratified by class with at least 2 frames of the rarer class,
             which favours random: a real labeller does not know the classes in advance);
- selection: the random subset of the smallest budget, then rounds of scripts/select_frames.py with the
             latest model (uncertain + diverse frames, no near-duplicates) up to each larger budget;
- pseudo:    the selection arm's labelled frames plus one round of scripts/pseudo_label.py (confident
             frames whose neighbours agree) on the rest of the pool.

The pool is the split's train/ frames, linked into one flat folder under neutral names
(<sequence>_<frame>), so the selector sees neither class folders nor class names. Their labels are read
only to play the labeller who fills in selection.csv (then scripts/label_frames.py places the frames).
val/ and test/ stay as they are. Every model is trained by scripts/run_finetune_cpu.sh with its defaults
and --seed S; set the launcher's variables (EPOCHS, INPUT_SIZE, ...) in the environment to change them for
every run. A run whose test_metrics.json exists is reused, so an interrupted study continues; a pseudo-label
round that accepts no frame reports the selection arm's run (same training set and seed).

    python benchmarks/labelling_study.py --split VAR_SPLIT --out STUDY --budgets 10 20 50 --seeds 0 1 2 \\
        --pattern '(?P<sequence>seq\\d+)_(?P<frame>\\d+)' --extra_test XD

Writes STUDY/results.csv (rows of earlier calls on the same folder are kept, so a second call with another
--uncertain_fraction adds its arms 'selection-u<F>' / 'pseudo-u<F>'; its 'labelled' column is below the budget
when select_frames.py found fewer frames that are not near-duplicates), STUDY/learning_curve.png and prints a
mean +- std table.
"""
import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rheed.imageio import list_images  # noqa: E402
from rheed.naming import parse_sequence_frame  # noqa: E402
from rheed.pseudo_label import PSEUDO_PREFIX  # noqa: E402
from rheed.split import place_file  # noqa: E402

ARMS = ("random", "selection", "pseudo")
RESULT_COLUMNS = ("arm", "budget", "seed", "labelled", "pseudo_labelled", "test_macro_f1", "test_roc_auc",
                  "extra_macro_f1", "extra_roc_auc", "run")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Simulated labelling study: random vs selected vs selected + "
                                                 "pseudo-labelled frames at several labelling budgets.")
    parser.add_argument("--split", type=Path, required=True, help="labelled split (train/ is the pool; val/, test/)")
    parser.add_argument("--out", type=Path, required=True, help="study folder (reused: finished runs are kept)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50],
                        help="numbers of labelled frames; the smallest is the random start of the selection arm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--pattern", default=None,
                        help="file-name regex with named groups sequence and frame for the split's frames")
    parser.add_argument("--extra_test", type=Path, default=None,
                        help="a second test folder (<class>/ sub-folders), e.g. frames from another camera")
    parser.add_argument("--uncertain_fraction", type=float, default=0.5, help="select_frames.py --uncertain_fraction")
    parser.add_argument("--threshold", type=float, default=0.95, help="pseudo_label.py --threshold")
    parser.add_argument("--python", default=sys.executable)
    return parser


def run_command(cmd: list, log: Path, env: dict | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(map(str, cmd[:3]))} ... failed (exit {done.returncode}); see {log}")


def build_pool(split: Path, pool: Path, pattern: str | None) -> dict:
    """Links split/train/<class>/* into pool/<sequence>_<frame><ext>; returns {pool name: class}."""
    labels = {}
    for class_dir in sorted(p for p in (split / "train").iterdir() if p.is_dir()):
        for path in list_images(class_dir):
            sequence, frame = parse_sequence_frame(path, pattern)
            if frame is None:
                raise SystemExit(f"error: no frame number in {path}; pass --pattern")
            name = f"{sequence or 'seq'}_{frame:06d}{Path(path).suffix}"
            if name in labels:
                raise SystemExit(f"error: two pool frames map to {name}; pass a --pattern that tells them apart")
            labels[name] = class_dir.name
            if not (pool / name).exists():
                place_file(str(path), pool / name, copy=False)
    return labels


def random_subset(labels: dict, n: int, seed: int) -> list:
    """n pool names with the pool's class shares, at least 2 of the rarer class (fixed by n and seed)."""
    rng = random.Random(1000 * n + seed)
    by_class = {c: sorted(k for k, v in labels.items() if v == c) for c in sorted(set(labels.values()))}
    rare = min(by_class, key=lambda c: len(by_class[c]))
    n_rare = min(len(by_class[rare]), max(2, round(n * len(by_class[rare]) / len(labels))))
    picked = rng.sample(by_class[rare], n_rare)
    rest = sorted(k for c, names in by_class.items() if c != rare for k in names)
    return sorted(picked + rng.sample(rest, n - n_rare))


def fresh(dst: Path) -> Path:
    """An empty folder next to dst to build it in; renamed to dst when complete (an interrupted build is redone)."""
    partial = dst.with_name(dst.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    return partial


def make_split(split: Path, pool: Path, labels: dict, names: list, dst: Path) -> Path:
    """dst/train/<class>/ = the chosen pool frames; dst/val, dst/test = links of the split's."""
    if dst.is_dir():
        return dst
    partial = fresh(dst)
    for name in names:
        place_file(str(pool / name), partial / "train" / labels[name] / name, copy=False)
    for held in ("val", "test"):
        for path in list_images(split / held):
            place_file(path, partial / held / Path(path).relative_to(split / held), copy=False)
    partial.rename(dst)
    return dst


def train_names(split_dir: Path, pseudo: bool = False) -> list:
    """File names in split_dir/train/: the labelled frames, or with `pseudo` the pseudo-labelled ones."""
    return sorted(name for name in (Path(p).name for p in list_images(split_dir / "train"))
                  if name.startswith(PSEUDO_PREFIX) == pseudo)


def labelled_names(split_dir: Path) -> list:
    return train_names(split_dir)


def train(args, data: Path, run: Path, seed: int) -> Path:
    if not (run / "test_metrics.json").is_file():
        run_command(["bash", "scripts/run_finetune_cpu.sh"], run.with_suffix(".log"),
                    {"PYTHON": args.python, "DATA": str(data), "OUTPUT": str(run), "EXTRA_ARGS": f"--seed {seed}"})
    return run


def evaluate_extra(args, run: Path, data: Path) -> dict:
    """main_finetune.py --eval on --extra_test with the evaluation-input settings stored in the checkpoint."""
    import utils
    from rheed.inference import EVAL_INPUT_KEYS, flag_value

    out = run / "extra_test"
    written = sorted(out.glob("eval/*/test_metrics.json"))   # --eval writes into a new eval/<time>/ folder
    if not written:
        stored = utils.checkpoint_args(utils.load_checkpoint(run / "checkpoint-best.pth"))
        cmd = [args.python, "main_finetune.py", "--device", "cpu", "--model", stored["model"], "--data_set", "RHEED",
               "--data_path", data, "--eval", "true", "--resume", run / "checkpoint-best.pth",
               "--test_data_path", args.extra_test, "--output_dir", out, "--frame_cache", "false",
               "--num_workers", os.environ.get("NUM_WORKERS", "2"), "--pin_mem", "false"]
        for key in EVAL_INPUT_KEYS:
            if stored.get(key) is not None:
                cmd += [f"--{key}", flag_value(stored[key])]
        run_command(cmd, out.with_suffix(".log"))
        written = sorted(out.glob("eval/*/test_metrics.json"))
    return json.loads(written[-1].read_text())


def select_more(args, model_run: Path, pool: Path, labels: dict, have: list, n_new: int, seed: int,
                work: Path) -> Path:
    """One selection round: select_frames.py on the unlabeled rest of the pool, then the oracle fills in
    selection.csv's labels. Returns the filled-in CSV."""
    unlabeled = work / "unlabeled"
    if not unlabeled.is_dir():
        partial = fresh(unlabeled)
        for name in sorted(set(labels) - set(have)):
            place_file(str(pool / name), partial / name, copy=False)
        partial.rename(unlabeled)
    chosen = work / "chosen"
    if not (chosen / "selection.csv").is_file():
        run_command([args.python, "scripts/select_frames.py", "--checkpoint", model_run / "checkpoint-best.pth",
                     "--pool", unlabeled, "--budget", n_new, "--out", chosen, "--seed", seed,
                     "--uncertain_fraction", args.uncertain_fraction], work / "select.log")
    with open(chosen / "selection.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["label"] = labels[Path(row["path"]).name]
    filled = chosen / "selection_labelled.csv"
    with open(filled, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return filled


def place_selection(args, start_split: Path, filled_csv: Path, dst: Path) -> Path:
    """dst = start_split (linked) + the frames of the filled-in CSV, placed by label_frames.py."""
    if dst.is_dir():
        return dst
    partial = fresh(dst)
    for path in list_images(start_split):
        place_file(path, partial / Path(path).relative_to(start_split), copy=False)
    classes = sorted(p.name for p in (start_split / "train").iterdir() if p.is_dir())
    run_command([args.python, "scripts/label_frames.py", "--csv", filled_csv, "--dst", partial / "train",
                 "--labels", *classes], dst.parent / f"{dst.name}_label.log")
    partial.rename(dst)
    return dst


def pseudo_split(args, model_run: Path, labelled_split: Path, pool: Path, dst: Path) -> Path:
    if not (dst / "train").is_dir():
        run_command([args.python, "scripts/pseudo_label.py", "--checkpoint", model_run / "checkpoint-best.pth",
                     "--pool", pool, "--split", labelled_split, "--out", dst, "--threshold", args.threshold],
                    dst.parent / "pseudo_label.log")
    return dst


def record(args, arm: str, budget: int, seed: int, data: Path, run: Path) -> dict:
    test = json.loads((run / "test_metrics.json").read_text())
    row = {"arm": arm, "budget": budget, "seed": seed, "labelled": len(labelled_names(data)),
           "pseudo_labelled": len(train_names(data, pseudo=True)),
           "test_macro_f1": test["macro_f1"], "test_roc_auc": test.get("roc_auc"),
           "extra_macro_f1": None, "extra_roc_auc": None, "run": str(run)}
    if args.extra_test is not None:
        extra = evaluate_extra(args, run, data)
        row.update(extra_macro_f1=extra["macro_f1"], extra_roc_auc=extra.get("roc_auc"))
    print(f"{arm:9s} budget {budget:4d} seed {seed}: labelled {row['labelled']}, pseudo {row['pseudo_labelled']}, "
          f"test macro-F1 {row['test_macro_f1']:.3f}"
          + (f", extra {row['extra_macro_f1']:.3f}" if row["extra_macro_f1"] is not None else ""), flush=True)
    return row


def study_seed(args, pool: Path, labels: dict, seed: int) -> list:
    budgets = sorted(args.budgets)
    base = args.out / f"seed{seed}"
    rows = []
    random_splits = {}
    for b in budgets if "random" in args.arms else budgets[:1]:   # the smallest one starts the other arms
        random_splits[b] = make_split(args.split, pool, labels, random_subset(labels, b, seed),
                                      base / "random" / f"budget{b}" / "data")
        run = train(args, random_splits[b], base / "random" / f"budget{b}" / "run", seed)
        rows.append(record(args, "random", b, seed, random_splits[b], run))
    selected = {budgets[0]: (random_splits[budgets[0]], base / "random" / f"budget{budgets[0]}" / "run")}
    suffix = "" if args.uncertain_fraction == 0.5 else f"-u{args.uncertain_fraction:g}"
    sel_arm, pseudo_arm = "selection" + suffix, "pseudo" + suffix
    if "selection" in args.arms or "pseudo" in args.arms:
        for prev, b in zip(budgets, budgets[1:]):
            prev_split, prev_run = selected[prev]
            work = base / sel_arm / f"budget{b}"
            filled = select_more(args, prev_run, pool, labels, labelled_names(prev_split), b - prev, seed, work)
            data = place_selection(args, prev_split, filled, work / "data")   # label_frames.py checks every row
            selected[b] = (data, train(args, data, work / "run", seed))
            if "selection" in args.arms:
                rows.append(record(args, sel_arm, b, seed, *selected[b]))
    if "pseudo" in args.arms:
        for b in budgets:
            data, run = selected[b]
            extended = pseudo_split(args, run, data, pool, base / pseudo_arm / f"budget{b}" / "data")
            if train_names(extended, pseudo=True):
                run = train(args, extended, base / pseudo_arm / f"budget{b}" / "run", seed)
            # else no frame was accepted: the same training set and seed as the selection arm's run, reused
            rows.append(record(args, pseudo_arm, b, seed, extended, run))
    return rows


def read_results(path: Path) -> list:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("budget", "seed", "labelled", "pseudo_labelled"):
            row[key] = int(row[key])
        for key in RESULT_COLUMNS[5:-1]:
            row[key] = float(row[key]) if row[key] else None
    return rows


def merge_results(rows: list, new: list) -> list:
    """rows with every (arm, budget, seed) of `new` replaced by the new row."""
    keys = {(r["arm"], r["budget"], r["seed"]) for r in new}
    return [r for r in rows if (r["arm"], r["budget"], r["seed"]) not in keys] + new


def mean_sd(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(rows: list, out: Path, extra: bool) -> None:
    keys = ["test_macro_f1", "test_roc_auc"] + (["extra_macro_f1", "extra_roc_auc"] if extra else [])
    print("| arm | labelled | pseudo-labelled (mean) | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for arm in dict.fromkeys(r["arm"] for r in rows):
        for b in sorted({r["budget"] for r in rows if r["arm"] == arm}):
            group = [r for r in rows if r["arm"] == arm and r["budget"] == b]
            pseudo = statistics.mean(r["pseudo_labelled"] for r in group)
            print(f"| {arm} | {b} | {pseudo:.0f} | " + " | ".join(mean_sd([r[k] for r in group]) for k in keys)
                  + f" |  (n={len(group)})")
    plot(rows, out, keys[::2])


def plot(rows: list, out: Path, keys: list) -> None:
    from rheed.plotting import new_figure

    fig = new_figure(4.2 * len(keys), 3.4)
    for k, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), k + 1)
        for arm, marker in zip(dict.fromkeys(r["arm"] for r in rows), "osd^v<>"):
            budgets = sorted({r["budget"] for r in rows if r["arm"] == arm})
            if not budgets:
                continue
            values = [[r[key] for r in rows if r["arm"] == arm and r["budget"] == b] for b in budgets]
            means = [statistics.mean(v) for v in values]
            sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            line = ax.errorbar(budgets, means, yerr=sds, marker=marker, capsize=3, label=arm)
            for b, v in zip(budgets, values):
                ax.scatter([b] * len(v), v, s=8, alpha=0.4, color=line[0].get_color())
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sorted({r["budget"] for r in rows}))
        ax.set_xticklabels([str(b) for b in sorted({r["budget"] for r in rows})])
        ax.set_xlabel("labelled frames")
        ax.set_ylabel("macro-F1")
        ax.set_title("split test" if key.startswith("test") else "extra test")
        ax.legend(fontsize=7)
    fig.savefig(out / "learning_curve.png", dpi=110)


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    budgets = sorted(args.budgets)
    if len(set(budgets)) != len(budgets) or budgets[0] < 4:
        raise SystemExit("error: --budgets must be distinct and at least 4")
    if not (args.split / "train").is_dir():
        raise SystemExit(f"error: {args.split} has no train/ folder")
    args.split, args.out = args.split.resolve(), args.out.resolve()
    if args.extra_test is not None:
        args.extra_test = args.extra_test.resolve()
    pool = args.out / "pool"
    labels = build_pool(args.split, pool, args.pattern)
    if budgets[-1] >= len(labels):
        raise SystemExit(f"error: the largest budget ({budgets[-1]}) must be below the pool size ({len(labels)})")
    rows = read_results(args.out / "results.csv")   # earlier calls (e.g. another --uncertain_fraction) stay
    for seed in args.seeds:
        rows = merge_results(rows, study_seed(args, pool, labels, seed))
        with open(args.out / "results.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    summarise(rows, args.out, args.extra_test is not None)
    print(f"results: {args.out / 'results.csv'}, figure: {args.out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
