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


class _Receipt:
    txn_hash = "0x" + "cd" * 32

    def raise_for_status(self):
        return None


class _Provider:
    """A provider stand-in that records mining requests; `can_mine=False` answers as Ape's node
    provider does ("Attempted to call method 'GethDev.mine', method not supported")."""

    def __init__(self, is_dev: bool, can_mine: bool):
        from types import SimpleNamespace

        self.network = SimpleNamespace(is_dev=is_dev, is_local=is_dev, name="local" if is_dev else "rehearsal")
        self.can_mine = can_mine
        self.mined = 0
        self.waited_for = []

    def mine(self, num_blocks: int = 1):
        from ape.exceptions import APINotImplementedError

        if not self.can_mine:
            raise APINotImplementedError("Attempted to call method 'GethDev.mine', method not supported.")
        self.mined += 1

    def get_receipt(self, txn_hash, timeout=None, **kwargs):
        self.waited_for.append((txn_hash, timeout))
        return _Receipt()


@pytest.mark.parametrize(
    "is_dev, can_mine, expected_mined",
    [(True, False, 0), (False, True, 0), (True, True, 1)],
    ids=["node-provider-on-local-cannot-mine", "custom-network-never-mined", "anvil-automine-mined"],
)
def test_await_unmined__mines_only_on_a_dev_chain_that_can__then_waits_for_the_same_hash(
        monkeypatch, is_dev, can_mine, expected_mined):
    # issue 17: through `ethereum:local:node` the clients died with "GethDev.mine ... not supported"
    from types import SimpleNamespace

    from ape.exceptions import TransactionNotFoundError

    import fl.chain.errors as errors

    provider = _Provider(is_dev, can_mine)
    monkeypatch.setattr(errors, "chain", SimpleNamespace(provider=provider))
    tx_hash = "0x" + "cd" * 32
    exc = TransactionNotFoundError(tx_hash, f"Transaction '{tx_hash}' is not in the chain after 6 seconds")

    receipt = errors.await_unmined(exc, timeout=7)

    assert receipt.txn_hash == tx_hash
    assert provider.mined == expected_mined
    assert provider.waited_for == [(tx_hash, 7)]
