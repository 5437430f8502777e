import math

import numpy as np
import pytest
import torch

from rap_hf.estimators import ace_argmax_column, ace_normalized, ace_paper, cde_score

# Hand-made 3x3 head-averaged attention (rows sum to 1, lower triangular).
A = np.array([[1.0, 0.0, 0.0], [0.2, 0.8, 0.0], [0.1, 0.3, 0.6]])
# With sigma = 2 the column products are, by hand:
#   col 0: (2*1.0)(2*0.2)(2*0.1) = 0.16    col 1: (2*0.8)(2*0.3) = 0.96    col 2: 2*0.6 = 1.2
# and the column mean logs:
#   col 0: (ln 2 + ln 0.4 + ln 0.2)/3 = -0.61086    col 1: (ln 1.6 + ln 0.6)/2 = -0.02041    col 2: ln 1.2 = 0.18232


def test_cde_is_signed_difference():
    assert cde_score(1.0, 0.2) == pytest.approx(0.8)
    assert cde_score(0.2, 1.0) == pytest.approx(-0.8)
    assert cde_score(0.4, 0.4) == 0.0


@pytest.mark.parametrize("acc_mm,acc_text", [(1.2, 0.0), (0.5, -0.1), (math.nan, 0.0), (None, 0.5)])
def test_cde_rejects_out_of_range(acc_mm, acc_text):
    with pytest.raises(ValueError):
        cde_score(acc_mm, acc_text)


@pytest.mark.parametrize("min_span,expected", [(1, 1.2), (2, 0.96), (3, 0.16)])
def test_ace_paper_hand_computed(min_span, expected):
    assert ace_paper(A, sigma=2.0, min_span=min_span) == pytest.approx(expected)


@pytest.mark.parametrize("min_span,expected", [(1, 0.18232), (2, -0.02041), (3, -0.61086)])
def test_ace_normalized_hand_computed(min_span, expected):
    assert ace_normalized(A, sigma=2.0, min_span=min_span) == pytest.approx(expected, abs=1e-4)


def test_ace_sigma_scales_product():
    # sigma = 1: col 0: 0.02, col 1: 0.24, col 2: 0.6
    assert ace_paper(A, sigma=1.0) == pytest.approx(0.6)
    assert ace_paper(A, sigma=1.0, min_span=2) == pytest.approx(0.24)


def test_ace_ignores_upper_triangle_and_accepts_tensors():
    noisy = A.copy()
    noisy[0, 2] = 0.9  # above the diagonal: a token cannot attend to a later one, so it must not count
    assert ace_paper(torch.tensor(noisy), sigma=2.0) == pytest.approx(1.2)


def test_ace_zero_attention_is_floored_not_minus_inf():
    zero = np.array([[1.0, 0.0], [0.0, 1.0]])
    # col 0: 2 * max(0, 1e-12) * 2 -> 4e-12 ; col 1: 2
    assert ace_paper(zero, sigma=2.0, min_span=2) == pytest.approx(4e-12)
    assert ace_normalized(zero, sigma=2.0, min_span=2) == pytest.approx((math.log(2) + math.log(2e-12)) / 2)


def test_ace_empty_or_too_short_is_nan():
    assert math.isnan(ace_paper(np.zeros((0, 0))))
    assert math.isnan(ace_normalized(A, min_span=4))


def test_ace_rejects_non_square():
    with pytest.raises(ValueError):
        ace_paper(np.zeros((2, 3)))


def test_ace_paper_drifts_with_length_but_normalized_does_not():
    # Uniform causal attention over L tokens has the same per-entry profile shape for any L; the paper score
    # of a column that receives a constant 0.6 from every later row grows as (2*0.6)^span.
    def constant_column(length):
        attn = np.tril(np.full((length, length), 0.4 / max(length - 1, 1)))
        attn[:, 0] = 0.6
        return attn

    short, long = constant_column(4), constant_column(40)
    assert ace_paper(long) > 100 * ace_paper(short)
    assert ace_normalized(long) == pytest.approx(ace_normalized(short), abs=1e-9)
    assert ace_argmax_column(long) == 0
