"""A store's whole schema as plain data, to compare two databases: SQLAlchemy's inspection plus
the catalog (sqlite_master and PRAGMAs; pg_catalog and information_schema): tables, columns with
types, nullability and defaults, primary keys, unique constraints, indexes with their columns,
order, uniqueness and WHERE, triggers, functions and sequences. Nothing of a database's name or
its rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine


def snapshot(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        catalog = _sqlite(conn) if conn.dialect.name == "sqlite" else _postgresql(conn)
        return {"inspected": _inspected(conn), "catalog": catalog}


def _inspected(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    tables: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in insp.get_columns(table)
            ],
            "primary_key": insp.get_pk_constraint(table),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in insp.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (
                    str(ix["name"]),
                    tuple(str(c) for c in ix["column_names"]),
                    bool(ix["unique"]),
                    repr(sorted((k, str(v)) for k, v in ix.get("dialect_options", {}).items())),
                    repr(sorted(ix.get("column_sorting", {}).items())),
                )
                for ix in insp.get_indexes(table)
            ),
            "foreign_keys": insp.get_foreign_keys(table),
        }
    return tables


def _rows(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.exec_driver_sql(sql).all()]


def _sqlite(conn: Connection) -> dict[str, Any]:
    # index and trigger SQL as SQLite keeps it (normalised: no IF NOT EXISTS); a table's SQL
    # shows how it was made (ALTER TABLE appends), its columns are compared from table_xinfo
    objects = _rows(
        conn,
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type != 'table' "
        "ORDER BY type, name",
    )
    tables = [r[0] for r in _rows(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    out: dict[str, Any] = {"objects": objects, "tables": {}}
    for table in sorted(tables):
        indexes = sorted(r[1:] for r in _rows(conn, f"PRAGMA index_list('{table}')"))
        out["tables"][table] = {
            "columns": _rows(conn, f"PRAGMA table_xinfo('{table}')"),
            "indexes": indexes,  # name, unique, origin (c, u, pk), partial
            "index_columns": {
                ix[0]: _rows(conn, f"PRAGMA index_xinfo('{ix[0]}')") for ix in indexes
            },
        }
    return out


def _postgresql(conn: Connection) -> dict[str, Any]:
    schema = "table_schema = current_schema()"
    return {
        "columns": _rows(
            conn,
            "SELECT table_name, column_name, ordinal_position, data_type, udt_name, "
            "character_maximum_length, numeric_precision, is_nullable, column_default, "
            f"is_identity FROM information_schema.columns WHERE {schema} "
            "ORDER BY table_name, ordinal_position",
        ),
        "indexes": _rows(
            conn,
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() ORDER BY tablename, indexname",
        ),
        "constraints": _rows(
            conn,
            "SELECT c.conrelid::regclass::text, c.conname, c.contype, "
            "pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema() "
            "ORDER BY 1, 2",
        ),
        "triggers": _rows(
            conn,
            "SELECT tgrelid::regclass::text, tgname, tgenabled, pg_get_triggerdef(oid) "
            "FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
        ),
        "functions": _rows(
            conn,
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema() "
            "ORDER BY 1",
        ),
        "sequences": _rows(
            conn,
            "SELECT sequence_name, data_type, start_value, increment, maximum_value "
            "FROM information_schema.sequences WHERE sequence_schema = current_schema() "
            "ORDER BY 1",
        ),
    }


def lines(shot: dict[str, Any], path: str = "") -> list[str]:
    """The snapshot as sorted 'path: value' lines: a failed comparison shows what differs."""
    out = []
    for key, value in shot.items():
        where = f"{path}/{key}"
        if isinstance(value, dict):
            out += lines(value, where)
        elif isinstance(value, list):
            out += [f"{where}: {item!r}" for item in value] or [f"{where}: []"]
        else:
            out.append(f"{where}: {value!r}")
    return sorted(out)
