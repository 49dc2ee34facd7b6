"""The one place the stream transport and the online store are chosen.

``REDIS_URL`` set (``settings.redis_url``): a Redis Stream and a Redis online store, under the
``ADP_REDIS_PREFIX`` key prefix. Unset (the embedded default): segment files under
``$ADP_DATA_DIR/stream`` and SQLite under ``$ADP_DATA_DIR/online``.
"""

from __future__ import annotations

from ai_data_platform import settings
from ai_data_platform.streaming.online_store import OnlineStore, SqliteOnlineStore
from ai_data_platform.streaming.transport import FileSegmentTransport, Transport

TOPIC = "events"
SQLITE_FILE = "features.sqlite"


def transport(topic: str = TOPIC) -> Transport:
    url = settings.redis_url()
    if url:
        from ai_data_platform.streaming.redis_backend import RedisStreamTransport

        return RedisStreamTransport(url, settings.redis_prefix(), topic)
    return FileSegmentTransport(settings.paths().stream, topic)


def in_redis() -> bool:
    """Whether the stream and the online store live in Redis, where a search of files cannot see them."""
    return settings.redis_url() is not None


def existing_transport(topic: str = TOPIC) -> Transport | None:
    """The transport if it holds (or held) records, else None; creates nothing (erasure, search)."""
    url = settings.redis_url()
    if url:
        import redis

        from ai_data_platform.streaming.redis_backend import RedisStreamTransport, stream_key

        client = redis.Redis.from_url(url)
        try:
            present = client.exists(stream_key(settings.redis_prefix(), topic))
        finally:
            client.close()
        return RedisStreamTransport(url, settings.redis_prefix(), topic) if present else None
    directory = settings.paths().stream / topic
    return FileSegmentTransport(settings.paths().stream, topic) if directory.is_dir() else None


def existing_online_store() -> OnlineStore | None:
    """The online store if there is one, else None; creates nothing (erasure, search)."""
    if settings.redis_url():
        return online_store()  # connecting creates no key
    path = settings.paths().online / SQLITE_FILE
    return SqliteOnlineStore(path) if path.exists() else None


def online_store() -> OnlineStore:
    url = settings.redis_url()
    if url:
        from ai_data_platform.streaming.redis_backend import RedisOnlineStore

        return RedisOnlineStore(url, settings.redis_prefix())
    return SqliteOnlineStore(settings.paths().online / SQLITE_FILE)
