# authbus: `docker build -t authbus .`, then `docker run authbus serve` (compose.yaml wires a
# whole deployment; docs/operations.md explains it).

# ---- build: install the project (not editable) into a virtualenv of its own
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# No pip or setuptools inside the venv: the base image's pip installs into it.
RUN python -m venv --without-pip /opt/authbus
WORKDIR /src
COPY pyproject.toml README.md ./
COPY domain domain
COPY projections projections
COPY handlers handlers
COPY infra infra
RUN pip --python /opt/authbus/bin/python install .

# ---- run: the venv only; no source tree, pip cache or build backend
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/authbus/bin:$PATH \
    AUTHBUS_DATA_DIR=/data
# /data holds the read-model snapshot, /secrets the KEK and root token. Both belong to the
# service user, so empty named volumes mounted there take that owner on first use.
RUN groupadd --gid 10001 authbus \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin authbus \
 && mkdir -p /app /data /secrets \
 && chown 10001:10001 /app /data /secrets \
 && chmod 0700 /data /secrets
COPY --from=build /opt/authbus /opt/authbus
WORKDIR /app
USER 10001:10001
# Healthy when NATS is reachable and an authbus service answers its nats.micro ping.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import asyncio,os,nats; l=asyncio.new_event_loop(); nc=l.run_until_complete(asyncio.wait_for(nats.connect(os.environ.get('AUTHBUS_NATS_URL','nats://127.0.0.1:4222'),allow_reconnect=False,max_reconnect_attempts=1),3)); l.run_until_complete(nc.request('$SRV.PING.authbus',b'',timeout=3)); l.run_until_complete(nc.close())"]
EXPOSE 9090
ENTRYPOINT ["authbus"]
CMD ["serve"]
