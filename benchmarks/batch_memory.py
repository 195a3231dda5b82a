"""Peak memory and throughput of chunked batch scoring against one in-memory ``predict`` call.

Scores N rows × 30 numeric features with exact SHAP on an XGBoost classifier, two ways, each in
its own subprocess so that its peak resident memory (VmHWM) is its own:

- ``chunked``: ``explainable-model score MODEL IN.parquet OUT --chunk-size C`` (``cli.main``),
- ``in-memory``: ``pandas.read_parquet``, one ``load_model(...).predict(frame)`` call, and
  ``DataFrame.to_parquet`` of the result.

Both times run from after the imports to the end of writing the output, model loading included.

Usage: ``.venv/bin/python benchmarks/batch_memory.py [--rows 200000 1000000] [--chunk-size 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine_line

FEATURES = 30

# Both ways sample their resident memory (VmRSS) every 0.2 s in a thread, so that the output
# shows how memory evolves over a run, not only its peak.
_SAMPLER = """
import threading, time
samples = []
def _sample():
    while True:
        rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
        samples.append((time.perf_counter(), int(rss)))
        time.sleep(0.2)
threading.Thread(target=_sample, daemon=True).start()
"""

_CHUNKED = """
import json, sys, time
from explainable_model.cli import main
start = time.perf_counter()
rc = main(["score", sys.argv[1], sys.argv[2], sys.argv[3], "--chunk-size", sys.argv[4], "--quiet"])
seconds = time.perf_counter() - start
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"rc": rc, "seconds": seconds, "peak_kib": int(hwm), "samples": [(t - start, k) for t, k in samples]}))
"""

_IN_MEMORY = """
import json, sys, time
import pandas as pd
import explainable_model as em
start = time.perf_counter()
model = em.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
result = model.predict(frame.drop(columns="key"))
pd.concat([frame, result], axis=1).to_parquet(sys.argv[3] + ".parquet", index=False)
seconds = time.perf_counter() - start
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"rc": 0, "seconds": seconds, "peak_kib": int(hwm), "samples": [(t - start, k) for t, k in samples]}))
"""


def _make_model(folder: Path, trees: int, depth: int) -> Path:
    import xgboost
    from sklearn.datasets import make_classification

    import explainable_model as em

    x, y = make_classification(n_samples=20_000, n_features=FEATURES, n_informative=12, random_state=0)
    train = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    model = xgboost.XGBClassifier(n_estimators=trees, max_depth=depth, random_state=0).fit(train, y)
    path = folder / "model"
    em.save_model(model, path, background_data=train)
    return path


def _make_input(folder: Path, rows: int) -> Path:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame(rng.normal(size=(rows, FEATURES)), columns=[f"f{i}" for i in range(FEATURES)])
    frame.insert(0, "key", np.arange(rows))
    path = folder / f"in-{rows}.parquet"
    # pandas' default row groups: one group for up to 1,048,576 rows (pyarrow 25) and more for larger files.
    frame.to_parquet(path, index=False)
    return path


def _run(code: str, *args: str) -> dict:
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _SAMPLER + code, *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_by_quarter(result: dict) -> str:
    """Return the largest resident memory sampled in each quarter of a run, in MiB."""
    seconds = result["seconds"]
    peaks = [0.0] * 4
    for at, kib in result["samples"]:
        if 0 <= at <= seconds:
            quarter = min(int(4 * at / seconds), 3)
            peaks[quarter] = max(peaks[quarter], kib / 1024)
    return " / ".join(f"{peak:,.0f}" for peak in peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--depth", type=int, default=4)
    args = parser.parse_args()
    lines = [
        "| rows | way | seconds | rows/s | peak RSS MiB | RSS peak by quarter of the run, MiB "
        "| chunked / in-memory time |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = _make_model(folder, args.trees, args.depth)
        for rows in args.rows:
            data = _make_input(folder, rows)
            chunked = _run(_CHUNKED, str(model), str(data), str(folder / f"out-{rows}"), str(args.chunk_size))
            memory = _run(_IN_MEMORY, str(model), str(data), str(folder / f"mem-{rows}"))
            ratio = chunked["seconds"] / memory["seconds"]
            for way, result in (("chunked CLI", chunked), ("in-memory predict", memory)):
                lines.append(
                    f"| {rows:,} | {way} | {result['seconds']:.1f} | {rows / result['seconds']:,.0f} | "
                    f"{result['peak_kib'] / 1024:,.0f} | {_peak_by_quarter(result)} | "
                    f"{f'{ratio:.2f}x' if way == 'chunked CLI' else ''} |"
                )
            print(lines[-2], lines[-1], sep="\n", flush=True)
    print()
    print("\n".join(lines))
    print(
        f"\nCommand: `.venv/bin/python benchmarks/batch_memory.py --rows {' '.join(map(str, args.rows))} "
        f"--chunk-size {args.chunk_size} --trees {args.trees} --depth {args.depth}`"
    )
    print(f"\nModel: XGBClassifier, {args.trees} trees, max_depth {args.depth}, exact SHAP (pred_contribs).")
    print("\n" + machine_line(["numpy", "pandas", "pyarrow", "xgboost", "shap", "mlflow"]))


if __name__ == "__main__":
    main()
