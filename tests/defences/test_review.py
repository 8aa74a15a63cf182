"""fl/defences/review.py: known inputs -> known verdicts, and the batched scoring helpers."""

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from fl.defences import review as rv
from fl.defences.review import ReviewInputs, review


def losses_inputs(proposal_rows, global_row, **extra):
    proposal = torch.tensor(proposal_rows, dtype=torch.float32)
    return ReviewInputs(
        proposal_count=proposal.shape[0], proposal_losses=proposal,
        global_losses=torch.tensor(global_row, dtype=torch.float32), **extra,
    )


# ------------------------------------------------------------------ the paper's uniform ballot


def test_aggregate__aggregate_within_epsilon__accepts_every_proposal():
    inputs = ReviewInputs(proposal_count=3, aggregate_score=0.90, global_score=0.905)
    assert review("aggregate", inputs, epsilon=0.01) == [True, True, True]


def test_aggregate__aggregate_worse_than_epsilon__rejects_every_proposal():
    inputs = ReviewInputs(proposal_count=2, aggregate_score=0.80, global_score=0.90)
    assert review("aggregate", inputs, epsilon=0.01) == [False, False]


def test_aggregate__missing_scores__one_line_value_error():
    with pytest.raises(ValueError, match="aggregate_score, global_score"):
        review("aggregate", ReviewInputs(proposal_count=2))


# ------------------------------------------------------------------ loss tests


def test_paired_excess__hand_computed_mean_and_standard_error():
    # differences [1, 3]: mean 2, sample std sqrt(2), SE sqrt(2)/sqrt(2) = 1
    mean, se = rv.paired_excess(torch.tensor([[2.0, 4.0]]), torch.tensor([1.0, 1.0]))
    assert mean.tolist() == [2.0]
    assert se.tolist() == pytest.approx([1.0])


def test_paired_excess__standard_error_matches_bootstrap_spread():
    generator = torch.Generator().manual_seed(0)
    difference = torch.randn(31, generator=generator, dtype=torch.float64) + 0.1
    _, se = rv.paired_excess(difference.unsqueeze(0), torch.zeros(31, dtype=torch.float64))
    resamples = torch.randint(0, 31, (4000, 31), generator=generator)
    bootstrap = difference[resamples].mean(dim=1).std()
    assert float(se[0]) == pytest.approx(float(bootstrap), rel=0.1)


def test_loss_vs_global__better_within_noise_and_clearly_worse():
    # global loss 1 on every row; proposal 0 better; proposal 1 worse by mean 0.5 with
    # differences [0, 1] (SE 0.5); proposal 2 worse by 2 on every row (SE 0)
    inputs = losses_inputs([[0.5, 0.5], [1.0, 2.0], [3.0, 3.0]], [1.0, 1.0])
    assert review("loss_vs_global", inputs, k=0.0) == [True, False, False]
    assert review("loss_vs_global", inputs, k=1.0) == [True, True, False]


def test_loss_vs_global__negative_k__rejected():
    with pytest.raises(ValueError, match="k"):
        review("loss_vs_global", losses_inputs([[1.0, 1.0]], [1.0, 1.0]), k=-1.0)


def test_loss_vs_global__rows_do_not_match__value_error():
    with pytest.raises(ValueError, match="rows"):
        review("loss_vs_global", losses_inputs([[1.0, 1.0, 1.0]], [1.0, 1.0]))


def test_loss_vs_median__compares_with_the_median_model_not_the_global():
    inputs = losses_inputs([[0.9, 0.9], [1.2, 1.2]], [5.0, 5.0], median_losses=torch.tensor([1.0, 1.0]))
    assert review("loss_vs_median", inputs, k=0.0) == [True, False]
    assert review("loss_vs_global", inputs, k=0.0) == [True, True]


def test_leave_one_out__rejects_the_proposal_whose_removal_helps():
    # aggregate loss 1.0; without proposal 0 it is 0.5 (proposal 0 hurts); without 1 it is 1.5
    inputs = ReviewInputs(
        proposal_count=2,
        aggregate_losses=torch.tensor([1.0, 1.0]),
        without_losses=torch.tensor([[0.5, 0.5], [1.5, 1.5]]),
    )
    assert review("leave_one_out", inputs, k=1.0) == [False, True]


# ------------------------------------------------------------------ direction tests


def direction_inputs(updates, own, **extra):
    updates = torch.tensor(updates, dtype=torch.float32)
    return ReviewInputs(proposal_count=updates.shape[0], proposal_updates=updates,
                        own_update=torch.tensor(own, dtype=torch.float32), **extra)


def test_cosine__same_side_accepted_opposite_and_zero_rejected():
    inputs = direction_inputs([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [1.0, -0.9]], [1.0, 1.0])
    assert review("cosine", inputs, threshold=0.0) == [True, False, False, True]
    # cos([1, -0.9], [1, 1]) = 0.1 / (1.345 * 1.414) = 0.053: below a 0.1 threshold
    assert review("cosine", inputs, threshold=0.1) == [True, False, False, False]


