"""`pmops up` for the benchmarks, optionally without the runner (API + Prefect server only).

  .venv/bin/python bench/_up.py [--no-runner]

With --no-runner the supervisor's runner child is replaced by a process that registers the same
deployments (so the API's dispatcher works as usual) and then idles: the flow runs it creates
stay Scheduled and nothing competes with the API for the CPUs. Everything else (Prefect server,
uvicorn command line, env, dev-token) is exactly `pmops up`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pmops.cli import supervisor


def register_only() -> None:
    import time

    from deployments.serve import DEPLOYMENT_NAME, FLOWS

    for op_type, f in FLOWS.items():
        f.to_deployment(name=DEPLOYMENT_NAME, tags=["pmops", op_type]).apply()
    while True:
        time.sleep(3600)


def main() -> int:
    if "--register-only" in sys.argv[1:]:
        register_only()
        return 0
    if "--no-runner" in sys.argv[1:]:
        real_start = supervisor.Child.start

        def start(self: supervisor.Child, env: dict[str, str], log_dir: Path) -> None:
            if self.name == "runner":
                self.argv = [sys.executable, __file__, "--register-only"]
            real_start(self, env, log_dir)

        supervisor.Child.start = start  # type: ignore[method-assign]
    return supervisor.up()


if __name__ == "__main__":
    sys.exit(main())
