# The visit-tracker service: `docker build -t visit-tracker .`, then
# `docker run -p 8080:8080 -v visit-tracker-data:/data visit-tracker`.
# Settings are the VISIT_TRACKER_* variables (see `visit-tracker serve --help`).

# Both stages use the same pinned image, so the venv built here runs there unchanged.
FROM python:3.11.15-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY src ./src
# The project pins every runtime dependency in pyproject.toml.
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11.15-slim-bookworm

RUN groupadd --gid 10001 visit-tracker \
    && useradd --no-log-init --uid 10001 --gid visit-tracker \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin visit-tracker \
    && mkdir /data \
    && chown visit-tracker:visit-tracker /data
COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH"
ENV PYTHONUNBUFFERED=1 \
    VISIT_TRACKER_HOST=0.0.0.0 \
    VISIT_TRACKER_PORT=8080 \
    VISIT_TRACKER_STORE=sqlite:////data/visits.db

# Counts live here; a new named volume takes this directory's owner, the service user.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['VISIT_TRACKER_PORT'] + '/readyz', timeout=4)"]
# No flags: they would override the environment, which is how a container is configured.
CMD ["visit-tracker", "serve"]
