"""Checksummed files: verification, and download from mirrors into a cache.

Nothing here prints; callers who want to tell the user what is happening
pass a ``progress`` callable that receives one-line messages.
"""

import gzip
import hashlib
import os
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlpcli.errors import DataError

CACHE_ENV = "MLPCLI_DATA"
DEFAULT_TIMEOUT_S = 30.0
_CHUNK = 1 << 20

# Files already verified in this process: (path, size, mtime_ns, checksum).
# The key includes size and mtime so a file replaced on disk is checked again.
_verified: set[tuple] = set()


@dataclass(frozen=True)
class Checksum:
    """Expected md5 of a file.

    ``of`` says which bytes are hashed: "file" for the bytes as stored (what
    a mirror serves), "gunzipped" for the bytes after gzip decompression
    (robust to a file being recompressed).
    """

    md5: str
    of: str = "file"


def default_cache_dir(dataset: str) -> Path:
    """Folder for downloaded files of ``dataset``.

    $MLPCLI_DATA/<dataset> when the variable is set, else ~/.cache/mlpcli/<dataset>.
    """
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mlpcli"
    return Path(root).expanduser() / dataset


def compute_md5(path: Path, of: str) -> str:
    """Hex md5 of ``path``'s bytes, or of its gunzipped bytes when of == "gunzipped".

    Raises OSError, EOFError or zlib.error for unreadable or corrupt files.
    """
    digest = hashlib.md5()
    opener = gzip.open if of == "gunzipped" else open
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_problem(path: Path, checksum: Checksum) -> str | None:
    """None when ``path`` matches ``checksum``, else a short description of why not."""
    try:
        stat = path.stat()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, checksum)
    if key in _verified:
        return None
    try:
        actual = compute_md5(path, checksum.of)
    except (OSError, EOFError, zlib.error) as e:
        return f"corrupt or unreadable: {e}"
    if actual != checksum.md5:
        prefix = "md5 of gunzipped content" if checksum.of == "gunzipped" else "md5"
        return f"{prefix} is {actual}, expected {checksum.md5}"
    _verified.add(key)
    return None


def _url(mirror: str, filename: str) -> str:
    return mirror.rstrip("/") + "/" + filename


def _download(url: str, dest_dir: Path, timeout: float) -> Path:
    """Stream ``url`` into a new temporary file in ``dest_dir`` and return its path."""
    import urllib.request  # here, not at the top: it brings http, ssl and email into every start-up

    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def fetch(
    filename: str,
    mirrors: Sequence[str],
    checksum: Checksum,
    cache_dir: Path,
    *,
    progress: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Return the path of a verified copy of ``filename`` in ``cache_dir``.

    A cached copy that verifies is used as is. Otherwise each mirror (a base
    URL) is tried in order; a download goes to a temporary file in
    ``cache_dir`` and is moved into place only once it verifies, so the cache
    never holds a partial or corrupt file.
    """
    say = progress or (lambda message: None)
    cache_dir = Path(cache_dir)
    target = cache_dir / filename
    if target.exists():
        problem = checksum_problem(target, checksum)
        if problem is None:
            return target
        say(f"cached {target} is unusable ({problem}); downloading it again")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the data cache folder {cache_dir}: {e.strerror or e} "
            f"(set {CACHE_ENV} to a writable folder)"
        ) from None

    import http.client

    failures = []
    for mirror in mirrors:
        url = _url(mirror, filename)
        say(f"downloading {url}")
        try:
            tmp = _download(url, cache_dir, timeout)
        except (OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url}: {_describe(e)}")
            continue
        problem = checksum_problem(tmp, checksum)
        if problem is not None:
            tmp.unlink()
            failures.append(f"{url}: downloaded file rejected: {problem}")
            continue
        try:
            os.replace(tmp, target)
        except OSError as e:
            tmp.unlink()
            raise DataError(f"cannot write {target}: {e.strerror or e}") from None
        return target

    tried = "".join(f"\n  - {f}" for f in failures) or "\n  (no mirrors are listed)"
    raise DataError(
        f"could not download {filename}; tried:{tried}\n"
        f"This machine may be offline. Download {filename} by hand and place it at "
        f"{target} (the folder comes from ${CACHE_ENV} when set, "
        f"else ~/.cache/mlpcli)."
    )


def _describe(error: Exception) -> str:
    """A one-line description of a download error, without the exception's noise."""
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):  # wraps the socket error
        return str(getattr(error.reason, "strerror", None) or error.reason)
    return str(error) or type(error).__name__
