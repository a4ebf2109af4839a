# syntax=docker/dockerfile:1
#
# Product catalog service image.
#
#   docker build -t catalog-service .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e SECRET_KEY=... catalog-service
#
# Stage 1 (builder) installs the locked runtime dependencies and the project into a
# virtualenv at /opt/venv; it is the only stage with a compiler, in case a dependency
# ships no wheel for this platform.  Stage 2 (runtime) gets nothing but that venv and
# the files needed at run time, and runs as the unprivileged user `app` (uid 10001).

############################ builder ############################
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from the lock file, so this layer is cached until the lock changes.
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt

# Then the project itself (console script `catalog`); its dependencies are already there.
# README.m[d] is a glob so the build does not fail if the file is absent.
COPY pyproject.toml README.m[d] ./
COPY app/ app/
# pip byte-compiles what it installs; the .pyc files are kept so a read-only root
# filesystem (PYTHONDONTWRITEBYTECODE=1 at run time) still starts fast.
RUN pip install --no-cache-dir --no-deps .

############################ runtime ############################
FROM python:3.11-slim AS runtime

# Production unless told otherwise: a container started without settings must refuse a
# missing or example SECRET_KEY rather than run with development defaults.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only for `app`: the image works with a read-only root filesystem.
COPY alembic.ini ./
COPY alembic/ alembic/
COPY app/ app/

# Numeric uid:gid of `app`, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001

EXPOSE 8000

# python:3.11-slim has no curl/wget: probe with the standard library.
# urlopen raises on a connection error or a non-2xx status, which makes the exit code 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# Exec form: `catalog` is PID 1 and receives SIGTERM directly (graceful drain).
CMD ["catalog", "serve", "--host", "0.0.0.0", "--port", "8000"]
