"""The package's boundaries, checked from its imports: HitPaw's contract stands alone, the sandbox
reads only the contract and the video header reading it shares with the client (never the client it
tests), and the provider info loads without Airflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "airflow_provider_hitpaw"
#: What the sandbox may import of the package: itself, the contract, and the reading of a video's header
#: (the same for the client's estimate and the sandbox's charge).
SANDBOX_MAY_IMPORT = (
    "airflow_provider_hitpaw.sandbox",
    "airflow_provider_hitpaw.contract",
    "airflow_provider_hitpaw.video_header",
)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_sandbox_imports_only_the_contract_of_the_package():
    for path in (PACKAGE / "sandbox").rglob("*.py"):
        for name in _imports(path):
            if name.startswith("airflow_provider_hitpaw"):
                assert name.startswith(SANDBOX_MAY_IMPORT), (
                    f"{path.name} imports {name}: the sandbox must read HitPaw's facts from the contract only"
                )
            assert not name.startswith("airflow.") and name != "airflow", f"{path.name} imports {name}"


def test_the_contract_imports_nothing_but_itself():
    for path in (PACKAGE / "contract").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith("airflow_provider_hitpaw.contract"), (
                f"{path.name} imports {name}"
            )


def test_the_video_header_reading_imports_only_the_standard_library_and_pyav():
    for name in _imports(PACKAGE / "video_header.py"):
        assert name.split(".")[0] in sys.stdlib_module_names or name == "av", f"video_header.py imports {name}"


def test_the_contract_and_the_provider_info_load_without_airflow():
    code = (
        "import sys; sys.modules['airflow'] = None\n"
        "import airflow_provider_hitpaw.contract.catalog, airflow_provider_hitpaw.contract.codes\n"
        "import airflow_provider_hitpaw.contract.endpoints, airflow_provider_hitpaw.connection_fields\n"
        "import airflow_provider_hitpaw.video_header\n"
        "from airflow_provider_hitpaw.get_provider_info import get_provider_info; get_provider_info()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
