import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection

from jobs import metrics_export
from jobs.sweeper import sweep

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Run one pass of the sweeper and print the counts; with --loop, sweep every SWEEP_INTERVAL_SECONDS "
            "(or --every N) until SIGTERM/SIGINT, as the platform's own sweeper process.")

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep sweeping, every SWEEP_INTERVAL_SECONDS")
        parser.add_argument("--every", type=float, default=None, metavar="SECONDS",
                            help="keep sweeping, every SECONDS (implies --loop)")

    def handle(self, *args, loop=False, every=None, **options):
        if not loop and every is None:
            counts = sweep()
            for name, count in counts.items():
                self.stdout.write(f"{name}: {count}")
            self.stdout.write(f"total: {sum(counts.values())}")
            return
        self.loop(every if every is not None else float(settings.SWEEP_INTERVAL_SECONDS))

    def loop(self, interval: float) -> None:
        """Sweeps until told to stop. Its own process, so recovery goes on while beat is down
        or every worker is busy with long jobs; several at once are harmless, as every move
        the sweeper makes is a compare-and-set on the row it read."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if settings.SWEEPER_METRICS_PORT:
            metrics_export.serve_process_metrics(port=settings.SWEEPER_METRICS_PORT, addr=settings.WORKER_METRICS_ADDR)
        self.stdout.write(f"sweeping every {interval:g}s")
        while not stop.is_set():
            try:
                sweep()
            except DatabaseError:
                logger.warning("sweep.database_unavailable", exc_info=True)
                connection.close()  # a dropped connection stays broken: reconnect next time
            except Exception:  # the loop must outlive any one failure
                logger.exception("sweep.failed")
            stop.wait(interval)
