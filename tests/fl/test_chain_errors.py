"""How the chain adapter classifies failures for long-running clients (retry or surface)."""
import pytest
import requests
from ape.exceptions import ContractLogicError, VirtualMachineError

from fl.chain import classify_error


def _raised_from(outer: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as inner:
            raise outer from inner
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc, expected",
    [
        (requests.exceptions.ConnectionError("refused"), "transient"),
        (ConnectionResetError(104, "reset"), "transient"),
        (_raised_from(VirtualMachineError("aborted"), requests.exceptions.ConnectionError("reset")), "transient"),
        (ContractLogicError("RoundNotInState"), "revert"),
        (ValueError("a bug"), None),
    ],
    ids=["requests", "os-level", "ape-wrapped-connection-reset", "revert", "bug"],
)
def test_classify_error(exc, expected):
    actual = classify_error(exc)

    assert actual == expected
