"""Integration rules: Captum's points and weights, and the integrals they approximate."""

import math

import pytest

from torchlens_like.gradients.integration import RULES, path_points

approximation = pytest.importorskip("captum.attr._utils.approximation_methods")


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("n", [2, 5, 50])
def test_points_and_weights_are_captums(name, n):
    weights, alphas = approximation.approximation_parameters(name)
    assert path_points(name, n) == (alphas(n), weights(n))


@pytest.mark.parametrize("name", sorted(RULES))
def test_each_rule_integrates_a_smooth_function_over_the_path(name):
    alphas, weights = path_points(name, 64)
    scale = 63 / 64 if name == "riemann_trapezoid" else 1.0  # Captum's weights: 1/n, ends halved
    assert sum(weights) == pytest.approx(scale)
    estimate = sum(w * math.exp(a) for a, w in zip(alphas, weights))
    assert estimate == pytest.approx(scale * (math.e - 1),
                                     rel=1e-2 if "left" in name or "right" in name else 1e-4)


def test_gauss_legendre_is_exact_for_polynomials_of_degree_2n_minus_1():
    alphas, weights = path_points("gausslegendre", 4)
    for degree in range(8):
        assert sum(w * a ** degree for a, w in zip(alphas, weights)) == \
            pytest.approx(1 / (degree + 1), abs=1e-12)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown integration rule 'simpson'"):
        path_points("simpson", 4)
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        path_points("gausslegendre", 0)
    with pytest.raises(ValueError, match="n_steps >= 2"):
        path_points("riemann_left", 1)
