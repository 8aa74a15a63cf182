"""Sending a transaction to a chain that mines on its own clock (a public testnet, the rehearsal
network, anvil with --block-time): wait for blocks, never mine, and never act twice.

Ape's own path waits `transaction_acceptance_timeout` for a receipt and then gives up (or, on
ape-foundry with automine off, returns a receipt that is not in a block at all). Here:
- fees are EIP-1559 (max fee = 2 x base fee + tip), and the account's ether is checked against
  gas x max fee before anything is sent (a one-line `InsufficientFunds`);
- the nonce is read from the chain ("pending") once per action and every later attempt reuses
  it, so of all the transactions sent for one action at most one can ever be mined;
- a transaction still unmined after `stall_blocks` blocks is replaced by the same call with a
  higher tip and max fee (a full block, a base fee that rose past the max fee), or sent again
  byte for byte if the node forgot it (dropped); "already known", "nonce too low" and
  "underpriced" answers are read as "the node has one of ours / wants a higher bump";
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
    except Exception:  # noqa: BLE001 - a provider without the notion: it does not mine on demand
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
    base = _build(provider, account, method, args, value, nonce)
    base_fee = int(chain.blocks.head.base_fee or 0)
    tip = TIP
    max_fee = 2 * base_fee + tip
    _check_funds(provider, address, base.gas_limit, max_fee, value)
    sent: list[str] = []  # hashes of every attempt, all with this nonce

    def attempt(tip: int, max_fee: int):
        txn = base.model_copy(deep=True)
        txn.max_priority_fee, txn.max_fee = tip, max_fee
        signed = account.sign_transaction(txn)
        if signed is None:
            raise RuntimeError(f"{address} declined to sign (locked keyfile? set APE_ACCOUNTS_<alias>_PASSPHRASE)")
        raw = bytes(signed.serialize_transaction())
        return raw, "0x" + bytes(signed.txn_hash).hex()

    raw, tx_hash = attempt(tip, max_fee)
    _broadcast(web3, raw, address)
    sent.append(tx_hash)
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
                time.sleep(poll)  # our nonce is used: by one of ours (receipt not indexed yet) or not
                found = _mined(web3, sent)
                if found is not None:
                    return _checked(provider, account, method, args, value, found)
                raise NonceTaken(
                    f"nonce {nonce} of {address} was used by a transaction this process did not send "
                    f"(another process with the same account?); ours: {', '.join(h[:12] for h in sent)}"
                )
            if head - sent_block >= stall_blocks:
                sent_block = head
                if _known(web3, tx_hash):  # waiting in the pool: outbid ourselves
                    base_fee = int(chain.blocks.head.base_fee or 0)
                    tip = int(tip * BUMP) + 1
                    max_fee = max(int(max_fee * BUMP) + 1, 2 * base_fee + tip)
                    _check_funds(provider, address, base.gas_limit, max_fee, value)
                    raw, tx_hash = attempt(tip, max_fee)
                    log.warning("transaction %s not mined after %d blocks; replacing it (same nonce %d, tip %.2f "
                                "gwei, max fee %.2f gwei)", sent[-1][:12], stall_blocks, nonce, tip / 1e9, max_fee / 1e9)
                    sent.append(tx_hash)
                else:
                    log.warning("transaction %s is gone from the node; sending it again (same nonce %d)",
                                tx_hash[:12], nonce)
                _broadcast(web3, raw, address)
        time.sleep(poll)
    raise StuckTransaction(f"none of the transactions for nonce {nonce} of {address} was mined in {timeout:.0f} s "
                       f"({', '.join(h[:12] for h in sent)}); they may still be: rerun to resume")


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
        if "insufficient funds" in _message(exc):
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
        if "already known" in text or "already imported" in text or "nonce too low" in text \
                or "underpriced" in text or "nonce has already been used" in text:
            return  # one of ours holds the nonce (pooled or mined): the wait loop finds out which
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
