"""The signed-batch transaction path: many protocol calls, each signed locally with its own
client's key, moved to the chain in as few round trips as the chain allows.

Ape's per-transaction path does a lot of Python work for every call (about 30-100 tx/s here);
this path does only what a transaction needs: sign (EIP-1559, with coincurve), send, mine, read
the receipt, check its status, and decode its logs from the contracts' ABIs. Nothing is
weakened: every transaction is still signed with the private key of the account it comes from,
and a reverted transaction raises `TransactionFailed` with the contract's revert reason
(replayed with ``eth_call``).

Plain Python (no Ape): `fl.chain.ledger` builds these objects from Ape's provider and contract types.
Transports:
- `JsonRpcTransport`: any node with ``evm_setAutomine``/``evm_mine`` (anvil): automine off,
  one JSON-RPC batch of ``eth_sendRawTransaction``, one ``evm_mine``, one batch of receipts.
- `EthTesterTransport`: Ape's embedded py-evm chain, fed the same signed bytes in process.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

import coincurve
from eth_abi import decode as abi_decode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

TIP = 10**9  # priority fee per gas (wei): what Ape's own path pays on these chains


class TransactionFailed(RuntimeError):
    """A transaction reverted, ran out of gas, or the chain refused it."""


# ---------------------------------------------------------------------- calls and receipts
@dataclass(frozen=True)
class Call:
    """One transaction to send: `sender` signs it with `key` (its own private key). `gas` 0
    means "the block's gas budget" (for a call alone in its block whose cost grows with the clients)."""

    sender: str
    key: bytes
    to: str
    data: bytes
    gas: int
    value: int = 0
    name: str = ""


@dataclass
class Receipt:
    tx_hash: str  # 0x-prefixed hex
    block: int
    status: int
    gas_used: int
    logs: list[dict] = field(default_factory=list)  # {"address": lowercase 0x hex, "topics": [bytes], "data": bytes}


# ---------------------------------------------------------------------- signing
_KEYS: dict[bytes, coincurve.PrivateKey] = {}


def sign_dynamic_fee_tx(
    key: bytes, chain_id: int, nonce: int, max_priority_fee: int, max_fee: int, gas: int, to: str, value: int, data: bytes
) -> bytes:
    """The raw bytes of an EIP-1559 (type 2) transaction signed with `key`.

    Byte-identical to ``eth_account.Account.sign_transaction`` (tests check it), about six
    times faster: the fields are RLP-encoded once and signed with libsecp256k1 (low-s)."""
    signer = _KEYS.get(key)
    if signer is None:
        signer = _KEYS[key] = coincurve.PrivateKey(key)
    fields = b"".join((
        _rlp_int(chain_id), _rlp_int(nonce), _rlp_int(max_priority_fee), _rlp_int(max_fee), _rlp_int(gas),
        _rlp_bytes(bytes.fromhex(to[2:])), _rlp_int(value), _rlp_bytes(data), b"\xc0",  # empty access list
    ))
    signature = signer.sign_recoverable(keccak(b"\x02" + _rlp_length(len(fields), 0xC0) + fields), hasher=None)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    signed = fields + _rlp_int(signature[64]) + _rlp_int(r) + _rlp_int(s)
    return b"\x02" + _rlp_length(len(signed), 0xC0) + signed


# RLP of the few shapes a transaction needs (pyrlp infers types per item: 4x slower here)
def _rlp_length(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes((offset + length,))
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((offset + 55 + len(encoded),)) + encoded


def _rlp_bytes(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _rlp_length(len(value), 0x80) + value


def _rlp_int(value: int) -> bytes:
    return _rlp_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def tx_hash_of(raw: bytes) -> str:
    return "0x" + keccak(raw).hex()


# ---------------------------------------------------------------------- ABI decoding
def _canonical_type(item: dict) -> str:
    kind = item["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in item["components"]) + ")" + kind[len("tuple"):]
    return kind


def _plain(kind: str, value):
    """Decoded ABI values in the types Ape's decoder gives (checksummed addresses)."""
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith("address["):
        return [to_checksum_address(v) for v in value]
    return value


_CHECKSUMS: dict[bytes, str] = {}


def _address_word(word: bytes) -> str:
    raw = bytes(word[12:32])
    address = _CHECKSUMS.get(raw)
    if address is None:
        address = _CHECKSUMS[raw] = to_checksum_address(raw)
    return address


def _uint_word(word: bytes) -> int:
    return int.from_bytes(word, "big")


def _int_word(word: bytes) -> int:
    return int.from_bytes(word, "big", signed=True)


