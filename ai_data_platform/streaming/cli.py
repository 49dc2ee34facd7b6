"""``adp stream produce|consume`` and ``adp serve``: added to ``adp`` by ``add_stream_parsers``.

The transport and the online store are chosen in ``backends`` (``REDIS_URL`` set: Redis;
otherwise segment files and SQLite under ``$ADP_DATA_DIR``). Dagster is not imported on these
paths (only the consumer's background reporter imports it).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from ai_data_platform.cli_args import host, port, positive, seed, whole
from ai_data_platform.sources.simulator_ids import MAX_CUSTOMERS


HOUR, YEAR = 3600, 366 * 24 * 3600
customers = whole(1, MAX_CUSTOMERS)


def cmd_produce(args: argparse.Namespace) -> int:
    from ai_data_platform.streaming import backends
    from ai_data_platform.streaming.producer import EventProducer, produce

    transport = backends.transport()
    try:
        sent = produce(transport, EventProducer(args.customers, args.seed), rate=args.rate, duration=args.duration,
                       total=args.count)
    except KeyboardInterrupt:
        sent = None
    print(json.dumps({"produced": sent, "transport": transport.label, "last_position": transport.end_position()}))
    return 0


class _Stop(Exception):
    pass


def cmd_consume(args: argparse.Namespace) -> int:
    from ai_data_platform import settings
    from ai_data_platform.streaming import backends
    from ai_data_platform.streaming.consumer import Consumer
    from ai_data_platform.streaming.reporting import Reporter

    consumer = Consumer(
        backends.transport(),
        backends.online_store(),
        warehouse=None if args.no_warehouse else settings.paths().warehouse,
        batch=args.batch,
        flush_seconds=args.flush_seconds,
        flush_records=args.flush_records,
        reporter=None if args.no_report else Reporter(),
    )

    def stop(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        stats = consumer.run(max_seconds=args.max_seconds, until_idle=args.until_idle, max_records=args.max_records)
    except _Stop:
        stats = consumer.stats
    reporter = consumer.reporter
    if reporter is not None and reporter.error is not None:
        stats.errors.append(f"reporting to Dagster failed: {reporter.error}")
    print(json.dumps(stats.as_dict(), default=str))
    for error in stats.errors:
        print(f"adp stream consume: {error}", file=sys.stderr)
    return 1 if stats.errors else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ai_data_platform.exposure import exposure_warning
    from ai_data_platform.streaming.serve import serve

    warning = exposure_warning(args.host, "the online features and scoring API")
    if warning:
        print(f"adp serve: {warning}", file=sys.stderr)
    serve(args.host, args.port)
    return 0


def add_stream_parsers(sub) -> None:
    stream = sub.add_parser("stream", help="real-time events: produce them, consume them into the online store and the warehouse")
    commands = stream.add_subparsers(dest="stream_command", required=True)

    p = commands.add_parser("produce", help="emit behavioural events (the simulator's schema and signal) at a rate")
    p.add_argument("--rate", type=positive(1_000_000), required=True, help="events per second")
    p.add_argument("--duration", type=positive(YEAR), help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--count", type=whole(1, 10**12), help="stop after this many events")
    p.add_argument("--customers", type=customers, default=3000, help="the first N simulated customers (default 3000, as adp demo)")
    p.add_argument("--seed", type=seed, default=42, help="the simulator seed the customers come from (default 42, as adp demo)")
    p.set_defaults(func=cmd_produce)

    c = commands.add_parser("consume", help="apply events to the online store (exactly once) and land them in the warehouse")
    c.add_argument("--max-seconds", type=positive(YEAR), help="stop after this many seconds")
    c.add_argument("--max-records", type=whole(1, 10**12), help="stop after this many records")
    c.add_argument("--until-idle", action="store_true", help="stop once every record is applied, landed and materialized")
    c.add_argument("--batch", type=whole(1, 1_000_000), default=5000, help="records per online-store transaction (default 5000)")
    c.add_argument("--flush-seconds", type=positive(HOUR), default=1.0, help="warehouse micro-batch interval (default 1 s)")
    c.add_argument("--flush-records", type=whole(1, 10_000_000), default=50_000, help="most records per warehouse micro-batch (default 50000)")
    c.add_argument("--no-warehouse", action="store_true",
                   help="online store only: no warehouse micro-batches (records are released after the retention period without landing)")
    c.add_argument("--no-report", action="store_true", help="do not report runless materializations to Dagster")
    c.set_defaults(func=cmd_consume)

    s = sub.add_parser("serve", help="HTTP API on 127.0.0.1: GET /features/{customer_id}, POST /score, GET /health")
    s.add_argument("--host", type=host, default="127.0.0.1", help="address to listen on (default 127.0.0.1; anything else warns: no authentication)")
    s.add_argument("--port", type=port, default=8000)
    s.set_defaults(func=cmd_serve)


