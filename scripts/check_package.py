"""``make check-package``: build the sdist and the wheel, check them, and use the wheel as a user would.

1. ``python -m build`` into a temporary folder, then ``twine check`` (the metadata PyPI shows);
2. the sdist and the wheel hold LICENSE, ``py.typed`` and the sandbox's samples;
3. a fresh venv (no access to this checkout, run from another folder) installs the wheel with its
   ``sandbox`` extra, then imports the provider, reads its provider info, starts the sandbox from the
   installed package and fetches its sample photo, and stops it.

A file missing from the wheel (a sandbox sample, the license) fails here rather than for a user.
Exits non-zero on the first failure, with the failing command's output.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
#: Files a user's install needs besides the Python modules (paths inside the package).
PACKAGE_DATA = ("airflow_provider_hitpaw/py.typed", "airflow_provider_hitpaw/sandbox/samples/portrait.jpg")

# Run in the fresh venv, from an empty folder: everything comes from the installed wheel.
SMOKE = r"""
import json, sys, urllib.request
import airflow_provider_hitpaw
from airflow_provider_hitpaw.get_provider_info import get_provider_info
from airflow_provider_hitpaw.sandbox import start_sandbox

assert "site-packages" in airflow_provider_hitpaw.__file__, airflow_provider_hitpaw.__file__
info = get_provider_info()
assert info["package-name"] == "airflow-provider-hitpaw" and info["versions"] == [airflow_provider_hitpaw.__version__]
from airflow.providers_manager import ProvidersManager
provider = ProvidersManager().providers["airflow-provider-hitpaw"]
assert provider.data["documentation-url"], "no Documentation URL in the package metadata"
with start_sandbox(api_keys={"smoke-key": 10}) as sandbox:
    with urllib.request.urlopen(sandbox.url("/samples/portrait.jpg"), timeout=10) as reply:
        body = reply.read()
    assert body[:3] == b"\xff\xd8\xff", "the sample is not a JPEG"
print(json.dumps({"version": airflow_provider_hitpaw.__version__, "sample_bytes": len(body),
                  "documentation": provider.data["documentation-url"]}))
"""


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 900) -> str:
    printable = " ".join(str(a) for a in args)
    print(f"==> {printable}", flush=True)
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)  # noqa: S603
    if done.returncode != 0:
        sys.exit(f"FAILED ({done.returncode}): {printable}\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def check_contents(sdist: Path, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        missing.append("*.dist-info/licenses/LICENSE")
    with tarfile.open(sdist) as archive:
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing += [f"sdist: {name}" for name in ("LICENSE", "README.md", *PACKAGE_DATA) if name not in sdist_names]
    if missing:
        sys.exit(f"FAILED: missing from the distributions: {', '.join(missing)}")


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hitpaw-package-") as tmp:
        dist, venv, elsewhere = Path(tmp) / "dist", Path(tmp) / "venv", Path(tmp) / "elsewhere"
        elsewhere.mkdir()
        run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, PROJECT)
        (sdist,) = dist.glob("*.tar.gz")
        (wheel,) = dist.glob("*.whl")
        run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
        check_contents(sdist, wheel)
        run(sys.executable, "-m", "venv", venv)
        python = venv / "bin" / "python"
        run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[sandbox]")
        print(run(python, "-c", SMOKE, cwd=elsewhere).strip())
        print(f"Package checked in {time.monotonic() - started:.0f} s: {sdist.name}, {wheel.name}")


if __name__ == "__main__":
    main()
