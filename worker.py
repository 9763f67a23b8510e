"""Start duly's Temporal worker: `python worker.py` (the same as `duly worker`).

The worker itself lives in `duly.worker`; this file is only its entry point.
"""

from duly.worker import run

if __name__ == "__main__":
    run()
