# The rosesync image: worker, beat, Flower and the CLI (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 rosesync

WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
RUN pip install '.[flower]'

# Relative paths (var/ for the beat schedule and any SQLite file) live in the user's home,
# which docker-compose.yml mounts as a volume.
USER rosesync
WORKDIR /home/rosesync
RUN mkdir -p var
CMD ["rosesync", "worker", "--loglevel=INFO"]