def test_cosine_similarities__scale_invariant_hand_values():
    values = rv.cosine_similarities(torch.tensor([[3.0, 4.0], [-6.0, -8.0]]), torch.tensor([3.0, 4.0]))
    assert values.tolist() == pytest.approx([1.0, -1.0])


def test_cosine__zero_own_update__rejects_everything_at_threshold_zero():
    inputs = direction_inputs([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    assert review("cosine", inputs) == [False, False]


def test_combinations__truth_table_of_direction_and_loss():
    # proposal 0: direction ok, loss ok; 1: direction ok, loss bad; 2: direction bad, loss ok;
    # 3: both bad
    inputs = direction_inputs(
        [[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], [1.0, 0.0],
        proposal_losses=torch.tensor([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0], [2.0, 2.0]]),
        global_losses=torch.tensor([1.0, 1.0]),
    )
    assert review("cosine_or_loss", inputs, k=1.0) == [True, True, True, False]
    assert review("cosine_and_loss", inputs, k=1.0) == [True, False, False, False]


def test_review__unknown_policy__names_the_choices():
    with pytest.raises(ValueError, match="aggregate"):
        review("median-of-means", ReviewInputs(proposal_count=1))


def test_review__no_proposals__empty_ballot():
    inputs = direction_inputs([[1.0]], [1.0])
    empty = ReviewInputs(proposal_count=0, proposal_updates=inputs.proposal_updates[:0], own_update=inputs.own_update)
    assert review("cosine", empty) == []


def test_registry__every_policy_documents_its_inputs():
    assert set(rv.POLICIES) == set(rv.REQUIRED_INPUTS)
    for name, required in rv.REQUIRED_INPUTS.items():
        with pytest.raises(ValueError, match=required[0]):
            review(name, ReviewInputs(proposal_count=1))


# ------------------------------------------------------------------ scores and batching


def test_per_example_log_loss__binary_and_multiclass_match_torch():
    generator = torch.Generator().manual_seed(1)
    binary_logits, binary_y = torch.randn(2, 5, generator=generator), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    expected = torch.stack([nn.functional.binary_cross_entropy_with_logits(l, binary_y, reduction="none") for l in binary_logits])
    assert torch.allclose(rv.per_example_log_loss(binary_logits, binary_y), expected)

    class_logits, class_y = torch.randn(3, 4, 10, generator=generator), torch.tensor([0, 9, 3, 3])
    expected = torch.stack([nn.functional.cross_entropy(l, class_y, reduction="none") for l in class_logits])
    assert torch.allclose(rv.per_example_log_loss(class_logits, class_y), expected)


def test_per_example_brier__hand_values():
    # sigmoid(0) = 0.5 -> (0.5 - 1)^2 = 0.25; two equal class logits -> (0.5-1)^2 + 0.5^2 = 0.5
    assert rv.per_example_brier(torch.tensor([0.0]), torch.tensor([1.0])).tolist() == [0.25]
    assert rv.per_example_brier(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).tolist() == [0.5]


def test_stacked_logits__equals_one_forward_per_parameter_vector():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    base = rv.flatten_parameters(dict(model.named_parameters()), names)
    stacked = torch.stack([base, base + 0.1, base * -1.0])
    X = torch.randn(6, 4)
    batched = rv.stacked_logits(model, stacked, X)
    assert batched.shape == (3, 6, 2)
    for row, flat in enumerate(stacked):
        copy = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        torch.nn.utils.vector_to_parameters(flat, copy.parameters())
        with torch.no_grad():
            assert torch.allclose(batched[row], copy(X), atol=1e-6)


def test_stacked_logits__wrong_width__value_error():
    with pytest.raises(ValueError, match="flat_parameters"):
        rv.stacked_logits(nn.Linear(2, 1), torch.zeros(2, 5), torch.zeros(1, 2))


def test_module__imports_nothing_from_fl():
    tree = ast.parse(Path(rv.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m == "fl" or m.startswith("fl.")]


def test_cosine__norm_cap_rejects_a_large_update_in_an_accepted_direction():
    inputs = ReviewInputs(
        proposal_count=3,
        proposal_updates=torch.tensor([[1.0, 0.0], [10.0, 0.0], [0.0, 1.5]]),
        own_update=torch.tensor([1.0, 0.0]),
        reference_norm=1.0,
    )
    # orthogonal proposal 2 (cos 0) passes a negative threshold unless its norm is capped
    assert review("cosine", inputs, threshold=-0.1) == [True, True, True]
    assert review("cosine", inputs, threshold=-0.1, max_norm_ratio=2.0) == [True, False, True]
    assert review("cosine", inputs, threshold=-0.1, max_norm_ratio=1.2) == [True, False, False]


def test_cosine__norm_cap_without_reference_norm__value_error():
    inputs = direction_inputs([[1.0, 0.0]], [1.0, 0.0])
    with pytest.raises(ValueError, match="reference_norm"):
        review("cosine", inputs, max_norm_ratio=2.0)


def test_cosine__norm_floor_rejects_a_zero_and_a_tiny_update_that_pass_the_direction_test():
    inputs = ReviewInputs(
        proposal_count=4,
        proposal_updates=torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.05, 0.0], [0.0, 0.5]]),
        own_update=torch.tensor([1.0, 0.0]),
        reference_norm=1.0,
    )
    # a free rider's update (0) has cosine 0 with everything: a negative threshold accepts it
    assert review("cosine", inputs, threshold=-0.1, max_norm_ratio=2.0) == [True, True, True, True]
    assert review("cosine", inputs, threshold=-0.1, max_norm_ratio=2.0, min_norm_ratio=0.1) == [True, False, False, True]
    assert review("cosine", inputs, threshold=-0.1, min_norm_ratio=0.5) == [True, False, False, True]  # >= is kept
    assert review("cosine", inputs, threshold=-0.1, min_norm_ratio=0.6) == [True, False, False, False]


