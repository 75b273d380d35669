"""Where uploads, results, checkpoints and artifacts live: one object store, addressed by keys.

PMOPS_STORAGE_URL picks it (docs/storage.md): `file:///some/dir`, or unset for the data
directory itself (as pmops always kept its files), or `s3://bucket/prefix` with the standard
AWS settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).
The store keeps *keys* relative to that root, never a machine's absolute path:

    datasets/{tenantId}/{datasetId}/{fileName}     an upload
    operations/{operationId}/...                   an operation's results.json and artifacts
    operations/{operationId}/state/{n}.pkl         its checkpoints (while a resume may need them)

A value the store kept before keys (an absolute path: rows no migration could convert) is still
read, from the local file system. Engines that need local files (pm4py, the flows) work on a
private scratch copy (`RunFiles`) that is removed after the run; on file:// they read and write
the stored files in place, as before.

Also here: the writes the disk refused (a full, read-only or unwritable data directory) in a
user's words.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pmops.settings import Settings

_REASONS = {
    errno.ENOSPC: "the storage is full (no space left on device)",
    errno.EDQUOT: "the storage quota is exhausted",
    errno.EROFS: "the storage is read-only",
    errno.EACCES: "the storage is not writable (permission denied)",
    errno.EPERM: "the storage is not writable (operation not permitted)",
}

CHUNK = 1 << 20
STATE = "state"  # analysis.pipeline.STATE_DIR: the checkpoints under an operation's key


def refusal(exc: OSError) -> str | None:
    """Why the storage refused a write, or None for an OSError of another kind. The server's
    paths are left out: they mean nothing to a tenant."""
    return _REASONS.get(exc.errno or 0)


# -- keys ----------------------------------------------------------------------------------------
def dataset_prefix(tenant_id: str, dataset_id: str) -> str:
    return f"datasets/{tenant_id}/{dataset_id}"


def dataset_key(tenant_id: str, dataset_id: str, file_name: str) -> str:
    return f"{dataset_prefix(tenant_id, dataset_id)}/{file_name}"


def result_key(operation_id: str) -> str:
    return f"operations/{operation_id}"


def join(ref: str, *parts: str) -> str:
    """A key (or a legacy absolute path) and parts below it."""
    return "/".join([ref.rstrip("/"), *(p.strip("/") for p in parts)])


def is_legacy(ref: str) -> bool:
    """An absolute path the store kept before keys (read from the local file system)."""
    return os.path.isabs(ref)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if any(p in ("..", ".", "") for p in parts) or "\\" in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


class Storage:
    """The object store behind PMOPS_STORAGE_URL (fsspec; s3fs for s3://)."""

    def __init__(self, url: str, fs: Any, root: str) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)

    @property
    def protocol(self) -> str:
        return "file" if self.local else self.url.split("://", 1)[0]

    def _locate(self, ref: str) -> tuple[Any, str]:
        if is_legacy(ref):
            return _LOCAL, ref
        return self.fs, f"{self.root}/{_check_key(ref)}"

    def local_path(self, ref: str) -> Path | None:
        """The file's path on this machine when the storage is the local file system."""
        fs, path = self._locate(ref)
        return Path(path) if fs is _LOCAL or self.local else None

    def exists(self, ref: str) -> bool:
        """A file is there (False too for what is no key: `..`, empty parts)."""
        try:
            fs, path = self._locate(ref)
            return bool(fs.isfile(path))
        except (FileNotFoundError, ValueError):
            return False

    def size(self, ref: str) -> int:
        fs, path = self._locate(ref)
        return int(fs.size(path))

    def open(self, ref: str, mode: str = "rb") -> IO[bytes]:
        fs, path = self._locate(ref)
        if "w" in mode and (fs is _LOCAL or self.local):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        handle: IO[bytes] = fs.open(path, mode)
        return handle

    def iter_bytes(self, ref: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The file in chunks (a download streamed, never read whole)."""
        with self.open(ref) as fh:
            while block := fh.read(chunk):
                yield block

    def put_file(self, local: Path, key: str) -> None:
        fs, path = self._locate(key)
        if fs is _LOCAL or self.local:
            target = Path(path)
            if target.resolve() == local.resolve():
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
            return
        fs.put_file(str(local), path)

    def get_file(self, ref: str, local: Path) -> None:
        fs, path = self._locate(ref)
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(local))

    def files(self, prefix: str) -> list[str]:
        """The files under `prefix`, as paths relative to it."""
        fs, path = self._locate(prefix)
        try:
            found = fs.find(path)
        except FileNotFoundError:
            return []
        base = path.rstrip("/") + "/"
        return sorted(f[len(base) :] for f in (str(x) for x in found) if f.startswith(base))

    def get_tree(self, prefix: str, local: Path, skip_state: bool = False) -> Path:
        """Copy every file under `prefix` into the directory `local` (made); returns it."""
        local.mkdir(parents=True, exist_ok=True)
        for rel in self.files(prefix):
            if skip_state and rel.split("/", 1)[0] == STATE:
                continue
            self.get_file(join(prefix, rel), local / rel)
        return local

    def delete_tree(self, prefix: str) -> None:
        """Remove everything under `prefix` (nothing there: nothing happens)."""
        fs, path = self._locate(prefix)
        if fs is _LOCAL or self.local:
            shutil.rmtree(path, ignore_errors=True)
            return
        if self.files(prefix):
            fs.rm(path, recursive=True)

    def presigned_url(self, ref: str, seconds: float) -> str | None:
        """A URL the object store itself answers for `seconds` (s3); None where it has none."""
        fs, path = self._locate(ref)
        if fs is _LOCAL or self.local:
            return None
        try:
            return str(fs.sign(path, expiration=int(seconds)))
        except NotImplementedError:
            return None


_LOCAL = LocalFileSystem()
_storages: dict[tuple[str, ...], Storage] = {}
_lock = threading.Lock()


def _s3_options() -> dict[str, Any]:
    """s3fs's options from the standard AWS environment (botocore reads the keys itself)."""
    client: dict[str, Any] = {}
    if endpoint := os.environ.get("AWS_ENDPOINT_URL"):
        client["endpoint_url"] = endpoint
    if region := os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"):
        client["region_name"] = region
    # another process (the flow run, the API) writes what this one lists: no stale listings
    return {"client_kwargs": client, "use_listings_cache": False, "skip_instance_cache": True}


def open_storage(url: str) -> Storage:
    """The storage at `url` (file://, s3:// or another fsspec protocol)."""
    protocol, _, rest = url.partition("://")
    if not rest:
        protocol, rest = "file", url
    if protocol in ("file", "local"):
        root = str(Path(rest).resolve())
        return Storage(f"file://{root}", _LOCAL, root)
    options = _s3_options() if protocol in ("s3", "s3a") else {}
    fs = fsspec.filesystem(protocol, **options)
    return Storage(url, fs, rest.strip("/"))


def storage_url(settings: Settings) -> str:
    return settings.storage_url or f"file://{settings.data_dir.resolve()}"


def storage_for(settings: Settings) -> Storage:
    """The settings' storage, made once per process (and per AWS endpoint)."""
    url = storage_url(settings)
    cache_key = (
        url,
        os.environ.get("AWS_ENDPOINT_URL", ""),
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
    )
    with _lock:
        found = _storages.get(cache_key)
        if found is None:
            found = _storages[cache_key] = open_storage(url)
        return found


def scratch_root(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "scratch"


def make_scratch(settings: Settings, label: str) -> Path:
    """A private directory for local copies (removed by its user: `shutil.rmtree`)."""
    root = scratch_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))


