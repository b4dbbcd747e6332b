"""Launch fine-tuning on SLURM with submitit (one task per GPU); see submitit_pretrain.py."""
import argparse
import sys

from rheed.errors import UserError
from submitit_pretrain import add_submitit_args, submit


def main():
    import main_finetune
    parser = argparse.ArgumentParser("Submitit for finetune", parents=[main_finetune.get_args_parser()])
    args = add_submitit_args(parser).parse_args()
    try:
        submit(args, "main_finetune", "finetune")
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
