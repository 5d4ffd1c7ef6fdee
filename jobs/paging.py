"""Page counts that stay cheap with millions of rows: exact up to a bound, estimated above it.

Django's Paginator (and so the admin's changelist) runs count(*) over the whole result on
every page, which reads every row. Here the count reads at most EXACT_COUNT_UP_TO + 1 rows;
a longer result is given PostgreSQL's estimate of its rows (EXPLAIN's plan rows, which come
from the table's reltuples and statistics), so the last page numbers are approximate.
"""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

EXACT_COUNT_UP_TO = 10_000


def estimated_count(queryset: QuerySet) -> int:
    """The planner's estimate of the rows `queryset` returns; no row is read."""
    plan = json.loads(queryset.explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return super().count
        # Unordered: any rows will do for a count, so the planner may read the filter's own
        # index instead of walking the list's order across the whole table to find them.
        bounded = self.object_list.order_by()[:EXACT_COUNT_UP_TO + 1].count()
        if bounded <= EXACT_COUNT_UP_TO:
            return bounded
        return max(bounded, estimated_count(self.object_list))

    @cached_property
    def is_estimated(self) -> bool:
        return self.count > EXACT_COUNT_UP_TO
