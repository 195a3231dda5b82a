"""Weighted local surrogate models of LIME, fitted for many rows at once.

For every row this computes what ``lime.lime_base.LimeBase.explain_instance_with_data``
(lime 0.2.0.1) computes with its default ``Ridge(alpha=1, fit_intercept=True)``. It selects
features, fits the weighted ridge regression on them, and returns the intercept,
coefficients, weighted R² and the surrogate's prediction for the row. All rows of a batch
are solved together. Each row's weighted Gram matrix is computed once, and every ridge fit
of the feature selection and of the final model is a small linear system on a slice of it.

scikit-learn's ``Ridge`` with ``sample_weight`` centres ``X`` and ``y`` on their weighted
means and solves ``(Xcᵀ W Xc + alpha I) coef = Xcᵀ W yc``. Its intercept is
``ȳ - x̄ · coef``. ``score`` is ``sklearn.metrics.r2_score`` with the same weights. All of
these follow from the weighted moments below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import lars_path_gram

from explainable_model.exceptions import InvalidParameterError

logger = logging.getLogger(__name__)

FEATURE_SELECTIONS = ("auto", "none", "forward_selection", "highest_weights", "lasso_path")

# lime's "auto" feature selection uses forward selection up to this many features and
# highest weights above it.
AUTO_FORWARD_SELECTION_MAX = 6

# Ridge penalties that lime uses for the final surrogate and for the highest-weights ranking.
# Its forward selection fits Ridge(alpha=0), ordinary least squares.
SURROGATE_ALPHA = 1.0
HIGHEST_WEIGHTS_ALPHA = 0.01


def kernel_weights(distances: np.ndarray, kernel_width: float) -> np.ndarray:
    """Return lime's default exponential kernel, ``sqrt(exp(-d² / width²))``, of the distances."""
    return np.sqrt(np.exp(-(distances**2) / kernel_width**2))


@dataclass(frozen=True)
class LocalModels:
    """Weighted ridge surrogates, one per row.

    Attributes
    ----------
    coefficients : numpy.ndarray of shape (n_rows, n_features)
        Surrogate coefficient of each interpretable feature, 0 where not selected.
    selected : numpy.ndarray of bool, shape (n_rows, n_features)
        Features that the feature selection kept.
    intercept : numpy.ndarray of shape (n_rows,)
    score : numpy.ndarray of shape (n_rows,)
        Weighted R² of the surrogate on the samples, as ``Ridge.score`` computes it.
    local_prediction : numpy.ndarray of shape (n_rows,)
        The surrogate's prediction for sample 0, the explained row.
    """

    coefficients: np.ndarray
    selected: np.ndarray
    intercept: np.ndarray
    score: np.ndarray
    local_prediction: np.ndarray


