"""Making a bucket of the test session's own SeaweedFS refuse writes while it still answers
reads, with the filer's path configuration (`weed shell fs.configure -readOnly`), as an
operator or a full volume would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.pause import server

WEED = Path(sys.executable).parent / "weed"


def weed_shell(command: str) -> str:
    master = server("s3").ports["master"][0]
    done = subprocess.run([str(WEED), "shell", f"-master=127.0.0.1:{master}"], input=command + "\n",
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@contextmanager
def read_only_bucket(bucket: str) -> Iterator[None]:
    """Writes under the bucket fail (the S3 gateway answers InternalError); reads still work."""
    prefix = f"/buckets/{bucket}/"
    weed_shell(f"fs.configure -locationPrefix={prefix} -readOnly -apply")
    try:
        yield
    finally:
        weed_shell(f"fs.configure -locationPrefix={prefix} -delete -apply")
