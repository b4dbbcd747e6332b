"""Output folders that belong to one run, checked before any work starts.

A training run records who owns its --output_dir in `run.json` (kind, model, data, command, start time,
run id). A later command that would write there either continues that run (same kind, model and data)
or stops with one line naming the owner and the way out (`--output_dir NEW` or `--overwrite true`).
"""
import datetime
import glob
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from rheed.atomic import write_json_atomic
from rheed.errors import UserError

RUN_FILE = 'run.json'
# files a fine-tuning or pre-training run writes into its folder (removed by --overwrite true)
RUN_ARTIFACTS = ('checkpoint-*.pth', 'log.txt', 'test_metrics*.json', 'predictions_*.csv', 'calibration.json',
                 RUN_FILE)
MIN_FREE_MB = 500


def check_output_dir(output_dir, flag: str = '--output_dir', min_free_mb: int = MIN_FREE_MB) -> None:
    """`output_dir` is (or can become) a writable folder on a disk with at least min_free_mb free."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {output_dir} is a file, not a folder")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag} {output_dir} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {output_dir} is not writable ({existing} does not allow writing)")
    free_mb = shutil.disk_usage(existing).free / 2 ** 20
    if free_mb < min_free_mb:
        raise UserError(f"only {free_mb:.0f} MB free on the disk of {flag} {output_dir}; at least {min_free_mb} MB "
                        f"are needed")


def remove_stale_temporaries(output_dir: str) -> None:
    """Deletes hidden `.<name>.*.tmp` files that a killed atomic write left behind."""
    for tmp in glob.glob(os.path.join(glob.escape(output_dir), '.*.tmp')):
        os.unlink(tmp)
        print(f"Removed {tmp} (left by an interrupted write)")


def read_owner(output_dir: str) -> dict | None:
    try:
        with open(os.path.join(output_dir, RUN_FILE), encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {os.path.join(output_dir, RUN_FILE)}: {e}") from None


def run_artifacts(output_dir: str) -> list[str]:
    found = set()
    for pattern in RUN_ARTIFACTS:
        found.update(glob.glob(os.path.join(glob.escape(output_dir), pattern)))
    return sorted(found)


def describe(owner: dict) -> str:
    return (f"{owner.get('kind')} of {owner.get('model')} on {owner.get('data_path')}, started "
            f"{owner.get('started')}, run {owner.get('run_id')}")


def run_identity(kind: str, model: str, data_path: str | None) -> dict:
    return {'kind': kind, 'model': model, 'data_path': os.path.abspath(data_path) if data_path else None}


def check_ownership(output_dir: str, identity: dict, overwrite: bool = False, resumable: bool = False) -> None:
    """Raises UserError unless this run may write into output_dir (reads only).

    Allowed: a new or empty folder; a folder this same run owns (kind, model and data path match); with
    `resumable`, a folder from before run.json existed that holds numbered checkpoints (the checkpoint itself
    is checked on resume); anything with `overwrite`.
    """
    if overwrite or not os.path.isdir(output_dir):
        return
    owner = read_owner(output_dir)
    if owner is not None:
        if any(owner.get(k) != v for k, v in identity.items()):
            raise UserError(f"{output_dir} belongs to another run ({describe(owner)}); use --output_dir NEW, "
                            f"or --overwrite true to replace that run")
        return
    artifacts = run_artifacts(output_dir)
    import utils  # the one checkpoint listing (top-level module; imported here to keep rheed importable alone)
    if artifacts and not (resumable and utils.list_numbered_checkpoints(output_dir)):
        names = ', '.join(os.path.basename(a) for a in artifacts[:3])
        raise UserError(f"{output_dir} holds files of another run ({names}); use --output_dir NEW, "
                        f"or --overwrite true to replace them")


def clear_previous_run(output_dir: str) -> None:
    """--overwrite true: deletes the previous run's files (checkpoints, logs, reports, run.json) so that
    nothing of it is resumed or mixed into this run; other files stay."""
    artifacts = run_artifacts(output_dir) if os.path.isdir(output_dir) else []
    for path in artifacts:
        os.unlink(path)
    if artifacts:
        print(f"--overwrite: removed {len(artifacts)} files of the previous run in {output_dir}")


def record_owner(output_dir: str, identity: dict) -> None:
    """Writes run.json when the run starts writing (kept as is when this run already owns the folder)."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    if read_owner(output_dir) is not None:
        return
    record = dict(identity, command=' '.join(sys.argv), run_id=uuid.uuid4().hex[:12],
                  started=datetime.datetime.now().isoformat(timespec='seconds'))
    write_json_atomic(os.path.join(output_dir, RUN_FILE), record)


def eval_output_dir(output_dir: str) -> str:
    """Where --eval writes: a new eval/<timestamp> sub-folder, never the training run's own files."""
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    path = os.path.join(output_dir, 'eval', stamp)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(output_dir, 'eval', f'{stamp}-{n}')
    return path
