"""pmops analysis engine: pure process mining and machine learning on event logs.

Everything here takes DataFrames and paths and returns typed results; no Prefect, HTTP or database.
"""

import os

# pm4py draws tqdm bars on stderr by default; progress is ours to report.
os.environ.setdefault("PM4PY_SHOW_PROGRESS_BAR", "false")
