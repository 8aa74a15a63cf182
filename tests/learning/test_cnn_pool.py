"""fl/learning/cnn.py: SmallCNN's 4x4 average pool skips the kernel when its input is already 4x4."""
import pytest
import torch
from torch import nn

from fl.learning.cnn import SmallCNN, _AveragePool


@pytest.mark.parametrize("size", [4, 7, 3])
def test_average_pool__same_values_and_gradients_as_adaptive_avg_pool(size):
    x = torch.randn(5, 8, size, size, generator=torch.Generator().manual_seed(size), requires_grad=True)
    weights = torch.randn(5, 8, 4, 4, generator=torch.Generator().manual_seed(1))

    got = _AveragePool(4)(x)
    (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
    expected = nn.AdaptiveAvgPool2d(4)(x)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)

    assert torch.equal(got, expected) and torch.equal(got_grad, expected_grad)


def test_small_cnn__28x28_images__pool_is_a_pass_through():
    model = SmallCNN(1, 10)
    pool = model.features[-1]
    x = torch.randn(2, 64, 4, 4)
    assert pool(x) is x
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
