"""One relay worker process on a shared port (``SO_REUSEPORT``): how the relay scales past one core.

``relay serve`` runs one process. The relay's own :func:`relay.server.run` already takes a bound
socket, so several processes can share a port without relay changes: each binds its own socket
with ``SO_REUSEPORT`` and the kernel spreads new connections across them. Each worker is a full
relay (its own publisher and Redis connection, its own metrics)::

    python -m bench.relay_worker --port 8080 &   # start it once per worker
    python -m bench.relay_worker --port 8080 &

Settings come from the environment (``RELAY_*``), as for ``relay serve``. What a product version
needs (not done here): a ``--workers`` option on ``relay serve`` that forks these, a supervisor
that restarts a dead worker and forwards SIGTERM, and metrics merged across workers
(prometheus-client's multiprocess mode) plus a per-worker connection cap.
"""

from __future__ import annotations

import argparse
import socket

from relay.app import create_app
from relay.cli import secret_values
from relay.logs import configure_logging
from relay.server import run
from relay.settings import load_settings


def reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings(None, server={"host": args.host, "port": args.port})
    configure_logging(settings.server.log_level, secret_values(settings))
    run(create_app(settings), settings, reuseport_socket(args.host, args.port))


if __name__ == "__main__":
    main()
