import sys

from rl.cli import main

# guarded: collector worker processes (ppo.collector_workers) are spawned and import this
# module again under another name
if __name__ == "__main__":
    sys.exit(main())
