"""The solc wrapper (tools/solc.js) behaves like the native solc CLI where py-solc-x needs it."""
import json
import re
import subprocess
from pathlib import Path

import pytest

WRAPPER = Path(__file__).resolve().parents[2] / "tools" / "solc.js"


def run_wrapper(args, stdin=None):
    return subprocess.run(
        ["node", str(WRAPPER), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def standard_input(sources, outputs=("abi",)):
    return json.dumps(
        {
            "language": "Solidity",
            "sources": {name: {"content": text} for name, text in sources.items()},
            "settings": {"outputSelection": {"*": {"*": list(outputs)}}},
        }
    )


def test_version__native_format():
    result = run_wrapper(["--version"])

    assert result.returncode == 0
    assert re.search(r"^Version: 0\.8\.28\+commit\.[0-9a-f]{8}\.Linux\.g\+\+$", result.stdout, re.M)


def test_standard_json__import_from_base_path(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "Base.sol").write_text("pragma solidity ^0.8.0; contract Base { uint256 public x; }")
    main = 'pragma solidity ^0.8.0; import "lib/Base.sol"; contract Main is Base {}'

    result = run_wrapper(["--standard-json", "--base-path", str(tmp_path)], standard_input({"Main.sol": main}))

    assert result.returncode == 0
    output = json.loads(result.stdout)
    assert not [e for e in output.get("errors", []) if e["severity"] == "error"]
    assert "Main" in output["contracts"]["Main.sol"]


def test_standard_json__import_from_include_path(tmp_path):
    base, include = tmp_path / "base", tmp_path / "inc"
    base.mkdir()
    (include / "pkg").mkdir(parents=True)
    (include / "pkg" / "Lib.sol").write_text("pragma solidity ^0.8.0; library Lib { function one() internal pure returns (uint256) { return 1; } }")
    main = 'pragma solidity ^0.8.0; import "pkg/Lib.sol"; contract M { function f() external pure returns (uint256) { return Lib.one(); } }'

    result = run_wrapper(
        ["--standard-json", "--base-path", str(base), "--include-path", str(include)],
        standard_input({"M.sol": main}),
    )

    output = json.loads(result.stdout)
    assert "M" in output["contracts"]["M.sol"]


def test_standard_json__missing_import__error_inside_json(tmp_path):
    main = 'pragma solidity ^0.8.0; import "nowhere/X.sol"; contract M {}'

    result = run_wrapper(["--standard-json", "--base-path", str(tmp_path)], standard_input({"M.sol": main}))

    assert result.returncode == 0
    errors = json.loads(result.stdout)["errors"]
    assert any("nowhere/X.sol" in e["message"] for e in errors)


def test_standard_json__syntax_error__inside_json_exit_zero():
    result = run_wrapper(["--standard-json"], standard_input({"Bad.sol": "contract Bad { function f( }"}))

    assert result.returncode == 0
    errors = json.loads(result.stdout)["errors"]
    assert errors[0]["severity"] == "error"
    assert errors[0]["type"] == "ParserError"


def test_standard_json__output_over_64_kib__arrives_whole():
    body = "\n".join(
        f"function f{i}(uint256 a) external pure returns (uint256) {{ return a * {i} + {i}; }}" for i in range(120)
    )
    source = f"pragma solidity ^0.8.0; contract Big {{ {body} }}"

    result = run_wrapper(
        ["--standard-json"],
        standard_input({"Big.sol": source}, outputs=("abi", "evm.bytecode", "evm.deployedBytecode", "metadata")),
    )

    assert len(result.stdout.encode()) > 64 * 1024
    output = json.loads(result.stdout)
    assert "Big" in output["contracts"]["Big.sol"]


@pytest.mark.parametrize("stdin", ["not json", ""])
def test_standard_json__malformed_input__error_inside_json(stdin):
    result = run_wrapper(["--standard-json"], stdin)

    assert result.returncode == 0
    assert json.loads(result.stdout)["errors"][0]["severity"] == "error"


def test_venv_python__other_home__py_solc_x_finds_the_project_wrapper(tmp_path):
    """`make setup` leaves a .pth in the venv naming .venv/solcx: a HOME without ~/.solcx (changed
    after setup) still compiles offline instead of attempting a download."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SOLCX_BINARY_PATH"} | {"HOME": str(tmp_path)}
    probe = "import solcx; print(solcx.get_installed_solc_versions())"

    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "Version('0.8.28')" in result.stdout
    assert not (tmp_path / ".solcx").exists()
