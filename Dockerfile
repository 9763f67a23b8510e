# duly's image: the worker (`duly worker`), the web app (`duly web`) and the migrations
# (`duly db upgrade`) all run from it; docker-compose.yml shows each. Configuration comes only
# from DULY_* environment variables (duly/settings.py); definitions/ is baked in at
# /app/definitions: mount your own over it, or build FROM this image and COPY them.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The dependencies first, so a code change does not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir -p duly workflows activities && touch worker.py duly/__init__.py \
    && pip install . && pip uninstall -y duly && rm -rf duly workflows activities worker.py build

COPY duly ./duly
COPY workflows ./workflows
COPY activities ./activities
COPY worker.py ./
RUN pip install --no-deps . && rm -rf build

COPY definitions ./definitions

RUN useradd --create-home --uid 10001 duly && mkdir /data && chown duly /data
USER duly

ENV DULY_DEFINITIONS=/app/definitions \
    DULY_DATA_DIR=/data \
    DULY_LOG_FORMAT=json \
    DULY_WEB_HOST=0.0.0.0 \
    DULY_WEB_PORT=8000 \
    DULY_METRICS_HOST=0.0.0.0 \
    DULY_METRICS_PORT=9464

# 8000: the web app (and its /metrics); 9464: a worker's /metrics
EXPOSE 8000 9464

ENTRYPOINT ["duly"]
CMD ["web"]
