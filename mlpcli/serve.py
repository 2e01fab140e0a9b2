"""The ``serve`` stage: a model behind HTTP (``mlpcli.serve_app``) on uvicorn, until a signal.

The model is opened as ``mlp predict`` opens it (``Predictor.open``). The socket is bound
here, before uvicorn starts, so ``--port 0`` can say which port it got; the line
``Serving <model> on http://HOST:PORT`` is printed once uvicorn accepts connections.
SIGINT and SIGTERM shut it down cleanly (requests in flight are answered) and the
command then exits 0.
"""

import contextlib
import socket

from mlpcli.errors import FileSystemError, MlpError
from mlpcli.predictor import Predictor

LOCAL_HOST = "127.0.0.1"
MISSING_EXTRA = "mlp serve needs starlette and uvicorn: pip install 'mlpcli[serve]'"


def serve(run_dir=None, *, model_path=None, checkpoint=None, host=LOCAL_HOST, port=8000, runs_root="runs",
          note=None, emit=print):
    """Serve the model until SIGINT or SIGTERM; ``emit`` gets the lines to print."""
    try:
        import uvicorn

        from mlpcli.serve_app import build_app
    except ImportError:
        raise MlpError(MISSING_EXTRA) from None
    predictor = Predictor.open(run_dir, model_path=model_path, checkpoint=checkpoint, runs_root=runs_root,
                               note=note)
    if host not in (LOCAL_HOST, "localhost", "::1"):
        emit(f"Warning: --host {host} makes the server reachable from other machines, and it has no "
             "authentication: anyone who can reach it can use the model")
    sock = _bound_socket(host, port)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                shown = f"[{host}]" if ":" in host else host
                emit(f"Serving {predictor.path} on http://{shown}:{sock.getsockname()[1]}")

        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn's handlers, without raising the signal again once shut down (which would
            end the process by the signal instead of exit 0)."""
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    # a client that never finishes its request may hold a shutdown up for 5 s, no longer
    config = uvicorn.Config(build_app(predictor), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    with sock:
        Server(config).run(sockets=[sock])


def _bound_socket(host, port):
    """A listening TCP socket on (host, port); MlpError when the system refuses it (a port in use)."""
    try:
        family, kind, proto = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][:3]
        # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on connections of such a
        # socket; without it each answer waits ~40 ms for the client's delayed ACK
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise MlpError(f"--host {host!r}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise FileSystemError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
