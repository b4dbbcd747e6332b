import errno
import sys


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def warn(message: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


def storage_failure(e: OSError) -> str | None:
    """One line for an output that could not be written (full disk, quota, read-only, no permission), or None
    for other errors. Checkpoints are written atomically, so the earlier ones are intact."""
    reason = STORAGE_ERRNOS.get(e.errno)
    if reason is None:
        return None
    where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
    return (f"{reason}{where}; free space or fix the folder, then run the same command again (it resumes from "
            f"the last complete checkpoint)")


def run_trainer(main, args) -> None:
    """main(args) for a training entry point: a UserError or a storage failure ends with one 'error:' line and
    exit status 1; any other error keeps its traceback."""
    try:
        main(args)
    except UserError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        message = storage_failure(e)
        if message is None:
            raise
        sys.exit(f"error: {message}")
