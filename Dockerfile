# The on-call telephony gateway. Runs the demo config unless you mount your own at /data/gateway.yaml.
#
# The base image is pinned by digest, so a rebuild gets the same OS and Python. To move to a newer
# python:3.11-slim-bookworm: `docker buildx imagetools inspect python:3.11-slim-bookworm`, then pass
# `--build-arg BASE=python:3.11-slim-bookworm@sha256:<digest>` (or change the default below).
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/gateway
# Dependencies first, from pyproject.toml alone: a change to the code reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements.txt \
 && /opt/gateway/bin/pip install -r requirements.txt
# Then the code itself, without touching the dependencies again.
COPY README.md ./
COPY core ./core
COPY gateway ./gateway
COPY ivr_flows ./ivr_flows
COPY providers ./providers
COPY asterisk ./asterisk
RUN /opt/gateway/bin/pip install --no-deps .

# The runtime image: the virtual environment only, no sources, build files or pip caches.
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/gateway/bin:$PATH
COPY --from=build /opt/gateway /opt/gateway
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gateway \
 && mkdir -p /data && chown gateway:gateway /data
# The demo config; its SQLite file (store.path, relative to the config) ends up in /data too.
COPY --chown=gateway:gateway examples/demo.yaml /data/gateway.yaml

USER gateway
WORKDIR /data
VOLUME ["/data"]
# 8080: the HTTP API and webhooks; 4573: FastAGI, which Asterisk connects to (only with an asterisk: section).
EXPOSE 8080 4573
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"

# Listen on all interfaces inside the container; the config's host (127.0.0.1) is for bare-metal runs.
CMD ["gateway", "serve", "/data/gateway.yaml", "--host", "0.0.0.0"]