# ABI words decoded by slicing, as eth_abi decodes them (Ape's types: checksummed str, int, bool, bytes)
_WORD_DECODERS: dict[str, Callable[[bytes], object]] = {
    "address": _address_word,
    "bool": lambda word: word[31] != 0,
    "bytes32": bytes,
    **{f"uint{n}": _uint_word for n in range(8, 257, 8)},
    **{f"int{n}": _int_word for n in range(8, 257, 8)},
}


class EventDecoder:
    """Decodes raw logs with the events of the contracts at known addresses (as Ape's
    ``receipt.events`` does): returns (event name, {argument: value}) per log."""

    def __init__(self, contracts: Iterable[tuple[str, list[dict]]]):
        self._events: dict[tuple[str, bytes], tuple[str, list[dict]]] = {}
        for address, abi in contracts:
            for item in abi:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                signature = f"{item['name']}({','.join(_canonical_type(i) for i in item['inputs'])})"
                self._events[(address.lower(), keccak(signature.encode()))] = (item["name"], item["inputs"])

    def decode(self, log: dict) -> tuple[str, dict] | None:
        if not log["topics"]:
            return None
        known = self._events.get((log["address"].lower(), log["topics"][0]))
        if known is None:
            return None
        name, inputs = known
        topics = iter(log["topics"][1:])
        data_inputs = [i for i in inputs if not i.get("indexed")]
        data_kinds = [_canonical_type(i) for i in data_inputs]
        if all(k in _WORD_DECODERS for k in data_kinds):  # static words: slice, no eth_abi (10x faster)
            data = log["data"]
            data_values = iter(_WORD_DECODERS[k](data[32 * n:32 * n + 32]) for n, k in enumerate(data_kinds))
        else:
            data_values = iter(_plain(k, v) for k, v in zip(data_kinds, abi_decode(data_kinds, log["data"])))
        args = {}
        for item in inputs:
            kind = _canonical_type(item)
            if item.get("indexed"):
                topic = next(topics)
                if kind in _WORD_DECODERS:
                    args[item["name"]] = _WORD_DECODERS[kind](topic)
                else:  # an indexed dynamic value is stored as its hash
                    dynamic = kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("(")
                    args[item["name"]] = topic if dynamic else _plain(kind, abi_decode([kind], topic)[0])
            else:
                args[item["name"]] = next(data_values)
        return name, args


class ErrorDecoder:
    """Names a revert: custom errors of the given ABIs, ``Error(string)`` and ``Panic(uint256)``."""

    def __init__(self, abis: Iterable[list[dict]]):
        self._errors: dict[bytes, tuple[str, list[dict]]] = {
            bytes.fromhex("08c379a0"): ("Error", [{"name": "reason", "type": "string"}]),
            bytes.fromhex("4e487b71"): ("Panic", [{"name": "code", "type": "uint256"}]),
        }
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    signature = f"{item['name']}({','.join(_canonical_type(i) for i in item['inputs'])})"
                    self._errors[keccak(signature.encode())[:4]] = (item["name"], item["inputs"])

    def describe(self, data: bytes) -> str:
        if not data:
            return "reverted without a reason"
        known = self._errors.get(bytes(data[:4]))
        if known is None:
            return f"reverted with unknown error data 0x{bytes(data).hex()}"
        name, inputs = known
        try:
            values = abi_decode([_canonical_type(i) for i in inputs], bytes(data[4:]))
        except Exception:  # malformed error data: show it raw
            return f"{name}(<undecodable 0x{bytes(data[4:]).hex()}>)"
        if name == "Error":
            return str(values[0])
        shown = ", ".join(
            f"{i['name'] or f'arg{n}'}={_shown(_plain(_canonical_type(i), v))}" for n, (i, v) in enumerate(zip(inputs, values))
        )
        return f"{name}({shown})"


def _shown(value) -> str:
    return "0x" + value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


