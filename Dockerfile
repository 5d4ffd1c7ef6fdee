# One image for web, worker and beat (compose/docker-compose.yml picks the command and the
# settings module). Only production code and requirements: the embedded dev servers
# (devstack/, requirements-devstack.txt), tests and benchmarks stay out.
# Not built or run by the tests: this machine has no Docker engine.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=jobplatform.settings.web
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY jobplatform/ jobplatform/
COPY jobs/ jobs/
COPY storage/ storage/
COPY processors/ processors/
COPY templates/ templates/
COPY static/ static/
RUN useradd --system --home /app jobplatform \
    && DJANGO_DEBUG=1 DATABASE_URL=postgres://build@localhost/build python manage.py collectstatic --noinput \
    && chown -R jobplatform /app
USER jobplatform

EXPOSE 8000
CMD ["uvicorn", "jobplatform.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers",
     "--timeout-graceful-shutdown", "5"]
