"""Shared command line for the baseline servers: ``--port``, ``--redis-url``, ``--token``."""

from __future__ import annotations

import argparse

import uvicorn


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--token", default="bench-token-0123456789abcdef")
    return parser.parse_args()


def serve(app: object, port: int) -> None:
    """uvicorn as the relay runs it (sans-I/O websockets, httptools, uvloop, no deflate), loopback, quiet.

    The same server stack as the relay, so a ratio compares what the applications do per frame.
    """
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop",
                http="httptools", ws="websockets-sansio", ws_per_message_deflate=False)  # fmt: skip
