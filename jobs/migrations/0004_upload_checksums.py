from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0003_job_version"),
    ]

    operations = [
        migrations.AlterField(
            model_name="uploadsession",
            name="s3_upload_id",
            field=models.CharField(db_index=True, max_length=1024),
        ),
        migrations.AlterField(
            model_name="uploadsession",
            name="size",
            field=models.BigIntegerField(
                blank=True, null=True,
                help_text="the size the client declared (checked on complete), else the stored one"),
        ),
        migrations.AlterField(
            model_name="uploadsession",
            name="part_size",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="uploadsession",
            name="part_count",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="uploadsession",
            name="sha256",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
