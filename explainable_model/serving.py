"""Serve an explainable model over REST: MLflow's scoring app behind a strict, value-free layer.

``explainable-model serve MODEL_URI`` runs the app of ``mlflow models serve`` (mlflow 3.17:
routes ``/ping``, ``/health``, ``/version`` and ``/invocations``, and its request formats) with
two changes:

- Requests are checked before MLflow's own schema enforcement. Parameters that the model's
  signature does not declare are rejected instead of dropped, input columns must be exactly the
  model's features, and a request may contain at most the model's ``max_rows`` rows. JSON
  values that MLflow's parsing would change silently are rejected (see
  :mod:`explainable_model.request_values`). The model's own ``predict`` then checks the
  values against the features' types.
- Every error response is a JSON object ``{"error_code": ..., "message": ...}`` whose message
  names the problem without any value from the request, and the server log gets the same
  message. MLflow's own messages quote the request (the whole input frame, the body of an
  invalid JSON request), so they are replaced; see :mod:`explainable_model.request_errors`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from mlflow.pyfunc import PyFuncModel

from explainable_model.exceptions import ExplainableModelError, InvalidInputError, InvalidParameterError
from explainable_model.features import FeatureSpec, check_columns, listed_names, request_name
from explainable_model.model import FLAVOR_NAME
from explainable_model.request_errors import (
    CURRENT_REQUEST,
    RequestRecord,
    clean_message,
    error_code_name,
)
from explainable_model.request_values import check_json_values

logger = logging.getLogger(__name__)

# Local folder of the served model. Worker processes read it to load the model, as MLflow's
# scoring app reads __pyfunc_model_path__.
MODEL_PATH_ENV = "EXPLAINABLE_MODEL_SERVE_PATH"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# Seconds a worker may take to load the model and respond to uvicorn's health check. uvicorn's
# default of 5 s restarts workers that load a model on a busy machine.
WORKER_STARTUP_TIMEOUT_S = 120
_INTERNAL_ERROR_MESSAGE = "The model failed to score the request; the server log has the error type."

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _type_text(data_type: Any) -> str:
    # DataType.double reads "double"; AnyType and other schema types read as their class name.
    return getattr(data_type, "name", None) or type(data_type).__name__


class StrictModel:
    """A loaded explainable model whose ``predict`` checks a request before MLflow's schema enforcement.

    MLflow's scoring app calls ``predict(data, params=params)`` and reads ``metadata``, so
    this class can replace the :class:`mlflow.pyfunc.PyFuncModel` it wraps.

    Parameters
    ----------
    pyfunc_model : mlflow.pyfunc.PyFuncModel
        A model saved by explainable_model.
    """

    def __init__(self, pyfunc_model: PyFuncModel) -> None:
        if FLAVOR_NAME not in pyfunc_model.metadata.flavors:
            raise ExplainableModelError(
                f"The model has no {FLAVOR_NAME!r} flavor; serve it with `mlflow models serve` instead."
            )
        self.pyfunc_model = pyfunc_model
        self.metadata = pyfunc_model.metadata
        self.engine = pyfunc_model.unwrap_python_model().engine
        param_schema = self.metadata.get_params_schema()
        self.declared_params = sorted(spec.name for spec in param_schema.params) if param_schema else []
        input_schema = self.metadata.get_input_schema()
        self.column_types = (
            {str(spec.name): _type_text(spec.type) for spec in input_schema.inputs} if input_schema else {}
        )

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Check the request, then return MLflow's pyfunc prediction for it.

        Raises
        ------
        InvalidParameterError
            If ``params`` is not an object, names a parameter that the model does not
            declare, or has a mistyped or out-of-range value.
        InvalidInputError
            If the input's columns or values do not fit the model, or it has more rows than
            the model's ``max_rows``. Columns and rows are checked here, values by the model.
        mlflow.exceptions.MlflowException
            With ``INTERNAL_ERROR`` if the model fails in any other way.
        """
        record = CURRENT_REQUEST.get() or RequestRecord()
        try:
            return self.pyfunc_model.predict(self._checked_rows(data, params), params=params)
        except MlflowException as error:
            status = error.get_http_status_code()
            if isinstance(error, ExplainableModelError):
                message = str(error)
            else:
                message = clean_message(status, error.message, self.column_types, b"", None)
            record.fail(message, error_code_name(error), status)
            raise
        except Exception as error:
            # The exception's message may quote input values, so only its type and where it
            # was raised go to the log.
            frames = "".join(traceback.format_tb(error.__traceback__))
            logger.error("Scoring failed with %s at:\n%s", type(error).__name__, frames.rstrip())
            record.fail(_INTERNAL_ERROR_MESSAGE, "INTERNAL_ERROR", 500)
            raise MlflowException(_INTERNAL_ERROR_MESSAGE, error_code=INTERNAL_ERROR) from None

    def _checked_rows(self, data: Any, params: dict[str, Any] | None) -> pd.DataFrame:
        if params is not None and not isinstance(params, dict):
            raise InvalidParameterError("Field 'params' must be a JSON object of parameter names and values.")
        undeclared = sorted(set(params or {}) - set(self.declared_params))
        if undeclared:
            raise InvalidParameterError(
                f"Unknown parameter {listed_names([request_name(name) for name in undeclared])}; "
                f"this model declares {', '.join(self.declared_params)}."
            )
        self.engine.options(params, strict=True)

        if not isinstance(data, pd.DataFrame):
            try:
                data = pd.DataFrame(data)
            except (ValueError, TypeError) as error:
                raise InvalidInputError(
                    "The input is not a table; send rows with one value per model column."
                ) from error
        limit = self.engine.settings.max_rows
        if limit is not None and len(data) > limit:
            raise InvalidInputError(
                f"The request has {len(data)} rows, more than this model's limit of {limit} rows per "
                f"request; split it into requests of at most {limit} rows."
            )
        # Values are checked by the model's own predict, after MLflow's schema enforcement, and
        # its messages contain no request values either.
        check_columns(data, self.engine.features)
        return data


