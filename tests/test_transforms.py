"""The map from a Pipeline's transformed columns back to raw input features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

from explainable_model.transforms import feature_groups, to_dense

RNG = np.random.default_rng(0)
X = pd.DataFrame(
    {
        "a": RNG.normal(size=60),
        "b": np.where(RNG.random(60) < 0.2, np.nan, RNG.normal(size=60)),
        "c": pd.array(RNG.choice(["x", "y", "z"], 60), dtype="str"),
    }
)
Y = (X["a"] > 0).astype(int)


def groups_of(transformer):
    fitted = transformer.fit(X, Y)
    n_transformed = to_dense(fitted.transform(X)).shape[1]
    return feature_groups(fitted, 3, n_transformed)


def sources(groups):
    return [int(np.flatnonzero(row)[0]) for row in groups]


def test_imputer_indicator_maps_to_its_column():
    transformer = ColumnTransformer(
        [
            ("num", SimpleImputer(add_indicator=True), ["a", "b"]),
            ("cat", OneHotEncoder(), ["c"]),
        ]
    )

    assert sources(groups_of(transformer)) == [0, 1, 1, 2, 2, 2]


def test_remainder_passthrough_keeps_order():
    transformer = ColumnTransformer([("cat", OneHotEncoder(drop="first"), ["c"])], remainder=SimpleImputer())

    assert sources(groups_of(transformer)) == [2, 2, 0, 1]


def test_selection_after_encoding():
    transformer = make_pipeline(
        ColumnTransformer([("num", SimpleImputer(), ["a", "b"]), ("cat", OneHotEncoder(), ["c"])]),
        SelectKBest(f_classif, k=2),
    )
    fitted = transformer.fit(X, Y)
    kept = np.flatnonzero(fitted[-1].get_support())

    assert sources(groups_of(transformer)) == [[0, 1, 2, 2, 2][i] for i in kept]


def test_one_hot_bins_map_to_their_column():
    transformer = ColumnTransformer(
        [
            (
                "bins",
                make_pipeline(
                    SimpleImputer(),
                    KBinsDiscretizer(n_bins=3, encode="onehot-dense", quantile_method="averaged_inverted_cdf"),
                ),
                ["a", "b"],
            ),
            ("drop", "drop", ["c"]),
        ]
    )

    assert sources(groups_of(transformer)) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    "mixing",
    [make_pipeline(SimpleImputer(), PCA(2)), KNNImputer()],
    ids=["pca", "knn_imputer"],
)
def test_mixing_transformer_has_no_map(mixing):
    transformer = ColumnTransformer([("num", mixing, ["a", "b"]), ("cat", OneHotEncoder(), ["c"])])

    assert groups_of(transformer) is None


def test_scaled_columns_map_one_to_one():
    transformer = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b"])])
    fitted = transformer.fit(X, Y)

    assert feature_groups(fitted, 3, 2).tolist() == [[1, 0, 0], [0, 1, 0]]
