"""fl/defences/voter_review.py: the batched own updates equal the proposers' local training."""
import pytest
import torch

from fl.defences.voter_review import RULES, full_batch_adam, rule_named
from fl.defences.review import POLICIES, flatten_parameters
from fl.learning.model import init_model, train_local


def test_full_batch_adam__equals_train_local_per_client(create_separable_split):
    model = init_model(8, seed=0)
    names = [n for n, _ in model.named_parameters()]
    start = flatten_parameters(model.state_dict(), names)
    splits = [create_separable_split(40, seed=s) for s in range(3)] + [create_separable_split(25, seed=9)]

    after_two, after_five = full_batch_adam(model, start, splits, epochs=5, lr=1e-3, keep=2)

    for i, split in enumerate(splits):
        for epochs, got in ((2, after_two[i]), (5, after_five[i])):
            expected = flatten_parameters(train_local(model, split, epochs=epochs, lr=1e-3, seed=i), names)
            assert torch.allclose(got, expected, atol=1e-5), (i, epochs)
        assert not torch.allclose(after_five[i], start)


def test_rules__name_known_policies_and_unknown_rule_is_one_line_error():
    assert all(rule.policy in POLICIES for rule in RULES.values())
    assert {"aggregate", "cosine"} <= set(RULES)
    with pytest.raises(ValueError, match="review rule must be one of"):
        rule_named("nope")


def test_cosine_floor_t0__rejects_a_slightly_opposed_update_that_cosine_floor_accepts():
    """Fashion-MNIST's label-flipped updates sit at cos -0.06 to -0.10 with a voter's own update
    (docs/REVIEW_STUDY.md, "Fashion-MNIST: the threshold"): above -0.1, below FLTrust's 0."""
    from fl.defences.review import ReviewInputs, review

    own = torch.tensor([1.0, 0.0, 0.0])
    proposals = torch.tensor([[-0.05, 1.0, 0.0], [0.05, 1.0, 0.0], [1.0, 0.0, 0.0]])  # cos -0.05, +0.05, 1
    inputs = ReviewInputs(proposal_count=3, proposal_updates=proposals, own_update=own, reference_norm=1.0)

    def verdicts(name):
        rule = rule_named(name)
        return review(rule.policy, inputs, **rule.parameters)

    assert verdicts("cosine_floor") == [True, True, True]
    assert verdicts("cosine_floor_t0") == [False, True, True]
    assert rule_named("cosine_floor_t0").own_epochs == rule_named("cosine_floor").own_epochs


def test_cosine_floor_rel__rejects_an_update_far_below_the_rounds_median_that_t0_accepts():
    """A backdoored update keeps a small positive cosine with a voter's own update, well below the
    honest proposals' (docs/REVIEW_STUDY.md, "Fashion-MNIST: the backdoor")."""
    from fl.defences.review import ReviewInputs, review

    own = torch.tensor([1.0, 0.0])
    # cosines 0.3, 0.25, 0.05 (median 0.25, half: 0.125) and a zero update (norm floor)
    proposals = torch.tensor([[0.3, 0.95], [0.25, 0.97], [0.05, 1.0], [0.0, 0.0]])
    inputs = ReviewInputs(proposal_count=4, proposal_updates=proposals, own_update=own, reference_norm=1.0)

    def verdicts(name):
        rule = rule_named(name)
        return review(rule.policy, inputs, **rule.parameters)

    assert verdicts("cosine_floor_t0") == [True, True, True, False]
    assert verdicts("cosine_floor_rel") == [True, True, False, False]
    assert rule_named("cosine_floor_rel").own_epochs == rule_named("cosine_floor_t0").own_epochs


@pytest.mark.parametrize(("task", "rule"), [("lending", "cosine_floor"), ("fmnist", "cosine_floor_rel"),
                                            ("chestxray", "cosine_floor_rel")])
def test_recommended_rule__per_task(task, rule):
    from fl.defences.voter_review import recommended_rule

    assert recommended_rule(task) == rule
