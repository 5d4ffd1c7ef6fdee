"""Model instances from rows that hand-written SQL read, converted as the ORM converts them."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection


def from_row(model, fields: Sequence, values: Sequence):
    """An instance of `model` from the values of `fields` (its concrete fields, in the
    order the statement selected them), each through its from_db_value as the ORM would."""
    values = [f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
              for f, v in zip(fields, values, strict=True)]
    return model.from_db(connection.alias, [f.attname for f in fields], values)
