# One image for every process of the service: web (gunicorn), worker, smpp, and the migration
# step; compose.yaml runs them all. Configuration comes from the environment only.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a change of the code alone reuses this layer: every package,
# transitive ones too, at the version and with the hashes of requirements.lock.
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .

# The code stays root's and read-only; the service writes nothing beside it in production
# (DATABASE_URL, REDIS_URL and SECRET_KEY set: no ./var of embedded defaults).
RUN useradd --system --no-create-home --shell /usr/sbin/nologin --uid 10001 tvpay
USER tvpay

EXPOSE 8000

# The slim image has no curl: Python asks /healthz (the web process; compose gives the worker
# and the SMPP worker checks of their own).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# gunicorn reads gunicorn.conf.py from /app: gthread workers, JSON logs, port $PORT (8000).
CMD ["gunicorn", "app:app"]
