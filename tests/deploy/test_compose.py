"""compose/docker-compose.yml names fixed releases of every image, and the chart's MinIO is the same one."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
CHART_VALUES = yaml.safe_load((ROOT / "deploy" / "helm" / "jobplatform" / "values.yaml").read_text())

# A release: a version with at least major.minor (16.10, 7.4.5) or MinIO's RELEASE.<date>.
PINNED = re.compile(r"^[\w./-]+:(\d+\.\d+[\w.-]*|RELEASE\.\d{4}-\d\d-\d\dT[\w-]+)$")


def images() -> dict[str, str]:
    return {name: service["image"] for name, service in COMPOSE["services"].items() if "image" in service}


def test_every_compose_image_names_a_release():
    found = images()
    assert {"postgres", "redis", "minio", "minio-init"} <= set(found)
    floating = {name: image for name, image in found.items() if not PINNED.match(image)}
    assert not floating, f"images without a pinned release: {floating}"


def test_chart_bundles_the_same_minio_release_as_compose():
    assert CHART_VALUES["minio"]["image"] == images()["minio"]
    assert CHART_VALUES["minio"]["mcImage"] == images()["minio-init"]
