"""Open a store from a URL, as `flowlang run --db` and embedders do:
`memory:`, `sqlite:///relative.db`, `sqlite:////absolute.db`, or a PostgreSQL
URL (`postgresql://user@host/db`)."""
from __future__ import annotations


class StoreURLError(ValueError):
    """A `--db` value that names no store we know."""


def open_store(url: str, create: bool = True):
    """The store at `url`, its schema brought up to date. `create=False` refuses
    a database that holds no store yet (`sqlstore.NotAStore`)."""
    if url in ("memory", "memory:"):
        from flowlang.runtime.store import MemoryStore
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from flowlang.runtime.sqlite_store import SqliteStore
        return SqliteStore.from_url(url, create)
    if url.startswith(("postgresql://", "postgres://")):
        from flowlang.runtime.postgres_store import PostgresStore
        return PostgresStore(url, create=create)
    raise StoreURLError(f"`{url}` is not a store URL: use sqlite:///file.db, "
                        "postgresql://user@host/db or memory:")
