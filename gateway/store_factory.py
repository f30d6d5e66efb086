"""The store the config asks for: the SQLite file (``store.path``, the default) or PostgreSQL (``store.url``)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from gateway.cluster import Cluster, Solo
from gateway.config import Config
from gateway.store import Store


def make_store(config: Config) -> Store:
    """A store, not yet opened. The PostgreSQL driver is imported only when PostgreSQL is configured."""
    if config.store_url is not None:
        from gateway.pg_store import PgStore

        return PgStore(config.store_url, password=config.store_password)
    from gateway.sqlite_store import SqliteStore

    return SqliteStore(config.store_path)


def make_cluster(config: Config, store: Store) -> Cluster:
    """How this gateway works with others on ``store`` (made by ``make_store(config)``): on PostgreSQL as
    one of several, on SQLite alone."""
    if config.store_url is not None:
        from gateway.pg_cluster import PgCluster
        from gateway.pg_store import PgStore

        assert isinstance(store, PgStore)
        return PgCluster(store)
    return Solo()


def describe(config: Config) -> str:
    """Where the store is, for logs and errors: the file, or the URL with any password masked."""
    return str(config.store_path) if config.store_url is None else masked_url(config.store_url)


def masked_url(url: str) -> str:
    """``url`` with the password of its user info, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))
