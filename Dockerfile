# sluice worker image: multi-stage, non-root (numeric UID, so Kubernetes' runAsNonRoot can
# verify it), healthcheck on /health. Runs with a read-only root filesystem: the worker
# writes only to /tmp (temp files, the memory store's scratch directory) and to
# /app/.sluice-data (rocksdb:// state), both volumes in deploy/kubernetes/.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
# the rocksdb extra too: one image serves memory:// and rocksdb:// (the StatefulSet overlay)
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels '.[rocksdb]'

FROM python:3.11-slim
RUN groupadd --gid 10001 sluice \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home sluice
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'sluice[rocksdb]' && rm -rf /wheels
WORKDIR /app
COPY --chown=10001:10001 config ./config
RUN install -d -o 10001 -g 10001 /app/.sluice-data
USER 10001:10001
ENV SLUICE_WEB__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2).status == 200 else 1)"
ENTRYPOINT ["sluice"]
CMD ["worker", "--config", "config"]
