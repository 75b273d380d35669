"""Storage keys: files are addressed relative to the storage root, not by absolute path.

Revision 0002 (after 0001). No column changes: `datasets.path` and `operations.result_dir` keep
their names and now hold keys of the storage (PMOPS_STORAGE_URL, pmops.service.storage):

    datasets.path          datasets/{tenantId}/{datasetId}/{fileName}
                           operations/{operationId}/{artifact}   (an enriched dataset)
    operations.result_dir  operations/{operationId}

Rows written before held the file's absolute path under the data directory
(`<data_dir>/datasets/...`, `<data_dir>/operations/...`). Each such path is turned into its key by
the ids the row itself names (the data directory's own path is not needed: the key starts at the
`datasets/` or `operations/` component followed by those ids). A path that does not have that
shape (a file put elsewhere by hand) is kept as it is: the service still reads an absolute path
from the local file system.

Downgrade turns keys back into paths only under the data directory the environment names
(PMOPS_DATA_DIR, default `.pmops`), which is where file:// keeps them by default.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_datasets = sa.table(
    "datasets",
    sa.column("dataset_id", sa.String),
    sa.column("tenant_id", sa.String),
    sa.column("path", sa.Text),
    sa.column("source_operation_id", sa.String),
)
_operations = sa.table(
    "operations", sa.column("operation_id", sa.String), sa.column("result_dir", sa.Text)
)


def dataset_key(path: str, tenant_id: str, dataset_id: str, source: str | None) -> str | None:
    """The key of a dataset's absolute path, or None when it has no recognisable shape."""
    marks = [f"/datasets/{tenant_id}/{dataset_id}/"]
    if source:
        marks.append(f"/operations/{source}/")
    for mark in marks:
        at = path.rfind(mark)
        rest = path[at + len(mark) :] if at >= 0 else ""
        if rest and ".." not in rest.split("/"):
            return path[at + 1 :]
    return None


def result_key(path: str, operation_id: str) -> str | None:
    mark = f"/operations/{operation_id}"
    return mark[1:] if path.rstrip("/").endswith(mark) else None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            _datasets.c.dataset_id,
            _datasets.c.tenant_id,
            _datasets.c.path,
            _datasets.c.source_operation_id,
        ).where(_datasets.c.path.like("/%"))
    ).all()
    for dataset_id, tenant_id, path, source in rows:
        key = dataset_key(path, tenant_id, dataset_id, source)
        if key is not None:
            conn.execute(
                sa.update(_datasets).where(_datasets.c.dataset_id == dataset_id).values(path=key)
            )
    ops = conn.execute(
        sa.select(_operations.c.operation_id, _operations.c.result_dir).where(
            _operations.c.result_dir.like("/%")
        )
    ).all()
    for operation_id, path in ops:
        key = result_key(path, operation_id)
        if key is not None:
            conn.execute(
                sa.update(_operations)
                .where(_operations.c.operation_id == operation_id)
                .values(result_dir=key)
            )


def downgrade() -> None:
    conn = op.get_bind()
    root = Path(os.environ.get("PMOPS_DATA_DIR") or ".pmops").resolve()
    for table, column, key_column in (
        (_datasets, _datasets.c.path, _datasets.c.dataset_id),
        (_operations, _operations.c.result_dir, _operations.c.operation_id),
    ):
        rows = conn.execute(
            sa.select(key_column, column).where(column.is_not(None), ~column.like("/%"))
        ).all()
        for ident, key in rows:
            conn.execute(
                sa.update(table).where(key_column == ident).values({column.name: str(root / key)})
            )
