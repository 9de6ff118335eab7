"""Where a model's files live: ``<storage_root>/models/<model_id>/{checkpoint,export}`` (a local path or a cloud URI).

Training writes locally, then uploads when the root is a cloud URI (``s3://``, ``gs://``, ... through pyarrow's
filesystems); serving reads the export, downloading it once into a local cache when it is remote.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

CHECKPOINT = "checkpoint"
EXPORT = "export"


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def model_dir(storage_root: str, model_id: str) -> str:
    if not model_id or "/" in model_id or model_id in (".", ".."):
        raise ValueError(f"model_id: not a valid model id {model_id!r}")
    return f"{storage_root.rstrip('/')}/models/{model_id}"


def export_dir(storage_root: str, model_id: str) -> str:
    return f"{model_dir(storage_root, model_id)}/{EXPORT}"


def checkpoint_dir(storage_root: str, model_id: str) -> str:
    return f"{model_dir(storage_root, model_id)}/{CHECKPOINT}"


def fetch_local(uri: str) -> Path:
    """A local directory with the contents of ``uri`` (itself when local; a cached download when remote)."""
    if not _is_remote(uri):
        return _local(uri)
    import pyarrow.fs

    cache = Path(tempfile.gettempdir()) / "lwmecps-artifacts" / uri.replace("://", "/").strip("/")
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial")
        pyarrow.fs.copy_files(uri, str(partial), destination_filesystem=pyarrow.fs.LocalFileSystem())
        partial.rename(cache)
    return cache


def publish(local: Path, uri: str) -> None:
    """Make ``uri`` hold the files of the local directory ``local`` (a no-op when ``uri`` is that directory)."""
    if not _is_remote(uri):
        if _local(uri).resolve() != local.resolve():
            import shutil

            shutil.copytree(local, _local(uri), dirs_exist_ok=True)
        return
    import pyarrow.fs

    pyarrow.fs.copy_files(str(local), uri, source_filesystem=pyarrow.fs.LocalFileSystem())


def local_staging(storage_root: str, model_id: str) -> Path:
    """The local directory training writes ``model_id``'s files to (the final place when the root is local)."""
    if not _is_remote(storage_root):
        return _local(model_dir(storage_root, model_id))
    return Path(tempfile.mkdtemp(prefix=f"lwmecps-model-{model_id}-"))


def remove(storage_root: str, model_id: str) -> None:
    """Delete a model's files (missing files are not an error)."""
    uri = model_dir(storage_root, model_id)
    if _is_remote(uri):
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(uri)
        if fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(inner)
        return
    import shutil

    shutil.rmtree(_local(uri), ignore_errors=True)
