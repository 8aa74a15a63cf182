"""Suite-wide checks: a broken toolchain is reported in one line, not as a download traceback."""
import os
import shutil
from pathlib import Path

import pytest

SOLC_VERSION = "0.8.28"
SETUP_HINT = "run `make setup` (or `bash tools/setup.sh`)"


def pytest_configure(config):
    solcx_dir = Path(os.environ.get("SOLCX_BINARY_PATH", Path.home() / ".solcx"))
    if not (solcx_dir / f"solc-v{SOLC_VERSION}").exists():
        pytest.exit(f"solc wrapper not installed in {solcx_dir}: {SETUP_HINT}", returncode=4)
    if shutil.which("node") is None:
        pytest.exit("node not found: the solc wrapper needs Node.js 20+", returncode=4)
    if not (Path(config.rootpath) / "node_modules" / "@openzeppelin" / "contracts").exists():
        pytest.exit(f"OpenZeppelin Contracts missing from node_modules: {SETUP_HINT}", returncode=4)
