"""The ``relay`` command: ``serve``, ``schema``, ``simulate-bot``, ``tail``, ``replay``, ``demo``.

Each subcommand is a function taking the parsed arguments and returning the exit status; the
heavier ones import their modules lazily so ``relay schema`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, SecretStr

from relay.channels import DEFAULT_REDIS_URL
from relay.errors import ConfigError
from relay.server.settings import RedisURL, load_settings

log = logging.getLogger("relay")


def secret_values(model: BaseModel) -> Iterator[str]:
    """Every secret in the settings, for the log redactor."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, SecretStr):
                yield item.get_secret_value()
            elif isinstance(item, RedisURL) and item.password:
                yield item.password
            elif isinstance(item, BaseModel):
                yield from secret_values(item)


# --- serve ----------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.workers is not None:
        overrides["workers"] = args.workers
    sections: dict[str, dict[str, Any]] = {"server": overrides} if overrides else {}
    try:
        settings = load_settings(args.config, **sections)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2

    from relay.server.app import create_app
    from relay.dev.local_redis import INSTALL_HINT, RedisServerProcess, redis_answers
    from relay.core.logs import configure_logging
    from relay.server.serve import run, run_workers

    generated_token = None
    if not settings.recall.tokens:
        generated_token = secrets.token_urlsafe(24)
        settings.recall.tokens = [SecretStr(generated_token)]
        sections["recall"] = {"tokens": [generated_token]}
    secret_list = list(secret_values(settings))
    configure_logging(settings.server.log_level, secret_list)

    local_redis = None
    if settings.redis.url == DEFAULT_REDIS_URL and settings.redis.start_local:
        parts = urlsplit(DEFAULT_REDIS_URL)
        if not redis_answers(parts.hostname or "127.0.0.1", parts.port or 6379):
            try:
                local_redis = RedisServerProcess()
                local_redis.start()
            except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
                local_redis = None
                log.error("nothing answers at %s and no private Redis could be started (%s): %s",
                          DEFAULT_REDIS_URL, exc, INSTALL_HINT)  # fmt: skip
            else:
                settings.redis.url = local_redis.url
                sections["redis"] = {"url": local_redis.url}
                log.warning("nothing answered at %s: started a private redis-server at %s (it keeps nothing on disk)",
                            DEFAULT_REDIS_URL, local_redis.url)  # fmt: skip

    if generated_token is not None:
        scheme = "wss" if settings.server.tls_certfile else "ws"
        print(
            "relay: no Recall token configured (RELAY_RECALL_TOKENS); generated one for this run only.\n"
            f"relay: Recall endpoint: {scheme}://{settings.server.host}:{settings.server.port}"
            f"{settings.recall.path.rstrip('/')}/?token={generated_token}",
            file=sys.stderr,
        )
    try:
        if settings.server.workers > 1:
            return run_workers(settings, args.config, sections, secret_list)
        run(create_app(settings), settings)
    finally:
        if local_redis is not None:
            local_redis.close()
    return 0


# --- schema ---------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    from relay.schema import json_schema

    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


# --- simulate-bot ---------------------------------------------------------------------------------


def cmd_simulate_bot(args: argparse.Namespace) -> int:
    from relay.dev import recall_simulator as simulator

    return asyncio.run(simulator.run(args))


# --- tail -----------------------------------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> int:
    from relay.tools import tail

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(tail.run(args, redis_url=args.redis_url or settings.redis.url, prefix=settings.redis.channel_prefix))


# --- replay ---------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from relay.tools import tail

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(
        tail.run_replay(args, redis_url=args.redis_url or settings.redis.url, prefix=settings.redis.channel_prefix)
    )


# --- demo -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.tools import demo

    return asyncio.run(demo.run(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="WebSocket fan-in relay: Recall.ai, VideoDB, ASAPP → Redis.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the relay server")
    serve.add_argument("--host", help="interface to listen on (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default from settings: 8080)")
    serve.add_argument("--config", type=Path, help="TOML settings file (see config/relay.example.toml)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (default from settings: 1)")
    serve.set_defaults(func=cmd_serve)

    schema = sub.add_parser("schema", help="print the event JSON Schema")
    schema.set_defaults(func=cmd_schema)

    from relay.dev import recall_simulator as simulator

    simulate = sub.add_parser("simulate-bot", help="connect simulated Recall bots to a relay")
    simulator.add_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate_bot)

    tail_parser = sub.add_parser("tail", help="watch the event stream (filters; pretty, or --json lines)")
    from relay.tools import tail

    tail.add_arguments(tail_parser)
    tail_parser.set_defaults(func=cmd_tail)

    replay_parser = sub.add_parser("replay", help="show a meeting from its log, then exit (--follow: until it ends)",
                                   epilog="exit status: 0 the end of the log; 1 Redis did not answer; 2 a bad position; "
                                          "3 no log for the session, or its history was trimmed or lost")  # fmt: skip
    tail.add_replay_arguments(replay_parser)
    replay_parser.set_defaults(func=cmd_replay)

    demo_parser = sub.add_parser("demo", help="everything on one machine: Redis, emulators, relay, bots, live events")
    demo_parser.add_argument("--duration", type=float, help="seconds of meeting to play, then stop (default: until Ctrl-C)")
    demo_parser.add_argument("--bots", type=int, default=2, help="simulated Recall bots, one meeting each (default 2)")
    demo_parser.add_argument("--participants", type=int, default=2, help="speakers per meeting (default 2)")
    demo_parser.add_argument("--media", action="store_true", help="also show audio and video events (bots send video too)")
    demo_parser.add_argument("--json", action="store_true", help="events as JSON lines on stdout instead of pretty lines")
    demo_parser.add_argument("--port", type=int, default=0, help="port for the relay (default: a free one)")
    demo_parser.add_argument("--config", type=Path, help="TOML settings file (Redis URL, channel prefix)")
    demo_parser.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
