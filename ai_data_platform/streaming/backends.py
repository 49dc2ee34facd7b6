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


def transport(topic: str = TOPIC) -> Transport:
    url = settings.redis_url()
    if url:
        from ai_data_platform.streaming.redis_backend import RedisStreamTransport

        return RedisStreamTransport(url, settings.redis_prefix(), topic)
    return FileSegmentTransport(settings.paths().stream, topic)


def online_store() -> OnlineStore:
    url = settings.redis_url()
    if url:
        from ai_data_platform.streaming.redis_backend import RedisOnlineStore

        return RedisOnlineStore(url, settings.redis_prefix())
    return SqliteOnlineStore(settings.paths().online / "features.sqlite")
