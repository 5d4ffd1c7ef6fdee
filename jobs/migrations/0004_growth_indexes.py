import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: a table with millions of rows keeps taking writes meanwhile.
    atomic = False

    dependencies = [
        ("jobs", "0003_job_version"),
    ]

    operations = [
        # pg_trgm is a trusted extension: the database's owner may create it.
        TrigramExtension(),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(fields=["owner", "state", "-created_at"], name="job_owner_state_created"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(fields=["owner", "job_type", "-created_at"], name="job_owner_type_created"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("state__in", ["CANCELLED", "COMPLETED", "DEAD", "FAILED"])),
                               fields=["finished_at"], name="job_finished"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=django.contrib.postgres.indexes.HashIndex(fields=["input_key"], name="job_input_key"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper("input_name"),
                                                        name="gin_trgm_ops"),
                name="job_input_name_trgm"),
        ),
        AddIndexConcurrently(
            model_name="deadletter",
            index=models.Index(fields=["-died_at"], name="deadletter_died"),
        ),
    ]
