"""fl/attacks/catalogue.py: known inputs -> known outputs for every attack, the papers'
formulas, the registry's contract, determinism."""

import inspect
import math
from statistics import NormalDist

import pytest
import torch

from fl.attacks.catalogue import (
    ATTACKS,
    TRIGGER_MARGIN,
    TRIGGER_SIZE,
    against_evidence,
    alie,
    alie_z,
    apply_update,
    attack_success_rate,
    backdoor,
    colluding_bloc,
    flatten_update,
    free_rider,
    gaussian,
    ipm,
    label_flip,
    lazy,
    min_max,
    run_attack,
    scaling,
    sign_flip,
    trigger_pattern,
    triggered,
)

from fl.learning.tasks import attack_labels


def vec(*values):
    return torch.tensor(values, dtype=torch.float32)


GLOBAL = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5])}


# ----------------------------------------------------------------------------------------
# Flat updates


def test_flatten_update__state_minus_global__sorted_key_order():
    # Prepare: keys sorted: b then w
    state = {"w": torch.tensor([[2.0, 2.0], [3.0, 0.0]]), "b": torch.tensor([1.5])}

    # Execute
    actual = flatten_update(state, GLOBAL)

    # Assert
    assert actual.tolist() == [1.0, 1.0, 0.0, 0.0, -4.0]


def test_apply_update__inverse_of_flatten__same_state():
    state = {"w": torch.tensor([[2.0, -2.0], [0.25, 0.0]]), "b": torch.tensor([1.5])}

    actual = apply_update(GLOBAL, flatten_update(state, GLOBAL))

    assert all(torch.equal(actual[k], state[k]) for k in state)


def test_apply_update__wrong_length__value_error():
    with pytest.raises(ValueError, match="flat vector of 5 values"):
        apply_update(GLOBAL, vec(1, 2))


# ----------------------------------------------------------------------------------------
# Proposer attacks on the update


def test_sign_flip__own_update__negated_and_scaled():
    assert sign_flip(vec(1, -2, 3)).tolist() == [-1.0, 2.0, -3.0]
    assert sign_flip(vec(1, -2, 3), scale=2.0).tolist() == [-2.0, 4.0, -6.0]


def test_gaussian__same_generator_seed__same_vector_and_the_blades_moments():
    # Execute
    first = gaussian(200_000, torch.Generator().manual_seed(5))
    again = gaussian(200_000, torch.Generator().manual_seed(5))
    other = gaussian(200_000, torch.Generator().manual_seed(6))

    # Assert: deterministic; N(0.1, 0.1^2) within 5 standard errors
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert abs(float(first.mean()) - 0.1) < 5 * 0.1 / math.sqrt(200_000)
    assert abs(float(first.std()) - 0.1) < 0.001
    assert first.dtype == torch.float32 and first.shape == (200_000,)


def test_scaling__default_boost__number_of_proposers():
    # Bagdasaryan et al.: gamma = n / eta with eta = 1
    assert scaling(vec(1, -2), num_proposers=5).tolist() == [5.0, -10.0]
    assert scaling(vec(1, -2), num_proposers=5, boost=3.0).tolist() == [3.0, -6.0]


def test_scaling__boosted_update_in_fedavg__replaces_the_global_model():
    # Prepare: 3 equal-weight proposals, 2 honest zero updates, the attacker's target X - G
    target = vec(4, -8)
    proposals = [torch.zeros(2), torch.zeros(2), scaling(target, num_proposers=3)]

    # Execute
    mean_update = sum(proposals) / 3

    # Assert
    assert torch.equal(mean_update, target)


@pytest.mark.parametrize(("n", "f", "quantile"), [(10, 3, 0.7), (50, 12, 36 / 50), (10, 5, 0.9), (7, 0, 3 / 7)])
def test_alie_z__papers_formula__normal_quantile_of_n_minus_s_over_n(n, f, quantile):
    # s = floor(n/2 + 1) - f; z = Phi^-1((n - s)/n): (10, 3) s = 3; (50, 12) s = 14; (10, 5) s = 1; (7, 0) s = 4
    expected = NormalDist().inv_cdf(quantile)

    actual = alie_z(n, f)

    assert actual == pytest.approx(expected, abs=1e-9)


def test_alie_z__attackers_hold_a_majority__value_error():
    with pytest.raises(ValueError, match="not a probability"):
        alie_z(10, 6)


def test_alie__two_honest_updates__mean_minus_z_sample_std():
    # Prepare: mean (1, 2), Bessel std (sqrt 2, 2 sqrt 2)
    honest = [vec(0, 0), vec(2, 4)]

    # Execute
    actual = alie(honest, num_proposers=10, num_malicious=3, z=1.0)
    default_z = alie(honest, num_proposers=10, num_malicious=3)

    # Assert
    assert actual.tolist() == pytest.approx([1 - math.sqrt(2), 2 - 2 * math.sqrt(2)], abs=1e-6)
    z = NormalDist().inv_cdf(0.7)
    assert default_z.tolist() == pytest.approx([1 - z * math.sqrt(2), 2 - z * 2 * math.sqrt(2)], abs=1e-6)


