"""Signals other apps listen to, so that jobs never imports them (metrics, webhooks)."""

from django.dispatch import Signal

# Sent once per committed transition, after the commit, with `job` (the row as moved) and
# `event` (its JobEvent). Receivers run in the process that made the move; one that
# raises is logged and does not affect the move or the other receivers.
job_moved = Signal()
