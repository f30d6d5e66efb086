# The on-call telephony gateway. Runs the demo config unless you mount your own at /data/gateway.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY ivr_flows ./ivr_flows
COPY providers ./providers
COPY asterisk ./asterisk
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gateway \
 && mkdir -p /data && chown gateway:gateway /data

# The demo config; its SQLite file (store.path, relative to the config) ends up in /data too.
COPY --chown=gateway:gateway examples/demo.yaml /data/gateway.yaml

USER gateway
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"

# Listen on all interfaces inside the container; the config's host (127.0.0.1) is for bare-metal runs.
CMD ["gateway", "serve", "/data/gateway.yaml", "--host", "0.0.0.0"]