def test_alie__one_honest_update__value_error():
    with pytest.raises(ValueError, match="alie needs at least 2 honest updates"):
        alie([vec(1.0)], num_proposers=3, num_malicious=1)


def test_ipm__honest_mean__negated_times_epsilon():
    assert ipm([vec(1, 2), vec(3, 4)], epsilon=0.5).tolist() == [-1.0, -1.5]
    assert ipm([vec(1, 2), vec(3, 4)]).tolist() == pytest.approx([-0.2, -0.3])


def test_min_max__two_points_on_a_line__largest_gamma_keeps_within_the_honest_diameter():
    # Prepare: honest 0 and 2: mu = 1, p = -sqrt 2, diameter 2; mu + g p must stay in
    # [0, 2] -> g* = 1 / sqrt 2 -> the update is 0
    honest = [vec(0.0), vec(2.0)]

    # Execute
    actual = min_max(honest)

    # Assert
    assert actual.tolist() == pytest.approx([0.0], abs=1e-4)


@pytest.mark.parametrize("perturbation", ["std", "unit", "sign"])
def test_min_max__random_honest__on_the_boundary_of_the_constraint(perturbation):
    # Prepare
    generator = torch.Generator().manual_seed(1)
    honest = [torch.randn(20, generator=generator) + 1.0 for _ in range(6)]
    X = torch.stack(honest).double()
    diameter = float(torch.cdist(X, X).max())

    # Execute
    actual = min_max(honest, perturbation=perturbation).double()

    # Assert: inside (up to float32 rounding) and no farther than the tolerance from the edge
    farthest = float(torch.linalg.vector_norm(X - actual, dim=1).max())
    assert farthest <= diameter + 1e-4
    assert farthest >= diameter - 1e-3
    assert float(torch.linalg.vector_norm(actual - X.mean(0))) > 0.1


def test_min_max__unknown_perturbation__value_error():
    with pytest.raises(ValueError, match="perturbation must be"):
        min_max([vec(0.0), vec(1.0)], perturbation="zero")


def test_free_rider__zero_update__resubmits_the_global_model_bit_exactly():
    update = free_rider(5)

    actual = apply_update(GLOBAL, update)

    assert update.tolist() == [0.0] * 5
    assert all(torch.equal(actual[k], GLOBAL[k]) for k in GLOBAL)


# ----------------------------------------------------------------------------------------
# Proposer attacks on the data


def test_label_flip__known_labels__the_papers_wrong_labels():
    assert label_flip(torch.tensor([0.0, 1.0, 1.0])).tolist() == [1.0, 0.0, 0.0]
    assert label_flip(torch.tensor([0, 3, 9]), num_classes=10).tolist() == [9, 6, 0]
    assert label_flip(torch.tensor([[1.0, 0.0], [0.0, 0.0]])).tolist() == [[0.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize("case", ["binary", "multilabel", "classes"])
def test_label_flip__random_labels__identical_to_the_simulations_attack_labels(case):
    # Keeps the existing runs unchanged: same values and dtype as fl's attack
    generator = torch.Generator().manual_seed(2)
    if case == "binary":
        y, classes = torch.randint(0, 2, (50,), generator=generator).float(), None
    elif case == "multilabel":
        y, classes = torch.randint(0, 2, (50, 10), generator=generator).float(), None
    else:
        y, classes = torch.randint(0, 10, (50,), generator=generator), 10

    actual = label_flip(y, classes)
    expected = attack_labels(y, classes)

    assert actual.dtype == expected.dtype and torch.equal(actual, expected)


def test_label_flip__class_ids_without_num_classes__value_error():
    with pytest.raises(ValueError, match="num_classes"):
        label_flip(torch.tensor([1, 2]))


def test_trigger_pattern__checkerboard():
    assert trigger_pattern(3).tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]


def test_triggered__stamps_the_bottom_right_corner__leaves_the_rest_and_the_input():
    # Prepare
    images = torch.full((2, 1, 28, 28), 0.5)
    top = 28 - TRIGGER_MARGIN - TRIGGER_SIZE

    # Execute
    actual = triggered(images)

    # Assert
    assert torch.equal(actual[:, :, top:top + TRIGGER_SIZE, top:top + TRIGGER_SIZE],
                       trigger_pattern().expand(2, 1, TRIGGER_SIZE, TRIGGER_SIZE))
    assert actual[0, 0, top, top] == 1.0 and actual[0, 0, top, top + 1] == 0.0
    outside = torch.ones(28, 28, dtype=torch.bool)
    outside[top:top + TRIGGER_SIZE, top:top + TRIGGER_SIZE] = False
    assert bool((actual[:, :, outside] == 0.5).all())
    assert bool((images == 0.5).all())


def test_backdoor__half_of_the_images__triggered_and_relabelled_to_the_target():
    # Prepare
    images = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10) % 5 + 1

    # Execute
    poisoned_images, poisoned_labels = backdoor(images, labels, torch.Generator().manual_seed(3), target_class=0, fraction=0.5)
    again_images, again_labels = backdoor(images, labels, torch.Generator().manual_seed(3), target_class=0, fraction=0.5)

    # Assert
    changed = (poisoned_labels != labels).nonzero().flatten()
    assert len(changed) == 5
    assert bool((poisoned_labels[changed] == 0).all())
    assert torch.equal(poisoned_images[changed], triggered(images[changed]))
    unchanged = (poisoned_labels == labels).nonzero().flatten()
    assert torch.equal(poisoned_images[unchanged], images[unchanged])
    assert torch.equal(poisoned_images, again_images) and torch.equal(poisoned_labels, again_labels)
    assert torch.equal(labels, torch.arange(10) % 5 + 1)


