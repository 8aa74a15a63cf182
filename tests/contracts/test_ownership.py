"""Ownable entry points of the StakeRegistry and the ProposalPool: the owner's only power is the
one-time `bind`; transferring or renouncing ownership afterwards changes nothing else."""
import ape
import pytest

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture(params=["registry", "pool"])
def owned(request, registry, pool):
    return registry if request.param == "registry" else pool


def test_transfer_ownership__owner__moves_and_emits(owned, owner, outsider):
    tx = owned.transferOwnership(outsider, sender=owner)
    [event] = tx.decode_logs(owned.OwnershipTransferred)
    assert (event.previousOwner, event.newOwner) == (owner.address, outsider.address)
    assert owned.owner() == outsider.address


def test_transfer_ownership__not_owner__reverts(owned, outsider):
    with ape.reverts(owned.OwnableUnauthorizedAccount, account=outsider.address):
        owned.transferOwnership(outsider, sender=outsider)


def test_transfer_ownership__zero__reverts(owned, owner):
    with ape.reverts(owned.OwnableInvalidOwner, owner=ZERO):
        owned.transferOwnership(ZERO, sender=owner)


def test_renounce_ownership__after_bind__keeps_wiring(owned, owner, voting):
    owned.renounceOwnership(sender=owner)
    assert owned.owner() == ZERO
    assert owned.votingRound() == voting.address
    with ape.reverts(owned.OwnableUnauthorizedAccount, account=owner.address):
        owned.renounceOwnership(sender=owner)
