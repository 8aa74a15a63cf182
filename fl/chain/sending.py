"""Sending a transaction to a chain that mines on its own clock (a public testnet, the rehearsal
network, anvil with --block-time): wait for blocks, never mine, and never act twice.

Ape's own path waits `transaction_acceptance_timeout` for a receipt and then gives up (or, on
ape-foundry with automine off, returns a receipt that is not in a block at all). Here:
- fees are EIP-1559 (max fee = 2 x base fee + tip), and the account's ether is checked against
  gas x max fee before anything is sent (a one-line `InsufficientFunds`);
- the nonce is read from the chain ("pending") once per action and every later attempt reuses
  it, so of all the transactions sent for one action at most one can ever be mined;
- a transaction still unmined after `stall_blocks` blocks (a full block, a base fee that rose past
  its max fee, a node that dropped or refused it) is replaced by the same call, same nonce, with
  a 25% higher tip and max fee; "already known", "nonce too low" and "underpriced" answers are
  read as "the node has one of ours, or wants a higher bump";
- a mined transaction that reverted raises `ContractLogicError` (what the client reads as "the
  chain moved on"), with the reason from replaying the call.
"""

from __future__ import annotations

import logging
import time

import click
from ape import chain
from ape.exceptions import ContractLogicError

log = logging.getLogger("stakefl.client")

TIP = 10**9  # priority fee per gas (wei) of a first attempt
BUMP = 1.25  # fee multiplier of a replacement (nodes require at least +10% on both fees)
STALL_BLOCKS = 3  # blocks without our transaction before it is replaced or sent again
RECEIPT_TIMEOUT = 300  # seconds to wait for one action to be mined, replacements included


class InsufficientFunds(click.ClickException):
    """The account cannot pay for the transaction (shown as one line by `ape run`)."""


class NonceTaken(click.ClickException):
    """Another transaction from the same account (another process?) took the nonce of ours."""


class StuckTransaction(click.ClickException):
    """Nothing sent for an action was mined in time (replacements included): stop rather than
    send the action again with a new nonce, which could act twice."""


def automines(provider=None) -> bool:
    """True on a development chain that mines a block for each transaction it gets (the embedded
    chain, anvil without --block-time): there Ape's own path is right and a stuck transaction may
    be mined by hand. False on public and custom networks and on interval-mining dev chains."""
    provider = provider or chain.provider
    if not provider.network.is_dev:
        return False
    try:
        return bool(provider.auto_mine)
    except (NotImplementedError, AttributeError):  # no such notion: it does not mine on demand
        return False


def _message(exc: BaseException) -> str:
    return str(exc).lower()


def transact(account, method, *args, value: int = 0, stall_blocks: int = STALL_BLOCKS,
             timeout: float = RECEIPT_TIMEOUT, poll: float = 0.5):
    """Send `method(*args)` (a contract method, or a ContractContainer to deploy) from `account`
    and return Ape's receipt once it is mined. Raises ContractLogicError if the call would revert
    (from the gas estimate) or did revert, InsufficientFunds if the account cannot pay, StuckTransaction
    if nothing was mined within `timeout` seconds (the last transaction may still be mined later)."""
    provider = chain.provider
    web3 = provider.web3
    address = str(account.address)
    nonce = int(web3.eth.get_transaction_count(address, "pending"))
    tip, max_fee = initial_fees(int(chain.blocks.head.base_fee or 0))
    _check_funds(provider, address, 21_000, max_fee, value)  # not even a plain transfer: say so first
    base = _build(provider, account, method, args, value, nonce)
    _check_funds(provider, address, base.gas_limit, max_fee, value)
    sent: list[str] = []  # hashes of every attempt, all with this nonce

    def attempt(tip: int, max_fee: int) -> bytes:
        txn = base.model_copy(deep=True)
        txn.max_priority_fee, txn.max_fee = tip, max_fee
        signed = account.sign_transaction(txn)
        if signed is None:
            raise RuntimeError(f"{address} declined to sign (locked keyfile? set APE_ACCOUNTS_<alias>_PASSPHRASE)")
        sent.append("0x" + bytes(signed.txn_hash).hex())
        return bytes(signed.serialize_transaction())

    _broadcast(web3, attempt(tip, max_fee), address)
    deadline = time.monotonic() + timeout
    last_block = sent_block = int(web3.eth.block_number)
    while time.monotonic() < deadline:
        found = _mined(web3, sent)
        if found is not None:
            return _checked(provider, account, method, args, value, found)
        head = int(web3.eth.block_number)
        if head != last_block:
            last_block = head
            if int(web3.eth.get_transaction_count(address, "latest")) > nonce:
                for _ in range(10):  # our nonce is used: by one of ours (receipt not indexed yet) or not
                    found = _mined(web3, sent)
                    if found is not None:
                        return _checked(provider, account, method, args, value, found)
                    time.sleep(poll)
                raise NonceTaken(
                    f"nonce {nonce} of {address} was used by a transaction this process did not send "
                    f"(another process with the same account?); ours: {', '.join(h[:12] for h in sent)}"
                )
            if head - sent_block >= stall_blocks:  # pooled behind a full block or a risen base fee, or dropped
                sent_block = head
                pooled = _known(web3, sent[-1])
                tip, max_fee = bumped_fees(tip, max_fee, int(chain.blocks.head.base_fee or 0))
                _check_funds(provider, address, base.gas_limit, max_fee, value)
                raw = attempt(tip, max_fee)
                log.warning("transaction %s %s after %d blocks; replacing it (same nonce %d, tip %.2f gwei, "
                            "max fee %.2f gwei)", sent[-2][:12], "not mined" if pooled else "gone from the node",
                            stall_blocks, nonce, tip / 1e9, max_fee / 1e9)
                _broadcast(web3, raw, address)
        time.sleep(poll)
    raise StuckTransaction(f"none of the transactions for nonce {nonce} of {address} was mined in {timeout:.0f} s "
                       f"({', '.join(h[:12] for h in sent)}); they may still be: rerun to resume")


