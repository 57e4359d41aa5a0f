# syntax=docker/dockerfile:1
# relay: the WebSocket fan-in relay, as a slim, non-root image.
#   docker build -t relay .
#   docker run -e RELAY_RECALL_TOKENS=... -e RELAY_REDIS_URL=redis://redis:6379/0 -p 8080:8080 relay
# Checked with hadolint (no Docker engine runs on the development machines); see README "Docker".

# --- build: wheels for the relay and every dependency, from pyproject.toml ----------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed offline, nothing else --------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RELAY_SERVER_HOST=0.0.0.0 \
    RELAY_SERVER_PORT=8080 \
    RELAY_REDIS_START_LOCAL=false
RUN groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --no-create-home --shell /usr/sbin/nologin relay
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/relay-*.whl
USER 10001:10001
EXPOSE 8080
# SIGTERM starts the graceful drain (sockets closed with 1012, accepted events published).
STOPSIGNAL SIGTERM
# Liveness only: /readyz (Redis reachable, not draining) is for load balancers and Kubernetes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('RELAY_SERVER_PORT', '8080'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["relay"]
CMD ["serve", "--host", "0.0.0.0"]