@dataclass(frozen=True)
class _WeightedMoments:
    """Weighted means and centred cross-products of the samples of each row."""

    x_mean: np.ndarray  # (n_rows, n_features)
    y_mean: np.ndarray  # (n_rows,)
    gram: np.ndarray  # (n_rows, n_features, n_features): Xcᵀ W Xc
    xy: np.ndarray  # (n_rows, n_features): Xcᵀ W yc
    yy: np.ndarray  # (n_rows,): yc ᵀ W yc

    @classmethod
    def compute(cls, data: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> _WeightedMoments:
        # Work on (n_rows, n_features, n_samples) views. The sampler's buffers are contiguous
        # in that layout, and matmul takes either layout without copying.
        features_first = data.transpose(0, 2, 1)
        total = weights.sum(axis=1)
        # (n_rows, n_features, n_samples) @ (n_rows, n_samples, 1) -> (n_rows, n_features)
        x_mean = (features_first @ weights[:, :, None])[:, :, 0] / total[:, None]
        y_mean = (weights * targets).sum(axis=1) / total
        # Centre, then scale rows by sqrt(weight), as Ridge does before its solve.
        root_weights = np.sqrt(weights)
        scaled_x = features_first - x_mean[:, :, None]
        scaled_x *= root_weights[:, None, :]
        scaled_y = (targets - y_mean[:, None]) * root_weights
        gram = scaled_x @ scaled_x.transpose(0, 2, 1)
        xy = (scaled_x @ scaled_y[:, :, None])[:, :, 0]
        yy = np.square(scaled_y).sum(axis=1)
        return cls(x_mean, y_mean, gram, xy, yy)


def _solve(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Solve stacked systems, with a minimum-norm solution where a system is singular.

    scikit-learn's Ridge falls back to an SVD solver, which returns the minimum-norm solution,
    when its Cholesky solve fails. This happens with ``alpha=0`` and collinear features.
    """
    try:
        return np.linalg.solve(matrices, vectors[..., None])[..., 0]
    except np.linalg.LinAlgError:
        logger.debug("Singular surrogate system; using the minimum-norm least-squares solution.")
        return (np.linalg.pinv(matrices) @ vectors[..., None])[..., 0]


def _masked_ridge(moments: _WeightedMoments, mask: np.ndarray, alpha: float) -> np.ndarray:
    """Return the ridge coefficients on the features in ``mask``, 0 elsewhere.

    Rows and columns of unselected features are replaced by the identity and their right-hand
    side by 0, so one full-size solve per row gives every row its own feature subset.
    """
    n_features = mask.shape[1]
    mask_float = mask.astype(np.float64)
    # (n_rows, n_features, n_features): the Gram matrix restricted to the selected block.
    matrices = moments.gram * mask_float[:, :, None] * mask_float[:, None, :]
    diagonal = alpha * mask_float + (1.0 - mask_float)
    matrices = matrices + diagonal[:, :, None] * np.eye(n_features)
    return _solve(matrices, moments.xy * mask_float)


def _fix_zero_columns(matrices: np.ndarray) -> None:
    """Put 1 on the zero diagonal of features that are constant over the samples.

    Without a penalty, a constant feature leaves its system singular. Its centred column and
    right-hand side are exactly 0, so a unit diagonal gives it the coefficient 0 that the
    minimum-norm solution gives it.
    """
    diagonal = np.einsum("...ii->...i", matrices)
    diagonal[diagonal == 0.0] = 1.0


def _r2(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    """Return the weighted R² with ``sklearn.metrics.r2_score``'s rule for constant targets.

    When the targets are constant (zero total sum of squares), the score is 1.0 for a perfect
    fit and 0.0 otherwise.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - sse / sst
    constant = sst == 0.0
    return np.where(constant, np.where(sse == 0.0, 1.0, 0.0), score)


def _forward_selection(moments: _WeightedMoments, num_features: int) -> np.ndarray:
    """Add, one at a time, the feature whose least-squares fit reaches the highest weighted R².

    lime fits ``Ridge(alpha=0)`` for each candidate. Ties go to the lowest feature index, as
    in lime's loop with a strict comparison.
    """
    n_rows, n_features = moments.xy.shape
    selected = np.zeros((n_rows, n_features), dtype=bool)
    used: list[np.ndarray] = []
    rows = np.arange(n_rows)
    for step in range(min(num_features, n_features)):
        # candidates[r, c, :]: the features already used by row r, then candidate feature c.
        used_block = np.stack(used, axis=1) if used else np.empty((n_rows, 0), dtype=np.int64)
        candidates = np.concatenate(
            [
                np.broadcast_to(used_block[:, None, :], (n_rows, n_features, step)),
                np.broadcast_to(np.arange(n_features)[None, :, None], (n_rows, n_features, 1)),
            ],
            axis=2,
        )
        row_index = rows[:, None, None, None]
        # (n_rows, n_candidates, step + 1, step + 1) sub-Gram matrices and (…, step + 1) right-hand sides.
        matrices = moments.gram[row_index, candidates[..., :, None], candidates[..., None, :]]
        vectors = moments.xy[rows[:, None, None], candidates]
        already = selected.copy()
        # A candidate already in the model repeats a feature, which makes its system singular.
        # Such a candidate is never chosen, so its system is replaced by the identity.
        matrices = np.where(already[:, :, None, None], np.eye(step + 1), matrices)
        _fix_zero_columns(matrices)
        coefficients = _solve(matrices, vectors)
        # Residual sum of squares of the weighted centred fit: yy - 2 c·g + cᵀ G c.
        quadratic = np.einsum("rci,rcij,rcj->rc", coefficients, matrices, coefficients)
        sse = moments.yy[:, None] - 2.0 * (coefficients * vectors).sum(axis=2) + quadratic
        scores = _r2(sse, moments.yy[:, None])
        scores = np.where(already | np.isnan(scores), -np.inf, scores)
        best = np.argmax(scores, axis=1)
        selected[rows, best] = True
        used.append(best)
    return selected


def _highest_weights(moments: _WeightedMoments, row_data: np.ndarray, num_features: int) -> np.ndarray:
    """Keep the features with the largest ``|coef * row value|`` of a ridge fit on all features.

    Ties keep the lower feature index first, as lime's stable sort does.
    """
    n_rows, n_features = moments.xy.shape
    coefficients = _masked_ridge(moments, np.ones((n_rows, n_features), dtype=bool), HIGHEST_WEIGHTS_ALPHA)
    order = np.argsort(-np.abs(coefficients * row_data), axis=1, kind="stable")
    selected = np.zeros((n_rows, n_features), dtype=bool)
    np.put_along_axis(selected, order[:, :num_features], True, axis=1)
    return selected


def _lasso_path(moments: _WeightedMoments, n_samples: int, num_features: int) -> np.ndarray:
    """Keep the features of the least regularized lasso-path step with at most ``num_features`` nonzero.

    lime walks the path of ``lars_path(method="lasso")`` backwards from its last step down to
    step 1 and stops at the first step with at most ``num_features`` nonzero coefficients. If
    none qualifies it keeps step 1, and a path with a single step keeps every feature. The path
    is computed from the weighted Gram matrix, which equals lime's on the weighted centred
    data. LARS is sequential, so this step loops over rows.
    """
    n_rows, n_features = moments.xy.shape
    selected = np.zeros((n_rows, n_features), dtype=bool)
    for r in range(n_rows):
        _, _, path = lars_path_gram(moments.xy[r], moments.gram[r], n_samples=n_samples, method="lasso")
        keep = np.arange(n_features)
        for step in range(path.shape[1] - 1, 0, -1):
            keep = np.flatnonzero(path[:, step])
            if len(keep) <= num_features:
                break
        selected[r, keep] = True
    return selected


def _select_features(
    moments: _WeightedMoments, row_data: np.ndarray, n_samples: int, num_features: int, method: str
) -> np.ndarray:
    """Return the features that ``method`` selects for each row, as a bool mask."""
    n_rows, n_features = moments.xy.shape
    if method == "auto":
        method = "forward_selection" if num_features <= AUTO_FORWARD_SELECTION_MAX else "highest_weights"
    if method == "none":
        return np.ones((n_rows, n_features), dtype=bool)
    if method == "forward_selection":
        return _forward_selection(moments, num_features)
    if method == "highest_weights":
        return _highest_weights(moments, row_data, num_features)
    return _lasso_path(moments, n_samples, num_features)


def validate_feature_selection(feature_selection: str) -> None:
    """Raise InvalidParameterError unless ``feature_selection`` is a known method."""
    if feature_selection not in FEATURE_SELECTIONS:
        raise InvalidParameterError(
            f"Invalid feature_selection {feature_selection!r}; expected one of {list(FEATURE_SELECTIONS)}."
        )


def fit_local_models(
    data: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    num_features: int,
    feature_selection: str = "auto",
) -> LocalModels:
    """Select features and fit lime's weighted ``Ridge(alpha=1)`` surrogate for every row.

    Parameters
    ----------
    data : numpy.ndarray of shape (n_rows, n_samples, n_features)
        Interpretable samples per row; sample 0 is the explained row.
    targets : numpy.ndarray of shape (n_rows, n_samples)
        The model output being explained, per sample.
    sample_weights : numpy.ndarray of shape (n_rows, n_samples)
        Kernel weights of the samples, all positive.
    num_features : int
        Maximum number of features in each surrogate; ``"none"`` ignores it.
    feature_selection : {"auto", "none", "forward_selection", "highest_weights", "lasso_path"}
        lime's feature selection method.

    Returns
    -------
    LocalModels

    Raises
    ------
    InvalidParameterError
        If ``feature_selection`` or ``num_features`` is invalid, or the array shapes disagree.
    """
    validate_feature_selection(feature_selection)
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
        raise InvalidParameterError(f"Invalid num_features {num_features!r}; expected an integer of at least 1.")
    if data.ndim != 3 or targets.shape != data.shape[:2] or sample_weights.shape != data.shape[:2]:
        raise InvalidParameterError(
            f"Invalid shapes: data {data.shape}, targets {targets.shape}, sample_weights "
            f"{sample_weights.shape}; expected (n_rows, n_samples, n_features), (n_rows, n_samples) "
            "and (n_rows, n_samples)."
        )

    moments = _WeightedMoments.compute(data, targets, sample_weights)
    row_data = data[:, 0, :]
    selected = _select_features(moments, row_data, data.shape[1], int(num_features), feature_selection)
    coefficients = _masked_ridge(moments, selected, SURROGATE_ALPHA)
    intercept = moments.y_mean - (moments.x_mean * coefficients).sum(axis=1)

    # (n_rows, 1, n_features) @ (n_rows, n_features, n_samples) -> (n_rows, n_samples)
    predictions = (coefficients[:, None, :] @ data.transpose(0, 2, 1))[:, 0, :] + intercept[:, None]
    sse = (sample_weights * (targets - predictions) ** 2).sum(axis=1)
    score = _r2(sse, moments.yy)
    return LocalModels(
        coefficients=coefficients,
        selected=selected,
        intercept=intercept,
        score=score,
        local_prediction=predictions[:, 0],
    )