# ---------------------------------------------------------------------- the sender
class SignedBatchSender:
    """Sends batches of calls, each signed locally with its sender's own key.

    Nonces are tracked per account (read from the chain once, then counted); a batch is split
    into blocks that fit the block gas limit; every receipt's status is checked, and a failed
    transaction is replayed with ``eth_call`` to raise `TransactionFailed` with the reason.
    """

    def __init__(self, transport, chain_id: int, errors: ErrorDecoder | None = None):
        self.transport = transport
        self.chain_id = chain_id
        self.errors = errors or ErrorDecoder([])
        self._nonces: dict[str, int] = {}
        self.sent = 0  # transactions sent (for throughput figures)
        self.seconds = 0.0  # wall time spent in send()

    def send(self, calls: Sequence[Call]) -> list[Receipt]:
        if not calls:
            return []
        started = time.perf_counter()
        try:
            base_fee, gas_limit = self.transport.block_info()
            max_fee = 2 * base_fee + TIP
            budget = gas_limit * 9 // 10
            calls = [c if c.gas else replace(c, gas=budget) for c in calls]  # 0: the block's budget
            receipts: list[Receipt] = []
            for chunk in _fit_blocks(calls, gas_limit):
                receipts.extend(self._send_block(chunk, max_fee))
            return receipts
        finally:
            self.seconds += time.perf_counter() - started

    def _send_block(self, calls: Sequence[Call], max_fee: int) -> list[Receipt]:
        raws = []
        for call in calls:
            nonce = self._nonces.get(call.sender)
            if nonce is None:
                nonce = self.transport.nonce(call.sender)
            raws.append(sign_dynamic_fee_tx(call.key, self.chain_id, nonce, TIP, max_fee, call.gas, call.to, call.value, call.data))
            self._nonces[call.sender] = nonce + 1
        try:
            receipts = self.transport.send_block(raws)
        except Exception:
            self._nonces.clear()  # resynchronise from the chain next time
            raise
        self.sent += len(raws)
        failed = [i for i, r in enumerate(receipts) if r.status != 1]
        if failed:
            i = failed[0]
            call, receipt = calls[i], receipts[i]
            reason = self.revert_reason(call, receipt)
            others = f" ({len(failed)} of {len(calls)} in the batch failed)" if len(failed) > 1 else ""
            raise TransactionFailed(
                f"{call.name or 'transaction'} from {call.sender} failed in block {receipt.block} "
                f"(tx {receipt.tx_hash}, gas used {receipt.gas_used} of {call.gas}): {reason}{others}"
            )
        return receipts

    def revert_reason(self, call: Call, receipt: Receipt) -> str:
        """Replay the call with eth_call on the state after its block and name the revert."""
        if receipt.gas_used >= call.gas:
            return f"out of gas (limit {call.gas})"
        try:
            ok, data = self.transport.replay(call.sender, call.to, call.data, call.value, call.gas)
        except Exception as exc:  # the reason is a courtesy: never hide the failure behind it
            return f"reverted (replay failed: {exc})"
        if ok:
            return "reverted (the replay on the next state succeeded, so the reason depended on the block's order)"
        return data if isinstance(data, str) else self.errors.describe(data)

    def forget_nonces(self) -> None:
        self._nonces.clear()


def _fit_blocks(calls: Sequence[Call], gas_limit: int) -> list[Sequence[Call]]:
    """Split `calls` into consecutive chunks whose gas limits sum to at most 90% of a block."""
    budget = gas_limit * 9 // 10
    chunks, start, used = [], 0, 0
    for i, call in enumerate(calls):
        if used + call.gas > budget and i > start:
            chunks.append(calls[start:i])
            start, used = i, 0
        used += call.gas
    chunks.append(calls[start:])
    return chunks


