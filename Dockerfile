FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=8080

WORKDIR /app
# The runtime dependencies exactly as locked (versions and hashes: pip refuses anything
# else), in their own layer; then the hub itself, adding no dependency of its own.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY config/hub.toml /etc/hub/hub.toml
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --no-create-home --uid 10001 hub

USER hub
EXPOSE 8080
# Healthy once ready: the broker answers and the pub/sub link is live (not only running).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
# SIGTERM drains: open streams end cleanly and clients resume on another replica.
STOPSIGNAL SIGTERM
CMD ["hub", "serve", "--config", "/etc/hub/hub.toml"]
