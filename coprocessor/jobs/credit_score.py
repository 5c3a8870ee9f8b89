"""``confidential.credit-score`` version 1: a credit score computed on private financial data.

Input ``(uint256 annualIncome, uint256 totalDebt, uint16 missedPayments, uint16 accountAgeMonths)``, income
and debt in whole currency units; output ``(uint16 score)`` in 300..850. Meant to be sent encrypted to the
enclave: only the score leaves it.

The formula is integer-only and deterministic (every division rounds down)::

    dtiBps      = income == 0 ? 10000 : min(10000, debt * 10000 / income)   # debt-to-income, basis points
    dtiPoints   = 250 * (10000 - dtiBps) / 10000                            # 0..250, 250 at no debt
    missPoints  = max(0, 200 - 40 * missedPayments)                         # 0..200, 0 from 5 misses up
    agePoints   = min(accountAgeMonths, 120) * 100 / 120                    # 0..100, full at 10 years
    score       = 300 + dtiPoints + missPoints + agePoints                  # 300..850

No income counts as a debt-to-income ratio of 100% or more (no points), whatever the debt.
"""

from __future__ import annotations

from coprocessor.jobs.base import Job, JobContext

MIN_SCORE = 300
MAX_SCORE = 850
BPS = 10_000
DTI_POINTS = 250
MISS_POINTS = 200
MISS_PENALTY = 40
AGE_POINTS = 100
AGE_FULL_MONTHS = 120


def credit_score(annual_income: int, total_debt: int, missed_payments: int, account_age_months: int) -> int:
    """The score in 300..850 by the formula in the module docstring."""
    dti_bps = BPS if annual_income == 0 else min(BPS, total_debt * BPS // annual_income)
    dti_points = DTI_POINTS * (BPS - dti_bps) // BPS
    miss_points = max(0, MISS_POINTS - MISS_PENALTY * missed_payments)
    age_points = min(account_age_months, AGE_FULL_MONTHS) * AGE_POINTS // AGE_FULL_MONTHS
    return MIN_SCORE + dti_points + miss_points + age_points


def _handle(_context: JobContext, args: tuple[int, int, int, int]) -> tuple[int]:
    return (credit_score(*args),)


CREDIT_SCORE_JOB = Job(
    name="confidential.credit-score",
    version=1,
    input_types=("uint256", "uint256", "uint16", "uint16"),
    output_types=("uint16",),
    handler=_handle,
    description=(
        "Credit score 300..850 from (annualIncome, totalDebt, missedPayments, accountAgeMonths); "
        "send the input encrypted to the enclave."
    ),
)