# ---------------------------------------------------------------------- transports
class JsonRpcTransport:
    """A node over HTTP JSON-RPC (anvil): each batch of transactions is mined as one block.

    Three round trips per block: [automine off, every eth_sendRawTransaction] as one JSON-RPC
    batch, [evm_mine, automine on], then [every receipt, the new head block] (the head gives
    the next batch its base fee and the clock its time). anvil may serve the calls of one batch
    concurrently, so mining never shares a batch with the sends it must include. A keep-alive
    ``http.client`` connection costs a fraction of ``requests`` per round trip.
    """

    def __init__(self, uri: str, timeout: float = 300):
        from urllib.parse import urlsplit

        self.uri = uri
        parts = urlsplit(uri)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path = parts.path or "/"
        self._timeout = timeout
        self._connection = None
        self._id = 0
        self._head: dict | None = None  # the newest block seen (base fee, gas limit, timestamp)

    # ------------------------------------------------------------ JSON-RPC
    def _post(self, body: bytes) -> bytes:
        import http.client

        for attempt in (1, 2):  # a kept-alive connection the node closed: reconnect once
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            try:
                self._connection.request("POST", self._path, body, {"Content-Type": "application/json"})
                response = self._connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise TransactionFailed(f"{self.uri} answered HTTP {response.status}: {data[:200]!r}")
            return data
        raise AssertionError("unreachable")

    def rpc(self, method: str, params: list):
        return self.batch([(method, params)])[0]

    def batch(self, requests_: Sequence[tuple[str, list]], allow_errors: bool = False) -> list:
        import json

        payload = []
        for method, params in requests_:
            self._id += 1
            payload.append({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        answer = json.loads(self._post(json.dumps(payload).encode()))
        if isinstance(answer, dict):  # a node that refuses the whole batch answers with one error
            raise TransactionFailed(f"{self.uri}: {answer.get('error', answer)}")
        by_id = {item["id"]: item for item in answer}
        results = []
        for request in payload:
            item = by_id[request["id"]]
            if "error" in item and not allow_errors:
                raise TransactionFailed(f"{request['method']}: {item['error'].get('message', item['error'])}")
            results.append(item)
        return results if allow_errors else [item.get("result") for item in results]

    # ------------------------------------------------------------ chain state
    def _latest(self, refresh: bool = False) -> dict:
        if refresh or self._head is None:
            self._head = self.rpc("eth_getBlockByNumber", ["latest", False])
        return self._head

    def block_info(self) -> tuple[int, int]:
        """(base fee, gas limit) of the newest block this transport saw (max fee = 2 x base fee + tip
        covers five full blocks of base-fee growth; a stale value fails loudly, never silently)."""
        block = self._latest()
        return int(block.get("baseFeePerGas") or "0x0", 16), int(block["gasLimit"], 16)

    def nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", [address, "pending"]), 16)

    # ------------------------------------------------------------ sending
    def send_block(self, raws: Sequence[bytes]) -> list[Receipt]:
        sends = [("eth_sendRawTransaction", ["0x" + r.hex()]) for r in raws]
        try:
            answers = self.batch([("evm_setAutomine", [False]), *sends], allow_errors=True)
            if "error" in answers[0]:
                raise TransactionFailed(f"the node refused evm_setAutomine: {answers[0]['error']}")
            refused = [(i, a["error"]) for i, a in enumerate(answers[1:]) if "error" in a]
            self.rpc("evm_mine", [])  # the accepted ones are mined even if some were refused
        finally:
            self.rpc("evm_setAutomine", [True])
        self._head = None
        if refused:
            i, error = refused[0]
            raise TransactionFailed(
                f"the node refused {len(refused)} of {len(raws)} transactions; the first ({tx_hash_of(raws[i])}): "
                f"{error.get('message', error)}"
            )
        hashes = [a["result"] for a in answers[1:]]
        *raw_receipts, self._head = self.batch(
            [("eth_getTransactionReceipt", [h]) for h in hashes] + [("eth_getBlockByNumber", ["latest", False])]
        )
        for attempt in range(100):  # left in the pool (the block was full) or not indexed yet
            missing = [i for i, r in enumerate(raw_receipts) if r is None]
            if not missing:
                break
            if attempt < 5:
                self.rpc("evm_mine", [])
            else:
                time.sleep(0.01)
            for i, r in zip(missing, self.batch([("eth_getTransactionReceipt", [hashes[i]]) for i in missing])):
                raw_receipts[i] = r
            self._head = None
        else:
            raise TransactionFailed(f"the node gave no receipt for {len(missing)} of {len(raws)} transactions")
        if any(r["blockNumber"] != raw_receipts[-1]["blockNumber"] for r in raw_receipts):
            self._head = None  # mined in more than one block: read the head again next time
        return [
            Receipt(
                tx_hash=r["transactionHash"],
                block=int(r["blockNumber"], 16),
                status=int(r["status"], 16),
                gas_used=int(r["gasUsed"], 16),
                logs=[
                    {"address": log["address"], "topics": [bytes.fromhex(t[2:]) for t in log["topics"]],
                     "data": bytes.fromhex(log["data"][2:])}
                    for log in r["logs"]
                ],
            )
            for r in raw_receipts
        ]

    def replay(self, sender: str, to: str, data: bytes, value: int, gas: int) -> tuple[bool, bytes | str]:
        tx = {"from": sender, "to": to, "data": "0x" + data.hex(), "value": hex(value), "gas": hex(gas)}
        (item,) = self.batch([("eth_call", [tx, "latest"])], allow_errors=True)
        if "error" not in item:
            return True, b""
        error = item["error"]
        revert = error.get("data")
        if isinstance(revert, dict):  # some nodes nest it
            revert = revert.get("data")
        if isinstance(revert, str) and revert.startswith("0x"):
            return False, bytes.fromhex(revert[2:])
        return False, str(error.get("message", error))

    def call(self, to: str, data: bytes) -> bytes:
        result = self.rpc("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])
        return bytes.fromhex(result[2:])

    def advance_to(self, timestamp: int) -> bool:
        """Make the next block's timestamp at least `timestamp`; False if the chain is already past it."""
        if int(self._latest()["timestamp"], 16) >= timestamp:  # a cached head is never ahead of the chain
            return False
        (answer,) = self.batch([("evm_setNextBlockTimestamp", [timestamp])], allow_errors=True)
        if "error" in answer:  # someone else mined meanwhile: look again
            if int(self._latest(refresh=True)["timestamp"], 16) >= timestamp:
                return False
            raise TransactionFailed(f"evm_setNextBlockTimestamp({timestamp}): {answer['error']}")
        return True


class EthTesterTransport:
    """Ape's embedded py-evm chain (eth-tester), fed the signed bytes in process.

    Each transaction is mined in its own block (py-evm rebuilds the pending block's tries on
    every added transaction, so bigger blocks are slower there), as Ape's own path does; the
    chain's clock moves one second per block.
    """

    def __init__(self, tester):
        self.tester = tester
        self.backend = tester.backend
        self._caller: str | None = None

    def block_info(self) -> tuple[int, int]:
        block = self.tester.get_block_by_number("pending")
        return int(block.get("base_fee_per_gas") or 0), int(block["gas_limit"])

    def nonce(self, address: str) -> int:
        return int(self.tester.get_nonce(address))

    def send_block(self, raws: Sequence[bytes]) -> list[Receipt]:
        receipts = []
        for raw in raws:
            tx_hash = self.tester.send_raw_transaction("0x" + raw.hex())  # auto-mined: one block each
            r = self.tester.get_transaction_receipt(tx_hash)  # now, while its block is the newest
            receipts.append(
                Receipt(
                    tx_hash=tx_hash if isinstance(tx_hash, str) else "0x" + bytes(tx_hash).hex(),
                    block=int(r["block_number"]),
                    status=int(r["status"]),
                    gas_used=int(r["gas_used"]),
                    logs=[
                        {"address": str(log["address"]), "topics": [_as_bytes(t) for t in log["topics"]],
                         "data": _as_bytes(log["data"])}
                        for log in r["logs"]
                    ],
                )
            )
        return receipts

    def replay(self, sender: str, to: str, data: bytes, value: int, gas: int) -> tuple[bool, bytes | str]:
        from eth_tester.exceptions import TransactionFailed as TesterFailed

        fee = self.block_info()[0] + TIP
        tx = {"from": sender, "to": to, "data": "0x" + data.hex(), "value": value, "gas": gas,
              "max_fee_per_gas": fee, "max_priority_fee_per_gas": 0}
        try:
            self.tester.call(tx, "latest")
            return True, b""
        except TesterFailed as exc:
            message = str(exc.args[0]) if exc.args else ""
            # py-evm reports a revert as the repr of its data (b'...'); Error(string) as the text
            if message[:2] in ("b'", 'b"'):
                try:
                    return False, ast.literal_eval(message)
                except (ValueError, SyntaxError):
                    pass
            return False, message

    def call(self, to: str, data: bytes) -> bytes:
        if self._caller is None:  # a funded account, so the call's gas is affordable (as Ape does)
            self._caller = self.tester.get_accounts()[0]
        fee = int(self.tester.get_block_by_number("latest").get("base_fee_per_gas") or 0)
        tx = {"from": self._caller, "to": to, "data": "0x" + data.hex(), "value": 0, "gas": 30_000_000,
              "max_fee_per_gas": fee, "max_priority_fee_per_gas": 0}
        return _as_bytes(self.tester.call(tx, "latest"))


def _as_bytes(value) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


def decode_events(decoder: EventDecoder, receipt: Receipt) -> list[tuple[str, dict]]:
    return [d for d in (decoder.decode(log) for log in receipt.logs) if d is not None]




# ---------------------------------------------------------------------- views (eth_call)
def function_selector(item: dict) -> bytes:
    return keccak(f"{item['name']}({','.join(_canonical_type(i) for i in item['inputs'])})".encode())[:4]


def encode_call(item: dict, args: Sequence) -> bytes:
    """Calldata of the ABI function `item` with `args` (addresses as 0x strings, bytes as bytes)."""
    from eth_abi import encode as abi_encode

    return function_selector(item) + abi_encode([_canonical_type(i) for i in item["inputs"]], list(args))


def decode_output(item: dict, data: bytes):
    """The return value(s) of `item`: one value, or a tuple for several (addresses checksummed)."""
    kinds = [_canonical_type(o) for o in item["outputs"]]
    values = tuple(_plain(k, v) for k, v in zip(kinds, abi_decode(kinds, data)))
    return values[0] if len(values) == 1 else values
