"""How the chain adapter classifies failures for long-running clients (retry or surface)."""
import pytest
import requests
from ape.exceptions import ContractLogicError, VirtualMachineError

from fl.chain.errors import classify_error


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


def test_classify_error__transaction_not_mined_in_time__transient():
    from ape.exceptions import TransactionNotFoundError

    exc = TransactionNotFoundError("0x" + "ab" * 32, "is not in the chain after 20 seconds")

    assert classify_error(exc) == "transient"


def test_await_unmined__no_hash_in_the_error__reraises_it():
    from ape.exceptions import TransactionNotFoundError

    from fl.chain.errors import await_unmined

    exc = TransactionNotFoundError(None, "gone")

    with pytest.raises(TransactionNotFoundError):
        await_unmined(exc, timeout=1)
