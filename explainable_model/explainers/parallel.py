"""Spread TreeSHAP for scikit-learn trees over processes.

``shap.TreeExplainer`` computes scikit-learn trees in C++ on one core and holds the GIL
while it does (measured with shap 0.51: two threads take as long as one), so more cores
need more processes. A pool of worker processes builds the same explainers once, from the
same tree models, and each request's rows are split between them. Every row is still
computed by the same code, so the values equal single-process shap exactly.

The number of processes comes from the model's ``shap_n_jobs`` setting, overridden by the
environment variable ``EXPLAINABLE_MODEL_N_JOBS``. A server or batch job that runs several
copies of the model should set that variable to its cores divided by its workers, so that
the copies do not fight for cores.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import numpy as np
import shap
from joblib.externals.loky import get_reusable_executor

logger = logging.getLogger(__name__)

N_JOBS_VARIABLE = "EXPLAINABLE_MODEL_N_JOBS"
# Below this many rows per process, starting the work in other processes costs more than it saves.
MIN_ROWS_PER_JOB = 256
# Worker processes exit after this many idle seconds and start again when needed.
_IDLE_TIMEOUT_S = 300

# In each worker: explainers built for a pool's models, keyed by the pool's token.
_worker_explainers: dict[str, list[Any]] = {}


def resolve_n_jobs(setting: int | None) -> int:
    """Return the number of processes: the environment variable, else ``setting``, else all cores.

    Raises
    ------
    ValueError
        If the environment variable is set to something other than a positive integer.
    """
    text = os.environ.get(N_JOBS_VARIABLE)
    if text:
        if not text.strip().isdigit() or int(text) < 1:
            raise ValueError(f"{N_JOBS_VARIABLE} must be a positive integer, got {text!r}.")
        return int(text)
    if setting is not None and setting > 0:
        return setting
    return os.cpu_count() or 1


def _worker_values(token: str, models: list[Any], options: dict[str, Any], data: np.ndarray) -> list[np.ndarray]:
    explainers = _worker_explainers.get(token)
    if explainers is None:
        explainers = [shap.TreeExplainer(model, **options) for model in models]
        _worker_explainers[token] = explainers
    return [np.asarray(explainer.shap_values(data, check_additivity=False)) for explainer in explainers]


class TreeShapPool:
    """Splits TreeSHAP of large inputs over worker processes.

    Workers come from joblib's reusable loky executor, which scikit-learn's ``n_jobs`` uses
    too: it starts clean interpreters, so forking a process that runs server threads is
    avoided, and it does not re-run the caller's ``__main__`` script as plain
    ``multiprocessing`` spawning does. Each worker builds the explainers once per pool.

    Parameters
    ----------
    models : list
        What ``shap.TreeExplainer`` takes: fitted tree models or shap's dict descriptions.
    options : dict
        Keyword arguments of ``shap.TreeExplainer``, the same as in the calling process.
    n_jobs : int
        Number of worker processes.
    """

    def __init__(self, models: list[Any], options: dict[str, Any], n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self._models = models
        self._options = options
        self._token = uuid.uuid4().hex

    def shap_values(self, data: np.ndarray) -> list[np.ndarray] | None:
        """Return each explainer's shap values for ``data``, or None when it is too small to split.

        The list has one array per model, as ``shap.TreeExplainer.shap_values`` returns it.
        """
        n_jobs = min(self.n_jobs, len(data) // MIN_ROWS_PER_JOB)
        if n_jobs < 2:
            return None
        # The calling process only waits: shap holds the GIL while it computes, which would
        # keep loky's feeder thread from sending the other chunks to the workers.
        executor = get_reusable_executor(max_workers=n_jobs, timeout=_IDLE_TIMEOUT_S)
        futures = [
            executor.submit(_worker_values, self._token, self._models, self._options, chunk)
            for chunk in np.array_split(data, n_jobs)
        ]
        parts = [future.result() for future in futures]
        return [np.concatenate([part[i] for part in parts], axis=0) for i in range(len(self._models))]