def test_attack_success_rate__non_target_images_classified_as_target():
    # Prepare: target 0; the first image is of class 0 and does not count
    predictions = torch.tensor([0, 0, 1, 0])
    labels = torch.tensor([0, 1, 1, 2])

    # Execute / Assert
    assert attack_success_rate(predictions, labels, target_class=0) == pytest.approx(2 / 3)
    assert math.isnan(attack_success_rate(torch.tensor([0]), torch.tensor([0]), target_class=0))


# ----------------------------------------------------------------------------------------
# Voter attacks


def test_against_evidence__inverts_every_verdict():
    assert against_evidence([True, False, True]) == [False, True, False]


def test_colluding_bloc__accepts_exactly_the_blocs_proposals():
    assert colluding_bloc(["a", "b", "c", "a"], bloc={"a", "z"}) == [True, False, False, True]


def test_lazy__accepts_everything():
    assert lazy(3) == [True, True, True]
    assert lazy(0) == []


# ----------------------------------------------------------------------------------------
# Registry


EXPECTED_KINDS = {
    "sign_flip": "update", "gaussian": "update", "scaling": "update", "alie": "update", "ipm": "update",
    "min_max": "update", "free_rider": "update", "label_flip": "data", "backdoor": "data",
    "against_evidence": "vote", "colluding_bloc": "vote", "lazy": "vote",
}


def round_info(seed=0):
    generator = torch.Generator().manual_seed(seed)
    honest = [torch.randn(6, generator=generator) for _ in range(5)]
    return {
        "own_update": torch.randn(6, generator=generator), "honest_updates": honest, "num_proposers": 7,
        "num_malicious": 2, "dimension": 6, "generator": torch.Generator().manual_seed(seed + 1),
        "labels": torch.tensor([0, 1, 2, 3]), "num_classes": 10, "images": torch.rand(4, 1, 8, 8, generator=generator),
        "honest_verdicts": [True, False], "proposers": ["p", "q"], "bloc": {"q"}, "num_proposals": 2,
    }


def test_registry__names_and_kinds():
    assert {name: attack.kind for name, attack in ATTACKS.items()} == EXPECTED_KINDS
    assert {name for name, attack in ATTACKS.items() if attack.omniscient} == {"alie", "ipm", "min_max"}


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_registry__needs_and_defaults__match_the_functions_signature(name):
    # Prepare
    attack = ATTACKS[name]
    parameters = inspect.signature(attack.function).parameters

    # Assert: needs are the positional arguments, defaults the keyword-only ones
    positional = [p.name for p in parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = {p.name: p.default for p in parameters.values() if p.kind is p.KEYWORD_ONLY}
    assert list(attack.needs) == positional
    assert dict(attack.defaults) == keyword


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_run_attack__every_attack__deterministic_for_the_same_seed(name):
    first = run_attack(name, round_info(seed=4))
    again = run_attack(name, round_info(seed=4))

    if isinstance(first, tuple):
        assert all(torch.equal(a, b) for a, b in zip(first, again))
    elif isinstance(first, torch.Tensor):
        assert torch.equal(first, again) and first.shape == ((6,) if ATTACKS[name].kind == "update" else (4,))
    else:
        assert first == again and len(first) == 2


def test_run_attack__missing_round_information__value_error_names_it():
    with pytest.raises(ValueError, match=r"needs round information \['honest_updates'\]"):
        run_attack("ipm", {"own_update": vec(1.0)})


def test_run_attack__unknown_name_or_parameter__value_error():
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        run_attack("nope", {})
    with pytest.raises(ValueError, match="unknown \\['eps'\\]"):
        run_attack("ipm", round_info(), eps=1.0)


def test_run_attack__parameters_override_defaults():
    info = round_info()

    actual = run_attack("ipm", info, epsilon=2.0)

    assert torch.allclose(actual, -2.0 * torch.stack(info["honest_updates"]).mean(0))
