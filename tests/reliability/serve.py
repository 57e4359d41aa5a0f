"""``python -m tests.reliability.serve``: one whole relay process on a ``SO_REUSEPORT`` socket.

``relay serve`` binds its port alone, and ``relay serve --workers N`` hides its workers behind a
parent. The fault tests need two independent relay processes on one port that they can start,
signal and measure one by one (as two replicas behind one address would be), so this is
:func:`relay.server.serve.run` on :func:`relay.server.serve.reuse_port_socket`, with settings from the
``RELAY_*`` environment exactly as ``relay serve`` reads them.
"""

from __future__ import annotations

from relay.server.app import create_app
from relay.tools.cli import secret_values
from relay.core.logs import configure_logging
from relay.server.serve import reuse_port_socket, run
from relay.server.settings import load_settings


def main() -> None:
    settings = load_settings(None)
    configure_logging(settings.server.log_level, list(secret_values(settings)))
    run(create_app(settings), settings, reuse_port_socket(settings.server.host, settings.server.port))


if __name__ == "__main__":
    main()
