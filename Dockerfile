# syntax=docker/dockerfile:1
# walletpipe: one image for every process (release, web, worker, scheduler); compose.yaml
# picks the command. Two stages: the build stage has pip and the build backend, the final
# image only the installed virtual environment, run as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/walletpipe
# Metadata first, so the dependency layer is rebuilt only when the dependencies change.
COPY pyproject.toml setup.cfg README.md ./
COPY ledger ./ledger
COPY workers ./workers
COPY webhook_receiver ./webhook_receiver
COPY walletctl ./walletctl
# A wheel-installed (not editable) package; then pip and the build tools leave the runtime.
RUN /opt/walletpipe/bin/pip install --no-cache-dir . \
    && /opt/walletpipe/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="walletpipe" \
      org.opencontainers.image.description="Prepaid-wallet ledger fed by payment-gateway webhooks."
RUN groupadd --system --gid 10001 walletpipe \
    && useradd --system --uid 10001 --gid walletpipe --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin walletpipe
COPY --from=build /opt/walletpipe /opt/walletpipe
ENV PATH=/opt/walletpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    HOST=0.0.0.0 \
    PORT=8000
WORKDIR /opt/walletpipe
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "--config", "python:webhook_receiver.gunicorn_conf", "webhook_receiver:create_app()"]
