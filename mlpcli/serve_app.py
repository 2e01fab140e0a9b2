"""The HTTP app of ``mlp serve`` (starlette): a model's predictions, its metadata and the page.

Routes: ``GET /health``, ``GET /metadata``, ``POST /predict`` and the page (``/``,
``/page.js``, ``/page.css``, from ``mlpcli/serve_page``). Every input goes through the
model's ``Predictor`` and the readers of ``mlp predict`` (``mlpcli.predict_inputs``), so a
served model sees its inputs as ``mlp predict`` prepares them; a request's rows or images
are predicted together, one request at a time (the model keeps per-call state).

What a client can get wrong is answered ``{"error": "..."}``: 400 (bad JSON, wrong shape,
not numbers, unknown or missing columns, an image that does not decode or holds no
digit), 413 (a body over ``MAX_BODY_BYTES``, refused from its Content-Length before it is
read, or as soon as it grows past it; more than ``MAX_ROWS`` rows; an image over the pixel
limit), 415 (a Content-Type other than JSON, PNG, JPEG or multipart), 404 and 405.
"""

import asyncio
import email.parser
import email.policy
import json
import threading
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlpcli import pipeline as pipeline_mod
from mlpcli.errors import DataError, ImageTooLargeError, MlpError
from mlpcli.images import MAX_PIXELS
from mlpcli.predict_inputs import array_rows, column_rows, image_rows, image_steps_of

MAX_BODY_BYTES = 10 * 1024 * 1024
BODY_TIMEOUT_SECONDS = 30  # the most a request's body may pause
MAX_ROWS = 10_000  # rows or images in one request
DEFAULT_TOP_K = 3
IMAGE_TYPES = ("image/png", "image/jpeg")
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/page.js": ("page.js", "text/javascript; charset=utf-8"),
              "/page.css": ("page.css", "text/css; charset=utf-8")}


class Refusal(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def build_app(predictor):
    """The starlette app serving ``predictor``."""
    metadata = _metadata(predictor)
    lock = threading.Lock()

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def describe(request):
        return JSONResponse(metadata)

    async def predict(request):
        try:
            top_k = _top_k(request, predictor)
            inputs = await _inputs(request)
            predictions = await run_in_threadpool(_predict, predictor, lock, inputs, top_k)
        except Refusal as refusal:
            return _error(refusal.status, str(refusal))
        return JSONResponse({"predictions": predictions})

    routes = [Route("/health", health, methods=["GET"]), Route("/metadata", describe, methods=["GET"]),
              Route("/predict", predict, methods=["POST"])]
    routes += [Route(url, _page_route(name, media_type), methods=["GET"])
               for url, (name, media_type) in PAGE_FILES.items()]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _internal_error})


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request, exc):
    return _error(exc.status_code, exc.detail)


async def _internal_error(request, exc):
    """A bug, not the client's doing: a JSON answer without the traceback (uvicorn logs it)."""
    return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _page_route(name, media_type):
    body = resources.files("mlpcli").joinpath("serve_page", name).read_bytes()

    async def page(request):
        return Response(body, media_type=media_type)

    return page


def _metadata(predictor):
    """What ``GET /metadata`` answers (see the contract in the module docstring)."""
    pipeline = predictor.pipeline
    if pipeline is not None:
        kind = pipeline.kind
    else:
        try:
            kind = "digits" if image_steps_of(predictor)[0] == "digits" else "image"
        except DataError:
            kind = "array"
    classifier = predictor.task == "classification"
    return {"model": str(predictor.path), "run": str(predictor.run_dir) if predictor.run_dir else None,
            "kind": kind, "task": predictor.task, "class_names": predictor.class_names if classifier else None,
            "input_shape": list(predictor.model.input_shape), "feature_shape": list(predictor.feature_shape),
            "columns": list(pipeline.columns) if pipeline is not None and pipeline.columns else None,
            "summary": predictor.model.summary(),
            "pipeline": pipeline_mod.as_json(pipeline) if pipeline is not None else None}


