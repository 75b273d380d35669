"""The same ProcessMiningAnalysis flow served with Prefect's DEFAULT runner polling.

  .venv/bin/python bench/_baseline_runner.py   (env as the pmops runner gets it)

Deployment 'ProcessMiningAnalysis/bench-default-poll'; no query_seconds, so the runner polls
every PREFECT_RUNNER_POLL_FREQUENCY (10 s by default). Used by bench_submit_to_running.py as the
baseline the issue describes (~12 s from submit to Running). Stopped with SIGINT.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASELINE_DEPLOYMENT = "bench-default-poll"


def main() -> None:
    from prefect import serve

    from flows.analyze_process import analyze_process

    serve(
        analyze_process.to_deployment(name=BASELINE_DEPLOYMENT, tags=["pmops-bench"]),
        limit=2,
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()