def test_cosine__median_ratio_rejects_an_update_far_below_the_rounds_median_cosine():
    # cosines with the own update [1, 0]: 0.8, 0.6, 0.4, 0.1 -> median 0.5; half of it: 0.25
    proposals = [[0.8, 0.6], [0.6, 0.8], [0.4, math.sqrt(1 - 0.16)], [0.1, math.sqrt(1 - 0.01)]]
    inputs = direction_inputs(proposals, [1.0, 0.0])
    assert review("cosine", inputs, threshold=0.0) == [True, True, True, True]
    assert review("cosine", inputs, threshold=0.0, median_ratio=0.5) == [True, True, True, False]
    assert review("cosine", inputs, threshold=0.0, median_ratio=0.9) == [True, True, False, False]  # 0.45
    # the absolute threshold still binds when the round's median is low or negative
    low = direction_inputs([[0.1, math.sqrt(1 - 0.01)], [-0.6, 0.8], [-0.8, 0.6]], [1.0, 0.0])
    assert review("cosine", low, threshold=0.0, median_ratio=0.5) == [True, False, False]


def test_cosine__median_ratio__median_over_the_proposals_within_the_norm_bounds():
    # two oversized updates (cos 0.9) would raise the median to 0.85 and reject the 0.35 one
    inputs = ReviewInputs(proposal_count=4, own_update=torch.tensor([1.0, 0.0]), reference_norm=1.0,
                          proposal_updates=torch.tensor([[0.8, 0.6], [0.35, math.sqrt(1 - 0.35 ** 2)],
                                                         [9.0, math.sqrt(19.0)], [9.0, math.sqrt(19.0)]]))
    assert review("cosine", inputs, median_ratio=0.5) == [True, False, True, True]
    assert review("cosine", inputs, max_norm_ratio=2.0, median_ratio=0.5) == [True, True, False, False]


def test_cosine__median_ratio__one_proposal_is_judged_by_the_threshold_alone():
    assert review("cosine", direction_inputs([[0.3, 0.95]], [1.0, 0.0]), threshold=0.0, median_ratio=0.5) == [True]


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, math.nan])
def test_cosine__bad_median_ratio__value_error(ratio):
    with pytest.raises(ValueError, match="median_ratio"):
        review("cosine", direction_inputs([[1.0, 0.0]], [1.0, 0.0]), median_ratio=ratio)


@pytest.mark.parametrize("parameters, message", [
    ({"min_norm_ratio": 0.1}, "reference_norm"),
    ({"min_norm_ratio": 0.0, "reference": 1.0}, "min_norm_ratio"),
    ({"min_norm_ratio": 3.0, "max_norm_ratio": 2.0, "reference": 1.0}, "must not exceed"),
])
def test_cosine__bad_norm_floor__value_error(parameters, message):
    parameters = dict(parameters)
    reference = parameters.pop("reference", None)
    inputs = ReviewInputs(proposal_count=1, proposal_updates=torch.tensor([[1.0, 0.0]]),
                          own_update=torch.tensor([1.0, 0.0]), reference_norm=reference)
    with pytest.raises(ValueError, match=message):
        review("cosine", inputs, **parameters)


def test_recommended_policy__rejects_the_opposite_direction_the_oversized_and_the_zero_update():
    # own direction (1, 1); proposals: aligned, slightly negative (cos -0.05: kept, as honest
    # updates on small splits often are), opposite (cos -1), aligned but 3x the reference norm,
    # a free rider's zero update (cos 0), aligned but a twentieth of the reference norm
    own = torch.tensor([1.0, 1.0])
    slightly_negative = torch.tensor([1.0, -1.105])  # cos = -0.0499
    inputs = ReviewInputs(
        proposal_count=6,
        proposal_updates=torch.stack([torch.tensor([1.0, 0.9]), slightly_negative, -own, 3 * own,
                                      torch.zeros(2), own / 20]),
        own_update=own, reference_norm=float(own.norm()),
    )
    verdicts = review(rv.RECOMMENDED_POLICY, inputs, **rv.RECOMMENDED_PARAMETERS)
    assert verdicts == [True, True, False, False, False, False]
