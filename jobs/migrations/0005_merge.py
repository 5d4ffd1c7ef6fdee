from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_growth_indexes"),
        ("jobs", "0004_job_callback_url"),
        ("jobs", "0004_upload_checksums"),
    ]

    operations = []
