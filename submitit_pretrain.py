"""Launch FCMAE pre-training on SLURM with submitit (one task per GPU).

Also provides the pieces submitit_finetune.py uses (add_submitit_args, submit).
"""
import argparse
import importlib
import os
import sys
import uuid
from pathlib import Path

from rheed.errors import UserError


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("submitit is not installed (needed only for SLURM launches): pip install submitit") from None
    return submitit


def add_submitit_args(parser):
    parser.add_argument("--ngpus", default=8, type=int, help="Number of gpus to request on each node")
    parser.add_argument("--nodes", default=2, type=int, help="Number of nodes to request")
    parser.add_argument("--timeout", default=4320, type=int, help="Duration of the job, in minutes")
    parser.add_argument("--job_dir", default="", type=str,
                        help="Job dir (on a filesystem every node sees). Leave empty for /checkpoint/$USER/"
                             "experiments/%%j; %%j is replaced by the job id")
    parser.add_argument("--partition", default="learnlab", type=str, help="Partition where to submit")
    parser.add_argument("--use_volta32", action='store_true', help="Request 32G V100 GPUs")
    parser.add_argument('--comment', default="", type=str, help="Comment to pass to scheduler")
    return parser


def get_shared_folder(job_dir=""):
    """Folder visible to all nodes, for the rendezvous file."""
    if job_dir:
        folder = Path(job_dir).parent if "%j" in job_dir else Path(job_dir)
    else:
        if not Path("/checkpoint/").is_dir():
            raise UserError("no shared folder: pass --job_dir (a folder on a filesystem every node can see)")
        folder = Path(f"/checkpoint/{os.getenv('USER')}/experiments")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def get_init_file(job_dir=""):
    """A fresh, not yet existing file for the file:// rendezvous."""
    init_file = get_shared_folder(job_dir) / f"{uuid.uuid4().hex}_init"
    if init_file.exists():
        os.remove(init_file)
    return init_file


class Trainer:
    """Picklable job: sets rank/world size from the SLURM job and calls `<trainer_module>.main(args)`."""

    def __init__(self, args, trainer_module):
        self.args = args
        self.trainer_module = trainer_module

    def __call__(self):
        trainer = importlib.import_module(self.trainer_module)
        self._setup_gpu_args()
        Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
        trainer.main(self.args)

    def checkpoint(self):
        """Called by submitit before a requeue (timeout / preemption)."""
        submitit = import_submitit()
        import utils

        self.args.dist_url = get_init_file(self.args.job_dir).as_uri()
        # Resume from the newest checkpoint-<N>.pth that was actually written (upstream looked for a
        # checkpoint.pth that is never saved). auto_load_model skips unreadable ones.
        if self.args.output_dir and utils.list_numbered_checkpoints(self.args.output_dir):
            self.args.resume = ""
            self.args.auto_resume = True
            print(f"Requeue: resuming from the newest checkpoint in {self.args.output_dir}")
        empty_trainer = type(self)(self.args, self.trainer_module)
        return submitit.helpers.DelayedSubmission(empty_trainer)

    def _setup_gpu_args(self):
        submitit = import_submitit()
        job_env = submitit.JobEnvironment()
        self.args.output_dir = str(self.args.output_dir).replace("%j", str(job_env.job_id))
        self.args.log_dir = self.args.output_dir
        self.args.gpu = job_env.local_rank
        self.args.rank = job_env.global_rank
        self.args.world_size = job_env.num_tasks
        print(f"Process group: {job_env.num_tasks} tasks, rank: {job_env.global_rank}")


def submit(args, trainer_module, job_name):
    submitit = import_submitit()
    if args.job_dir == "":
        args.job_dir = str(get_shared_folder() / "%j")

    executor = submitit.AutoExecutor(folder=args.job_dir, slurm_max_num_timeout=30)
    kwargs = {}
    if args.use_volta32:
        kwargs['slurm_constraint'] = 'volta32gb'
    if args.comment:
        kwargs['slurm_comment'] = args.comment
    executor.update_parameters(
        mem_gb=40 * args.ngpus,
        gpus_per_node=args.ngpus,
        tasks_per_node=args.ngpus,  # one task per GPU
        cpus_per_task=10,
        nodes=args.nodes,
        timeout_min=args.timeout,
        slurm_partition=args.partition,
        slurm_signal_delay_s=120,
        **kwargs,
    )
    executor.update_parameters(name=job_name)

    args.dist_url = get_init_file(args.job_dir).as_uri()
    args.output_dir = args.job_dir  # as upstream: checkpoints and logs go to the job dir

    job = executor.submit(Trainer(args, trainer_module))
    print("Submitted job_id:", job.job_id)


def main():
    import main_pretrain
    parser = argparse.ArgumentParser("Submitit for pretrain", parents=[main_pretrain.get_args_parser()])
    args = add_submitit_args(parser).parse_args()
    try:
        submit(args, "main_pretrain", "pretrain")
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
