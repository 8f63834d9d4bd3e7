"""Whether an Optuna distribution can hold a value, from the distribution's public attributes.

Optuna's own check (`BaseDistribution._contains`) is private: it may change or go in any release.
`holds` asks the same question through what Optuna documents, `to_internal_repr` and each family's
`low`/`high`/`step`/`log`/`choices`, so a warm start (runners/search/warm_start.py) and the analysis
(analysis/trials.py) keep working across Optuna versions. Same answers as Optuna 5.1's `_contains`
(tests/test_library_internals.py compares the two while Optuna still has its own).
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

# Optuna's tolerance for a float on a stepped grid (FloatDistribution with a step).
STEP_TOLERANCE = 1.0e-8


def holds(distribution: BaseDistribution, value: Any) -> bool:
    """True when `value` (as a trial would record it) lies in `distribution`.

    Args:
        distribution: a Categorical, Float or Int distribution of Optuna (their deprecated
            subclasses included).
        value: the parameter's value in its external form (a choice, a number).

    Returns:
        False for a value of the wrong type, outside the range, off the step grid or not among the
        choices, and for a distribution of another family.

    Example:
        >>> holds(FloatDistribution(0.0, 1.0, step=0.25), 0.5), holds(IntDistribution(1, 9, step=2), 4)
        (True, False)
    """
    try:
        internal = distribution.to_internal_repr(value)  # refuses a wrong type, NaN, <= 0 on a log scale
    except (ValueError, TypeError):
        return False
    if isinstance(distribution, CategoricalDistribution):
        return 0 <= int(internal) < len(distribution.choices)  # the choice's index: it was found
    if isinstance(distribution, IntDistribution):
        low, high, step = distribution.low, distribution.high, distribution.step
        return low <= internal <= high and (internal - low) % step == 0
    if isinstance(distribution, FloatDistribution):
        if not distribution.low <= internal <= distribution.high:
            return False
        if distribution.step is None:
            return True
        k = (internal - distribution.low) / distribution.step
        return abs(k - round(k)) < STEP_TOLERANCE
    return False
