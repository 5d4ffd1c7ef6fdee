from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_uploadsession"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="version",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