class RunFiles:
    """An operation run's files: its inputs as local paths, its output directory, and the upload
    of what it writes to the storage under `operations/{operationId}` (checkpoints as each phase
    completes). On file:// everything is in place, as before; elsewhere a scratch directory
    holds the copies and is removed when the run ends."""

    def __init__(self, storage: Storage, settings: Settings, operation_id: str) -> None:
        self.storage = storage
        self.key = result_key(operation_id)
        self.scratch: Path | None = None
        self._settings = settings
        self._operation_id = operation_id
        self._sent: dict[str, tuple[int, int]] = {}
        local = storage.local_path(self.key)
        self.out_dir = local if local is not None else Path()

    def __enter__(self) -> RunFiles:
        if not self.storage.local:
            self.scratch = make_scratch(self._settings, self._operation_id)
            self.out_dir = self.scratch / "out"
            self.out_dir.mkdir()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _copy(self, name: str) -> Path:
        assert self.scratch is not None
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def source(self, ref: str) -> Path:
        """The run's input file on this machine. A prior operation's results.json comes with
        that operation's artifacts beside it (a report draws its process map from them)."""
        local = self.storage.local_path(ref)
        if local is not None:
            return local
        name = PurePosixPath(ref).name
        if name == "results.json":
            parent = str(PurePosixPath(ref).parent)
            return self.storage.get_tree(parent, self._copy("source"), skip_state=True) / name
        target = self._copy("source") / name
        self.storage.get_file(ref, target)
        return target

    def resume_dir(self, ref: str) -> Path:
        """The original run's results and checkpoints on this machine (what a resume restores)."""
        local = self.storage.local_path(ref)
        if local is not None:
            return local
        return self.storage.get_tree(ref, self._copy("resume"))

    def sync(self) -> None:
        """Upload what the run wrote or changed since the last sync (nothing on file://)."""
        if self.scratch is None:
            return
        for path in sorted(p for p in self.out_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(self.out_dir).as_posix()
            if rel.endswith(".tmp"):
                continue
            stat = path.stat()
            mark = (stat.st_size, stat.st_mtime_ns)
            if self._sent.get(rel) != mark:
                self.storage.put_file(path, join(self.key, rel))
                self._sent[rel] = mark

    def drop_checkpoints(self) -> None:
        """A completed run is never resumed: its checkpoints leave the storage too."""
        if self.scratch is not None:
            self.storage.delete_tree(join(self.key, STATE))
