"""The adapter's answer to a transaction that was sent but not mined (fl.chain.await_unmined).

anvil's automine can leave a ready transaction unmined when many senders race
(foundry-rs/foundry#10122); Ape then gives up after its acceptance timeout. Only a JSON-RPC
node can hold a sent transaction unmined, so this runs in the anvil pass of the suite."""
import pytest
from ape.exceptions import TransactionNotFoundError

from fl.chain.errors import await_unmined


@pytest.fixture
def node_holding_transactions(chain):
    provider = chain.provider
    if provider.name != "foundry":
        pytest.skip("needs anvil (the suite's `--network ethereum:local:foundry` pass)")
    provider.make_request("evm_setAutomine", [False])
    yield provider
    provider.make_request("evm_setAutomine", [True])


def test_await_unmined__transaction_left_pending__mined_and_its_receipt_returned(node_holding_transactions, accounts, chain):
    provider = node_holding_transactions
    sender, recipient = accounts[0], accounts[1]
    txn_hash = provider.make_request("eth_sendTransaction", [{"from": sender.address, "to": recipient.address, "value": "0x1"}])
    height = chain.blocks.height
    exc = TransactionNotFoundError(txn_hash, f"Transaction '{txn_hash}' is not in the chain after 20 seconds")

    receipt = await_unmined(exc, timeout=5)

    assert receipt.txn_hash == txn_hash
    assert receipt.status == 1
    assert receipt.block_number == height + 1
