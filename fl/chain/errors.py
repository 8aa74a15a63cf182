"""What a failed call means (a revert, a transient node problem, a bug) and the receipt of a transaction left unmined."""

from __future__ import annotations

import logging
import re

from ape import chain
from ape.exceptions import TransactionNotFoundError

STUCK_RECEIPT_TIMEOUT = 120  # seconds to wait again for a sent transaction Ape gave up on


def await_unmined(exc: BaseException, timeout: int = STUCK_RECEIPT_TIMEOUT, provider=None):
    """The receipt of a transaction that was sent but not mined within Ape's acceptance timeout.

    On a development chain that is anvil's automine missing a ready transaction while many senders
    race (foundry-rs/foundry#10122): mine one block, which takes it, if the provider can (Ape's
    node provider cannot). Off development chains (public and custom networks such as the
    rehearsal) never mine. Then wait `timeout` seconds more for the same hash (never resend: that
    would act twice). Re-raises `exc` if the hash cannot be read from it or the transaction is still not mined."""
    found = re.search(r"0x[0-9a-fA-F]{64}", str(exc))
    if found is None:
        raise exc
    provider = provider or chain.provider
    mine = bool(provider.network.is_dev)
    logger = logging.getLogger("stakefl.client")
    logger.warning("transaction %s sent but not mined in time; %s", found.group(0)[:12],
                   "mining a block (development chain)" if mine else f"waiting up to {timeout} s more")
    if mine:
        try:
            provider.mine()
        except NotImplementedError:  # Ape's node provider (ethereum:local:node) cannot mine: wait
            logger.warning("the provider cannot mine; waiting up to %d s more", timeout)
    receipt = provider.get_receipt(found.group(0), timeout=timeout)
    receipt.raise_for_status()  # mined after its deadline, say: a revert like any other
    return receipt


def classify_error(exc: BaseException) -> str | None:
    """"revert" for a call the contract refused, "transient" for a node that is unreachable,
    slow or restarting (retry later), None for anything else (a bug: let it surface)."""
    from ape.exceptions import APINotImplementedError, ContractLogicError, ProviderError, ProviderNotConnectedError

    try:
        import requests

        network_errors: tuple = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover
        network_errors = ()
    # Ape may wrap a dropped connection in a VirtualMachineError: look down the whole cause chain
    link, seen = exc, set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, (ConnectionError, TimeoutError, ProviderNotConnectedError, *network_errors)):
            return "transient"
        link = link.__cause__ or link.__context__
    if isinstance(exc, ContractLogicError):
        return "revert"
    if isinstance(exc, TransactionNotFoundError):  # sent, not mined yet: re-read the chain later
        return "transient"
    if isinstance(exc, ProviderError) and not isinstance(exc, APINotImplementedError):
        text = str(exc).lower()
        if any(s in text for s in ("connection", "timed out", "timeout", "max retries", "missing latest block")):
            return "transient"
    return None


def revert_summary(exc: BaseException) -> str:
    """A one-line reason for a revert (the custom error's name and fields where Ape decoded them)."""
    name = type(exc).__name__
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}({message})" if name not in ("ContractLogicError", "VirtualMachineError") else message or name