def _top_k(request, predictor):
    given = request.query_params.get("top_k")
    if given is None or predictor.task != "classification":
        return DEFAULT_TOP_K
    try:
        top_k = int(given)
    except ValueError:
        top_k = 0
    if not 1 <= top_k <= predictor.n_classes:
        raise Refusal(400, f"top_k: must be a whole number from 1 to {predictor.n_classes}, got {given!r}")
    return top_k


# ---------------------------------------------------------------- reading a request

async def _inputs(request):
    """("rows", list) | ("columns", dict) | ("images", [(name, bytes), ...]) of a request."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", "multipart/form-data", *IMAGE_TYPES):
        raise Refusal(415, f"unsupported Content-Type {media_type or '(none)'!r}: send application/json "
                           f"({{\"rows\": ...}} or {{\"columns\": ...}}), {' or '.join(IMAGE_TYPES)}, "
                           "or multipart/form-data with file fields named 'file'")
    body = await _body(request)
    if media_type in IMAGE_TYPES:
        return "images", [("image", body)]
    if media_type == "multipart/form-data":
        return "images", _uploads(request.headers["content-type"], body)
    try:
        given = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Refusal(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(given, dict) or len(given.keys() & {"rows", "columns"}) != 1 or len(given) != 1:
        raise Refusal(400, 'the JSON body must be an object with one key: "rows" (a list of rows) '
                           'or "columns" (table models: {"name": [cells]})')
    (key, value), = given.items()
    if key == "rows" and not isinstance(value, list) or key == "columns" and not isinstance(value, dict):
        raise Refusal(400, f'"{key}" must be a {"list of rows" if key == "rows" else "JSON object"}')
    count = len(value) if key == "rows" else max((len(v) for v in value.values() if isinstance(v, list)),
                                                 default=0)
    _check_count(count)
    return key, value


async def _body(request):
    """The request's body, refused (413) from its Content-Length, or once it outgrows the limit."""
    limit = f"the body is over the limit of {MAX_BODY_BYTES // (1024 * 1024)} MiB"
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
        raise Refusal(413, f"{limit} (Content-Length {int(length):,} bytes)")
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:  # a client that stops sending would hold its connection (and a slot) for ever
            chunk = await asyncio.wait_for(stream.__anext__(), BODY_TIMEOUT_SECONDS)
        except StopAsyncIteration:
            return b"".join(chunks)
        except asyncio.TimeoutError:
            raise Refusal(408, f"the body stopped arriving for {BODY_TIMEOUT_SECONDS} s") from None
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refusal(413, limit)
        chunks.append(chunk)


def _uploads(content_type, body):
    """The files of a multipart/form-data body's fields named ``file``: [(filename, bytes), ...]."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart() or message.defects:
        raise Refusal(400, "the multipart/form-data body cannot be parsed (check its boundary)")
    files = [(part.get_filename() or f"file {i + 1}", part.get_payload(decode=True) or b"")
             for i, part in enumerate(message.iter_parts())
             if part.get_param("name", header="content-disposition") == "file"]
    if not files:
        raise Refusal(400, "the multipart/form-data body has no file fields named 'file'")
    _check_count(len(files))
    return files


def _check_count(count):
    if count > MAX_ROWS:
        raise Refusal(413, f"{count:,} rows or images in one request; the limit is {MAX_ROWS:,}")


# ---------------------------------------------------------------- predicting

def _predict(predictor, lock, inputs, top_k):
    """The predictions of one request's inputs, prepared and predicted together (in a worker
    thread; one request at a time holds the model)."""
    kind, value = inputs
    with lock:
        try:
            if kind == "images":
                x = image_rows(predictor, value)
            elif kind == "columns":
                x = column_rows(predictor, value, "columns")
            else:
                x = array_rows(predictor, value, "rows")
            sources = [f"row {i}" for i in range(len(x))]
            outputs = predictor.outputs(x, sources)
        except ImageTooLargeError as exc:
            raise Refusal(413, f"{exc} (the limit is {MAX_PIXELS:,} pixels)") from None
        except MlpError as exc:
            raise Refusal(400, str(exc)) from None
    if predictor.task != "classification":
        return [{"value": float(row[0])} if len(row) == 1 else {"values": row.tolist()} for row in outputs]
    return [{key: value for key, value in p.as_dict().items() if key != "source"}
            for p in predictor.decode(sources, outputs, top_k)]