def initial_fees(base_fee: int) -> tuple[int, int]:
    """(tip, max fee) of a first attempt: room for the base fee to double before it is stuck."""
    return TIP, 2 * base_fee + TIP


def bumped_fees(tip: int, max_fee: int, base_fee: int) -> tuple[int, int]:
    """(tip, max fee) of a replacement: both at least 25% higher (nodes want +10%), the max fee
    also above twice the current base fee."""
    tip = int(tip * BUMP) + 1
    return tip, max(int(max_fee * BUMP) + 1, 2 * base_fee + tip)


def deploy(account, container, *args, **kwargs):
    """Deploy `container` from `account` (as `transact`) and return the contract instance."""
    receipt = transact(account, container, *args, **kwargs)
    address = receipt.contract_address
    if not address:
        raise RuntimeError(f"transaction {receipt.txn_hash} was mined but created no contract")
    return chain.contracts.instance_at(address, contract_type=container.contract_type)


def _build(provider, account, method, args, value: int, nonce: int):
    from ape.contracts import ContractContainer

    kwargs = {"sender": account, "nonce": nonce, "type": 2}
    if value:
        kwargs["value"] = value
    try:
        if isinstance(method, ContractContainer):
            txn = method(*args, **kwargs)
            txn = provider.prepare_transaction(txn)  # estimates gas: a revert raises here
        else:
            txn = method.as_transaction(*args, **kwargs)
    except ContractLogicError:
        raise
    except Exception as exc:  # noqa: BLE001 - a node that refuses to estimate for lack of ether
        text = _message(exc)  # anvil caps the estimate at what the balance pays: "exceeds allowance"
        if "insufficient funds" in text or "exceeds allowance" in text:
            raise InsufficientFunds(_poor(provider, str(account.address), None)) from None
        raise
    return txn


def _poor(provider, address: str, needed: int | None) -> str:
    balance = int(provider.get_balance(address))
    need = f"; this transaction may cost up to {needed / 1e18:.6g}" if needed is not None else ""
    return (f"{address} has {balance / 1e18:.6g} ether on {provider.network_choice}{need}: fund the account "
            "(a faucet on a public testnet) and run again")


def _check_funds(provider, address: str, gas: int, max_fee: int, value: int) -> None:
    needed = int(gas) * int(max_fee) + int(value)
    if int(provider.get_balance(address)) < needed:
        raise InsufficientFunds(_poor(provider, address, needed))


def _broadcast(web3, raw: bytes, address: str) -> None:
    try:
        web3.eth.send_raw_transaction(raw)
    except Exception as exc:  # noqa: BLE001 - read the node's answer
        text = _message(exc)
        if any(s in text for s in ("already known", "already imported", "nonce too low", "underpriced",
                                   "nonce has already been used", "less than block base fee", "fee cap")):
            # one of ours holds the nonce (pooled or mined), or the fee was too low: the wait loop
            # finds the receipt or replaces it with higher fees
            log.warning("the node refused a transaction (%s); waiting, then replacing it", str(exc)[:120])
            return
        if "insufficient funds" in text:
            raise InsufficientFunds(_poor(chain.provider, address, None)) from None
        raise


def _known(web3, tx_hash: str) -> bool:
    try:
        return web3.eth.get_transaction(tx_hash) is not None
    except Exception:  # noqa: BLE001 - web3 raises TransactionNotFound
        return False


def _mined(web3, hashes: list[str]):
    for tx_hash in reversed(hashes):
        try:
            receipt = web3.eth.get_transaction_receipt(tx_hash)
        except Exception:  # noqa: BLE001 - TransactionNotFound: not mined (yet)
            continue
        if receipt is not None and receipt.get("blockNumber") is not None:
            return tx_hash
    return None


def _checked(provider, account, method, args, value, tx_hash: str):
    receipt = provider.get_receipt(tx_hash, timeout=30)
    if not receipt.failed:
        return receipt
    reason = f"reverted in block {receipt.block_number} (tx {tx_hash[:12]})"
    try:  # the reason, replayed on the state after that block (it may have depended on the order)
        from ape.contracts import ContractContainer

        if not isinstance(method, ContractContainer):
            method.call(*args, sender=account, **({"value": value} if value else {}))
    except ContractLogicError as exc:
        raise exc from None
    except Exception:  # noqa: BLE001 - the reason is a courtesy
        pass
    raise ContractLogicError(reason, txn=receipt)
