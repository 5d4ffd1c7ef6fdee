from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0003_job_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="callback_url",
            field=models.URLField(blank=True, max_length=2048),
        ),
    ]
