"""Canonical column names of an event frame (the XES standard keys pm4py uses).

Every loaded log is turned into a pandas DataFrame with these columns, sorted by case, then
timestamp, then original file order. Timestamps are timezone-aware UTC.
"""

CASE = "case:concept:name"
ACTIVITY = "concept:name"
TIMESTAMP = "time:timestamp"
RESOURCE = "org:resource"
LIFECYCLE = "lifecycle:transition"
# original position in the file; keeps ordering stable for events with equal timestamps
ROW = "@@row"

PM4PY_KEYS = {
    "case_id_key": CASE,
    "activity_key": ACTIVITY,
    "timestamp_key": TIMESTAMP,
}
