# The control plane image: runs from the repository tree (migrations/, checks/, alerts/ included).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pg_dump/pg_basebackup for backups of the service's own PostgreSQL database.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY controlplane ./controlplane
RUN pip install -e .
COPY . .

RUN useradd --create-home --uid 10001 controlplane && mkdir -p /data && chown controlplane /data
USER controlplane

ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
EXPOSE 8080
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
