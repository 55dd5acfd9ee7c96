# The production image of csautomation: every `csauto` command, run as `docker run IMAGE
# <command>` (the entrypoint is `csauto`). docs/operations.md tells how to deploy it.
#
#   docker build -t csautomation .
#
# Two stages on the same base. The build stage has gcc: pip builds a wheel of csautomation
# and of every dependency (durable_rules' C extension is compiled there), then installs
# them from those wheels alone into /opt/venv. The runtime stage copies only that venv, so
# it has no compiler, no wheels and no pip cache. The classic builder, which Debian's
# docker-compose 1.29 uses, builds this file too: no BuildKit-only syntax.
#
# No secret is baked in: database URL, session secret, source tokens and connector
# credentials come from the environment at run time (.env.example lists them).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# The compiler follows the base image's Debian release; pinning its exact version would
# break the build at each Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# The extras installed: postgres (the psycopg driver for
# CSAUTO_DATABASE_URL=postgresql+psycopg://...), and any other named at build time.
ARG CSAUTO_EXTRAS=postgres
RUN pip wheel --wheel-dir /wheels ".[${CSAUTO_EXTRAS}]" \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels "csautomation[${CSAUTO_EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="csautomation" \
      org.opencontainers.image.description="Rule-based Customer Success workflow engine on Temporal" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed uid, so that volumes can be given to it; no login shell, no home of its own.
RUN groupadd --system --gid 10001 csauto \
    && useradd --system --uid 10001 --gid csauto --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin csauto \
    && mkdir -p /var/lib/csauto \
    && chown csauto:csauto /var/lib/csauto

COPY --from=build /opt/venv /opt/venv

# The declarative configuration, read from the working directory. It belongs to root and
# is only read: mount a volume (or a bind mount) over /app/rules, /app/workflows, ... or
# over a single file to run other configuration with the same image.
WORKDIR /app
COPY rules/ ./rules/
COPY workflows/ ./workflows/
COPY connectors/ ./connectors/
COPY escalation_matrix.yaml health_model.yaml people.yaml sources.yaml schedules.yaml ./

# CSAUTO_DATA_DIR: the only place the process writes (a SQLite database when no
# CSAUTO_DATABASE_URL is given; nothing when it is PostgreSQL).
# CSAUTO_HEALTHCHECK_URL: what HEALTHCHECK asks; the API's liveness by default. For
# `worker`, `pipeline` and `scheduler run` started with `--metrics-port 9464`, set it to
# http://127.0.0.1:9464/health/live (docker-compose.yml sets each service's own check).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CSAUTO_DATA_DIR=/var/lib/csauto \
    CSAUTO_HEALTHCHECK_URL=http://127.0.0.1:8000/health/live

USER 10001:10001

# 8000: `csauto serve` (review page, API, POST /v1/signals, /health/*, /metrics);
# 9464: `--metrics-port` of worker, pipeline and scheduler (/health/live, /metrics)
EXPOSE 8000 9464

# The slim image has no curl: the check is Python's own urllib (any answer but 2xx fails).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CSAUTO_HEALTHCHECK_URL'], timeout=4)"]

ENTRYPOINT ["csauto"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
