"""Batch processing: files of requests in OpenAI's batch format run through chinwag's own
endpoints, written as they finish, resumable (``lines.py`` reads them, ``runner.py`` runs
them)."""

from chinwag.batch.lines import BatchLine, LineError, read_batch
from chinwag.batch.runner import BatchFiles, Progress, run_batch

__all__ = ["BatchFiles", "BatchLine", "LineError", "Progress", "read_batch", "run_batch"]
