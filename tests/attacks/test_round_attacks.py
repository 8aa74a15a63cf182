"""Each attack reaches the proposal or verdict it should: ``make_round_proposals`` with a fake
training function of known output, ``voter_verdicts``/``decide_vote`` on known verdicts, and one
tiny round of the real loop per proposer attack (the proposal the ledger receives)."""

import math
import tempfile

import pytest
import torch

from fl.attacks import catalogue
from fl.attacks.behaviours import (
    HONEST,
    PROPOSER_ATTACKS,
    Behaviour,
    Proposer,
    attack_seed,
    behaviour_for,
    decide_vote,
    make_round_proposals,
    voter_verdicts,
)
from fl.learning.data import Split

GLOBAL = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([[0.5, -0.5]])}
DIMENSION = 5


def fake_train(model, split, epochs, lr, seed, flip_labels=False, proximal_to=None, proximal_mu=0.0):
    """A known 'training': global + (seed, seed+1, ...) / 10, negated when labels are flipped."""
    sign = -1.0 if flip_labels else 1.0
    steps = (torch.arange(DIMENSION, dtype=torch.float32) + seed) / 10 * sign
    return catalogue.apply_update(GLOBAL, steps)


class StateModel(torch.nn.Module):
    """A template whose state has GLOBAL's keys (load_state copies the global model into it)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(3))
        self.b = torch.nn.Parameter(torch.zeros(1, 2))


def proposer(seed: int, attack: str | None = None, split: Split | None = None) -> Proposer:
    behaviour = HONEST if attack is None else behaviour_for(True, "proposer", attack)
    return Proposer(split or Split(torch.zeros(4, 1), torch.zeros(4)), behaviour, seed)


def flat(state):
    return catalogue.flatten_update(state, GLOBAL)


def run(proposers):
    return make_round_proposals(GLOBAL, proposers, epochs=1, lr=0.1, num_features=1,
                                template=StateModel(), train=fake_train)


def honest_step(seed: int) -> torch.Tensor:
    return (torch.arange(DIMENSION, dtype=torch.float32) + seed) / 10


def test_round__honest_proposers__their_own_training():
    updates = run([proposer(1), proposer(2)])

    assert torch.allclose(flat(updates[0]), honest_step(1), atol=1e-6)
    assert torch.allclose(flat(updates[1]), honest_step(2), atol=1e-6)


def test_round__label_flip__the_flipped_training():
    updates = run([proposer(1), proposer(2), proposer(3, "label_flip")])

    assert torch.allclose(flat(updates[2]), -honest_step(3), atol=1e-6)


def test_round__sign_flip__negated_honest_training():
    updates = run([proposer(1), proposer(2), proposer(3, "sign_flip")])

    assert torch.allclose(flat(updates[2]), -honest_step(3), atol=1e-6)
    assert torch.allclose(flat(updates[0]), honest_step(1), atol=1e-6)


def test_round__scaling__flipped_training_boosted_by_the_number_of_proposers():
    updates = run([proposer(1), proposer(2), proposer(3, "scaling")])

    assert torch.allclose(flat(updates[2]), -3 * honest_step(3))


def test_round__gaussian__the_seeded_noise():
    updates = run([proposer(1), proposer(2), proposer(7, "gaussian")])

    expected = catalogue.gaussian(DIMENSION, torch.Generator().manual_seed(attack_seed(7)))
    assert torch.allclose(flat(updates[2]), expected)


def test_round__free_rider__the_global_model():
    updates = run([proposer(1), proposer(2, "free_rider")])

    assert all(torch.equal(updates[1][k], GLOBAL[k]) for k in GLOBAL)


def test_round__ipm__minus_epsilon_times_the_honest_mean():
    updates = run([proposer(1), proposer(3), proposer(9, "ipm")])

    expected = -catalogue.DEFAULT_IPM_EPSILON * (honest_step(1) + honest_step(3)) / 2
    assert torch.allclose(flat(updates[2]), expected, atol=1e-6)


def test_round__alie__mean_minus_z_sigma_of_the_honest_updates_with_f_of_the_round():
    proposers = [proposer(1), proposer(2), proposer(4), proposer(5, "alie"), proposer(6, "alie")]

    updates = run(proposers)

    honest = torch.stack([honest_step(s) for s in (1, 2, 4)])
    z = catalogue.alie_z(5, 2)
    expected = honest.mean(0) - z * honest.std(0, correction=1)
    assert torch.allclose(flat(updates[3]), expected, atol=1e-5)
    assert torch.equal(flat(updates[3]), flat(updates[4]))  # the colluders submit one vector


def test_round__alie_with_one_honest_proposer__the_attackers_own_trainings_stand_in():
    updates = run([proposer(1), proposer(2, "alie"), proposer(3, "alie")])

    stand_in = torch.stack([honest_step(s) for s in (1, 2, 3)])
    z = catalogue.alie_z(3, 1)  # f = 2 of 3 capped at n // 2
    assert torch.allclose(flat(updates[1]), stand_in.mean(0) - z * stand_in.std(0, correction=1), atol=1e-5)


def test_round__backdoor__trains_on_half_triggered_rows_relabelled_to_the_target():
    images = torch.full((6, 1, 8, 8), 0.5)
    labels = torch.tensor([3, 4, 5, 6, 7, 8])
    seen = {}

    def recording_train(model, split, **kwargs):
        seen["split"] = split
        return fake_train(model, split, **kwargs)

    make_round_proposals(GLOBAL, [proposer(2, "backdoor", Split(images, labels))], epochs=1, lr=0.1,
                         num_features=1, template=StateModel(), train=recording_train)

    split = seen["split"]
    stamped = [i for i in range(6) if not torch.equal(split.X[i], images[i])]
    assert len(stamped) == 3
    assert all(int(split.y[i]) == catalogue.DEFAULT_BACKDOOR_TARGET for i in stamped)
    assert all(int(split.y[i]) == int(labels[i]) for i in range(6) if i not in stamped)
    assert torch.equal(split.X[stamped[0]], catalogue.triggered(images[:1])[0])


def test_round__backdoor_on_tabular_rows__clear_error():
    with pytest.raises(ValueError, match="image task"):
        run([proposer(1), proposer(2, "backdoor")])


@pytest.mark.parametrize(
    ("voter_attack", "expected"),
    [("against_evidence", [False, True, False]), ("colluding_bloc", [False, True, True]), ("lazy", [True] * 3)],
)
def test_voter_verdicts__each_voter_attack(voter_attack, expected):
    behaviour = behaviour_for(True, "voter", voter_attack=voter_attack, bloc={"0xB", "0xC"})

    verdicts = voter_verdicts([True, False, True], behaviour, ["0xA", "0xB", "0xC"])

    assert verdicts == expected


def test_voter_verdicts__honest_or_proposer_only__casts_its_review():
    proposer_only = behaviour_for(True, "proposer", voter_attack="lazy")

    assert voter_verdicts([True, False], HONEST, ["0xA", "0xB"]) == [True, False]
    assert voter_verdicts([True, False], proposer_only, ["0xA", "0xB"]) == [True, False]


def test_voter_verdicts__length_mismatch__raises():
    with pytest.raises(ValueError, match="verdicts"):
        voter_verdicts([True], HONEST, ["0xA", "0xB"])


def test_decide_vote__lazy_accepts_a_bad_aggregate_bloc_accepts_iff_a_member_proposed():
    lazy = behaviour_for(True, "voter", voter_attack="lazy")
    bloc = behaviour_for(True, "voter", voter_attack="colluding_bloc", bloc={"0xB"})

    assert decide_vote(0.1, 0.9, 0.01, lazy, ["0xA"]) is True
    assert decide_vote(0.1, 0.9, 0.01, bloc, ["0xA", "0xB"]) is True
    assert decide_vote(0.9, 0.1, 0.01, bloc, ["0xA"]) is False


def test_behaviour_for__bloc_only_for_colluders():
    assert behaviour_for(True, "both", voter_attack="lazy", bloc={"0xA"}).bloc == frozenset()
    assert behaviour_for(True, "both", voter_attack="colluding_bloc", bloc={"0xA"}).bloc == {"0xA"}
    with pytest.raises(ValueError, match="proposer attack"):
        behaviour_for(True, "both", proposer_attack="sybil")


# ----------------------------------------------------------------------------------------
# One round of the real loop: the proposal the ledger receives


@pytest.fixture(scope="module")
def lending():
    from fl.simulation.rounds import SimulationConfig, load_federated_data

    # seed 3: the first round draws 3 malicious and 2 honest proposers (IPM needs two honest ones)
    config = SimulationConfig(clients=10, rounds=1, malicious_ratio=0.5, proposer_fraction=0.5, seed=3)
    return config, load_federated_data(config)


def first_round(config, data):
    from fl.learning.store import UpdateStore, deserialize
    from fl.simulation.baselines import AcceptAllLedger, chainless_addresses, initial_model_hash
    from fl.simulation.rounds import make_clients, run_protocol

    store = UpdateStore(tempfile.mkdtemp())
    addresses = chainless_addresses(config.clients)
    clients = make_clients(data, addresses, config)
    ledger = AcceptAllLedger(addresses, config.proposer_fraction, config.seed, initial_model_hash(config, data),
                             store=store)
    records, _ = run_protocol(config, data, clients, ledger, store, opener=None)
    malicious = {c.address for c in clients if c.malicious}
    proposals = [(p.proposer in malicious, deserialize(store.get(p.update_hash))) for p in ledger.proposals_of(1)]
    return records, proposals


@pytest.mark.parametrize("attack", ["free_rider", "ipm"])
def test_loop__proposer_attack__reaches_the_ledger(lending, attack):
    from dataclasses import replace

    from fl.learning.tasks import task_of

    config, data = lending
    config = replace(config, attack=attack)
    initial = task_of(config).make_model(data, config.seed).state_dict()

    records, proposals = first_round(config, data)

    bad = [state for is_malicious, state in proposals if is_malicious]
    good = [state for is_malicious, state in proposals if not is_malicious]
    assert bad and len(good) >= 2 and records[0].malicious_proposers == len(bad)
    if attack == "free_rider":
        assert all(torch.equal(s[k], initial[k]) for s in bad for k in initial)
    else:
        honest_mean = torch.stack([catalogue.flatten_update(s, initial) for s in good]).mean(0)
        assert torch.allclose(catalogue.flatten_update(bad[0], initial), -0.1 * honest_mean, atol=1e-6)


def test_loop__every_lending_attack_runs_and_label_flip_is_the_default(lending):
    from dataclasses import replace

    from fl.simulation.rounds import SimulationConfig

    config, data = lending
    assert SimulationConfig().attack == "label_flip" and SimulationConfig().malicious_roles == "both"
    for attack in PROPOSER_ATTACKS:
        if attack == "backdoor":
            with pytest.raises(ValueError, match="image task"):
                replace(config, attack=attack).validate()
            continue
        records, _ = first_round(replace(config, attack=attack), data)
        assert len(records) == 1 and math.isnan(records[0].attack_success_rate)


def test_loop__backdoor_on_fmnist__attack_success_rate_recorded():
    from fl.simulation.rounds import SimulationConfig, load_federated_data

    config = SimulationConfig(task="fmnist", clients=6, rounds=1, malicious_ratio=0.5, proposer_fraction=0.5,
                              samples_per_client=40, attack="backdoor", seed=2)
    config.validate()

    records, _ = first_round(config, load_federated_data(config))

    assert 0.0 <= records[0].attack_success_rate <= 1.0
