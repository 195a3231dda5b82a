"""Log a diabetes regressor with SHAP attributions to MLflow, load it back and explain a few rows.

Run from the repository root, with the package installed::

    python examples/diabetes_regression.py

The model is logged to the tracking store that MLFLOW_TRACKING_URI names, or to MLflow's
default local store when it is unset. For every row, the base value plus the attributions
adds up to the prediction, because TreeSHAP is exact for gradient boosting.
"""

import mlflow
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import train_test_split

import explainable_model

N_ROWS = 3
TOP_FEATURES = 3


def main() -> None:
    """Train, log, load and explain the model, printing the attributions largest in absolute value."""
    # scikit-learn ships these ten features mean-centered and scaled, hence their small values.
    data = load_diabetes(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0
    )
    model = GradientBoostingRegressor(n_estimators=100, random_state=0).fit(x_train, y_train)

    mlflow.set_experiment("diabetes_regression")
    with mlflow.start_run():
        # background_data takes raw training rows, and a sample of them is stored with the model.
        info = explainable_model.log_model(model, name="model", background_data=x_train)
    print(f"Logged {info.model_uri} to {mlflow.get_tracking_uri()}")

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    rows = x_test.head(N_ROWS)
    scored = loaded.predict(rows)

    # Attribution columns are named "shap:<feature>", and parse_column splits such a name.
    shap_columns = [name for name in scored.columns if explainable_model.parse_column(name).kind == "shap"]
    for i in range(len(scored)):
        result = scored.iloc[i]
        attributions = result[shap_columns].astype(float)
        base_value = result["shap_base_value"]
        total = base_value + attributions.sum()
        print(
            f"\nRow {i}: prediction {result['prediction']:.2f} (actual {y_test.iloc[i]:.0f}), "
            f"base value {base_value:.2f} + attributions {attributions.sum():+.2f} = {total:.2f}"
        )
        largest = attributions.abs().sort_values(ascending=False).index[:TOP_FEATURES]
        for column in largest:
            feature = explainable_model.parse_column(column).feature
            print(f"  {feature:>4} = {rows.iloc[i][feature]:+.3f}  attribution {attributions[column]:+.2f}")


if __name__ == "__main__":
    main()
