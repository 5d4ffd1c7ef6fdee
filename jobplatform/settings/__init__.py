"""Settings per process type: `web` (Uvicorn, manage.py) and `worker` (Celery worker and
beat), both built on `base`. Every entry point names its module in DJANGO_SETTINGS_MODULE."""
