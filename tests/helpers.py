"""Estimators shared by several test modules."""

from __future__ import annotations

import pandas as pd
from pandas.api import types as ptypes
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def credit_preprocessor(features: pd.DataFrame, scale: bool = False) -> ColumnTransformer:
    """Impute and one-hot encode the credit data's text columns, impute (and scale) numbers."""
    categorical = [c for c in features.columns if not ptypes.is_numeric_dtype(features[c])]
    numeric = [c for c in features.columns if c not in categorical]
    numeric_steps = [SimpleImputer(strategy="median")] + ([StandardScaler()] if scale else [])
    return ColumnTransformer(
        [
            ("num", make_pipeline(*numeric_steps), numeric),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                categorical,
            ),
        ]
    )


def credit_pipeline(features: pd.DataFrame, target: pd.Series, model, scale: bool = False) -> Pipeline:
    """Fit preprocessing plus ``model`` on the credit data."""
    return Pipeline([("pre", credit_preprocessor(features, scale)), ("model", model)]).fit(features, target)