class CleanErrors:
    """ASGI middleware that rewrites every error response into a message without request values.

    The message comes from the :class:`RequestRecord` that :class:`StrictModel` filled in, or,
    for errors that MLflow raised while reading the request, from
    :func:`explainable_model.request_errors.clean_message`. Each error is logged once, with the
    request's method, path and status.
    """

    def __init__(
        self,
        app: AsgiApp,
        column_types: dict[str, str],
        timeout_s: float | None,
        features: list[FeatureSpec] | None = None,
    ) -> None:
        self.app = app
        self.column_types = column_types
        self.timeout_s = timeout_s
        self.features = features

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord()
        token = CURRENT_REQUEST.set(record)
        body_parts: list[bytes] = []
        held: dict[str, Any] = {}

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body_parts.append(message.get("body", b""))
            return message

        async def send_clean(message: Message) -> None:
            if message["type"] == "http.response.start":
                held["started"] = True
                if message["status"] < 400:
                    await send(message)
                    return
                held["status"] = message["status"]
                held["body"] = []
                return
            if message["type"] == "http.response.body" and "status" in held:
                held["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._send_error(scope, send, record, held["status"], b"".join(held["body"]), body_parts)
                return
            await send(message)

        try:
            app_receive = await self._checked_receive(scope, send, record, receive, receive_and_keep)
            if app_receive is not None:
                await self.app(scope, app_receive, send_clean)
        except Exception as error:
            logger.error("%s %s failed with %s.", scope.get("method"), scope.get("path"), type(error).__name__)
            if not held.get("started"):
                record.fail(_INTERNAL_ERROR_MESSAGE, "INTERNAL_ERROR", 500)
                await self._send_error(scope, send, record, 500, b"", body_parts)
        finally:
            CURRENT_REQUEST.reset(token)

    async def _checked_receive(
        self, scope: Scope, send: Send, record: RequestRecord, receive: Receive, receive_and_keep: Receive
    ) -> Receive | None:
        """Check a JSON request's values before MLflow parses it; return the app's receive callable.

        MLflow's parsing changes some values silently, so the body is checked as the client sent
        it, then given to MLflow's app as if it were read for the first time. Returns None after
        sending the error response of a rejected body.
        """
        if self.features is None or not _is_json_post(scope):
            return receive_and_keep
        body = await _read_body(receive_and_keep)
        try:
            check_json_values(body, self.features)
        except InvalidInputError as error:
            record.fail(str(error), error_code_name(error), error.get_http_status_code())
            await self._send_error(scope, send, record, record.status, b"", [body])
            return None
        return _replay(body, receive)

    async def _send_error(
        self, scope: Scope, send: Send, record: RequestRecord, status: int, original: bytes, body_parts: list[bytes]
    ) -> None:
        if record.message is not None:
            status, error_code, message = record.status, record.error_code, record.message
        else:
            error_code, original_message = _original_error(original, status)
            message = clean_message(status, original_message, self.column_types, b"".join(body_parts), self.timeout_s)
        logger.warning("%s %s returned %d %s: %s", scope.get("method"), scope.get("path"), status, error_code, message)
        content = json.dumps({"error_code": error_code, "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _is_json_post(scope: Scope) -> bool:
    if scope.get("method") != "POST":
        return False
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes:
    """Return the whole request body; a client that disconnects first gives the part received."""
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive callable that gives ``body`` in one message, then defers to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _original_error(body: bytes, status: int) -> tuple[str, str]:
    """Return the error code and message of an error response that MLflow or FastAPI wrote."""
    default_code = "BAD_REQUEST"
    if status >= 500:
        default_code = "INTERNAL_ERROR"
    elif status == 404:
        default_code = "ENDPOINT_NOT_FOUND"
    try:
        parsed = json.loads(body)
    except ValueError:
        return default_code, body.decode(errors="replace")
    if not isinstance(parsed, dict):
        return default_code, ""
    return str(parsed.get("error_code", default_code)), str(parsed.get("message", ""))


def build_app(model: StrictModel) -> AsgiApp:
    """Return MLflow's scoring app for ``model``, wrapped in :class:`CleanErrors`."""
    from mlflow.pyfunc import scoring_server

    _configure_logging()
    # init() reads only ``metadata`` and ``predict``, which StrictModel has.
    app = scoring_server.init(model)  # type: ignore[arg-type]
    timeout = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
    return CleanErrors(app, model.column_types, float(timeout) if timeout else None, model.engine.features)


def load_strict_model(model_path: str) -> StrictModel:
    """Load the model in ``model_path`` for serving, checking its files.

    Raises
    ------
    ModelIntegrityError
        If a model file is missing or changed, or the estimator may not be unpickled.
    ExplainableModelError
        If the model was not saved by explainable_model.
    """
    from mlflow.pyfunc.scoring_server import load_model_with_mlflow_config

    return StrictModel(load_model_with_mlflow_config(model_path))


def create_app() -> AsgiApp:
    """Return the app for the model named by ``EXPLAINABLE_MODEL_SERVE_PATH``: the uvicorn worker factory."""
    return build_app(load_strict_model(os.environ[MODEL_PATH_ENV]))


def _configure_logging() -> None:
    package = logging.getLogger("explainable_model")
    if package.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    package.propagate = False


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit in the main thread while the block runs.

    uvicorn handles SIGTERM itself and, after shutting down, raises it again to the handler it
    found at start. With Python's default handler that ends the process at once, and the
    downloaded model folder would stay behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _local_copy(model_uri: str) -> Iterator[str]:
    """Yield a local folder holding the model: ``model_uri`` itself when it is one."""
    if Path(model_uri).is_dir():
        yield str(Path(model_uri).resolve())
        return
    from mlflow.artifacts import download_artifacts

    folder = tempfile.mkdtemp(prefix="explainable-model-serve-")
    try:
        yield download_artifacts(artifact_uri=model_uri, dst_path=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def serve(
    model_uri: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    timeout: int | None = None,
) -> None:
    """Serve a model saved by explainable_model until the process is stopped.

    The model is downloaded once and loaded, with its files checked, before the server
    starts, so a model that cannot be loaded stops the call with an error instead of a
    server whose workers fail.

    Parameters
    ----------
    model_uri : str
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/``, a local folder, or any
        URI that MLflow accepts.
    host : str
        Address to bind; ``127.0.0.1`` by default, so that only this machine can connect.
    port : int
        Port to bind.
    workers : int
        uvicorn worker processes, each with its own copy of the model.
    timeout : int, optional
        Seconds a request may take before the server returns HTTP 504 for it; MLflow's
        ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`` (60 s) by default.

    Raises
    ------
    ModelIntegrityError
        If a model file is missing or changed, or the estimator may not be unpickled.
    ExplainableModelError
        If the model was not saved by explainable_model.
    mlflow.exceptions.MlflowException
        If the URI cannot be resolved or downloaded.
    """
    import uvicorn

    if workers < 1:
        raise InvalidParameterError(f"workers must be a positive integer, got {workers}.")
    if timeout is not None:
        os.environ[MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name] = str(timeout)
    with _sigterm_as_exit(), _local_copy(model_uri) as model_path:
        # MLflow puts the model's code/ folder first on sys.path while loading. Spawned workers
        # copy sys.path, so without this they would import the serving layer from the model's
        # copy of the package, which may be of another version, instead of the installed one.
        search_path = list(sys.path)
        model = load_strict_model(model_path)
        sys.path[:] = search_path
        logger.info("Serving %s from %s on http://%s:%d with %d worker(s).", model_uri, model_path, host, port, workers)
        os.environ[MODEL_PATH_ENV] = model_path
        if workers == 1:
            uvicorn.run(build_app(model), host=host, port=port)
            return
        # Each worker loads its own copy, so the one loaded to check the model is released.
        del model
        uvicorn.run(
            f"{__name__}:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_worker_healthcheck=WORKER_STARTUP_TIMEOUT_S,
        )
