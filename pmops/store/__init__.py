"""The app store: the only package that builds SQL (tests/test_architecture.py checks it).

tables (the schema), engine (engines, transactions, utc_now), scoping (the one tenant-scoped
lookup), and one module of verb_noun functions per resource: operations, datasets, idempotency,
tokens, webhooks, deliveries, events, projects. Functions take a Connection (the caller owns the
transaction) and the tenant scope where a tenant's rows are read.
"""
