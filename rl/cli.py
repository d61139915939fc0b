"""`python -m rl <verb>`: every workflow rule is one of these lines, runnable by hand.

The verbs are the stages the study packages declare (`rl/*/stages.py`, through
`rl.runner.stage`); this module builds the command line from them and turns the errors a
user can fix into one paragraph and an exit status.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time

from rl.analysis import stages as analysis
from rl.compare import stages as compare
from rl.core import config as config_mod
from rl.pendulum import stages as pendulum
from rl.ppo import stages as ppo
from rl.runner import TOOL, Arg, Job, add_parser, run, stage
from rl.tracking import stages as tracking
from rl.tune import stages as tune

log = logging.getLogger("rl")


@stage(
    "validate_config",
    "validate a config (defaults filled, --set applied), optionally write it resolved",
    Arg("--config", required=True),
    Arg("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override"),
    Arg("--write", help="write the resolved config (defaults filled) here"),
    kind=TOOL,
)
def validate_config(job: Job) -> None:
    from rl.core.files import write_text

    args = job.args
    cfg = config_mod.load(args.config, args.set)
    if args.write:
        write_text(args.write, config_mod.dump(cfg))
    print(f"{args.config}: valid (config hash {config_mod.config_hash(cfg)})")


# In the order of the DAG: tracking set-up, the PPO chain, the pendulum, the comparison,
# analysis; tools last.
STAGES = {
    s.name: s
    for s in (
        *tracking.STAGES,
        *ppo.STAGES,
        *pendulum.STAGES,
        *compare.STAGES,
        *tune.STAGES,
        *analysis.STAGES,
        validate_config,
    )
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rl", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for st in STAGES.values():
        add_parser(sub, st)
    return parser


def _os_error_message(exc: OSError) -> str:
    where = f" '{exc.filename}'" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return (
            f"No space left on the device while writing{where}. Earlier results are intact "
            f"(writes are atomic); free space or point results_dir at a larger disk, then rerun."
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"Cannot write{where}: {exc.strerror}. Make the results directory writable "
            f"(or set results_dir in the config to a folder you own), then rerun."
        )
    return f"{exc.strerror or exc}{where}. Check the path and the disk, then rerun."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # TorchRL logs every storage it initialises at INFO: one line per PPO batch, drowning
    # the progress lines in the job logs. Its warnings still show (it reads this variable
    # when imported, which the verbs do later; RL_LOGGING_LEVEL=INFO brings them back).
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    t0 = time.perf_counter()
    try:
        run(args.stage, args, STAGES)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {_os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"error: {args.verb} interrupted. Finished outputs are intact and nothing "
            f"half-written was left; rerun the same command (or snakemake) to resume.",
            file=sys.stderr,
        )
        return 130
    log.info("%s finished in %.1fs", args.verb, time.perf_counter() - t0)
    return 0
