# A Meta-Supervisor worker for a real Kafka cluster (see docker-compose.yml).
# Build context: the repository root; .dockerignore keeps .venv, var and .git out.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    METASUP_DATA_DIR=/app/var

WORKDIR /app
COPY . .
RUN pip install . \
    && useradd --create-home --uid 10001 metasup \
    && mkdir -p /app/var \
    && chown -R metasup /app

# Faust keeps its data directory (<app id>-data) in the working directory.
USER metasup
EXPOSE 6066

# --web-bind 0.0.0.0: inside a container the web server must listen beyond loopback;
# docker-compose.yml publishes it on the host's 127.0.0.1 only.
CMD ["faust", "-A", "streams.runtime.app", "worker", "-l", "info", "--web-bind", "0.0.0.0"]
