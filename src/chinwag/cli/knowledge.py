"""``chinwag knowledge``: fact collections in the conversation database.

- ``add COLL SOURCE``: add a file, an http(s) URL (fetched safely, its text extracted) or ``-``
  (standard input) to a collection; ``--embed`` stores the chunks' vectors too, so the
  collection's searches are hybrid (BM25 and all-MiniLM-L6-v2, fused);
- ``search COLL QUESTION``: the best chunks, one line each: score, document id, title, text;
- ``list [COLL]``: the collections, or one collection's documents;
- ``delete COLL ID``: delete a document.

The same collections are served by ``chinwag serve`` (``/collections``) and searched for
personas that name them.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chinwag.cli.common import ConfigOpt, DbOpt, err_console, friendly_errors, settings_from
from chinwag.knowledge.collections import Collections, DocumentInfo
from chinwag.knowledge.embeddings import Embedder
from chinwag.knowledge.extract import extract
from chinwag.knowledge.fetch import FetchPolicy, fetch
from chinwag.settings import Settings
from chinwag.store import Store

console = Console(highlight=False, markup=False)  # titles and texts are shown as they are
app = typer.Typer(name="knowledge", add_completion=False, no_args_is_help=True,
                  help="Add, search, list and delete documents of fact collections.")

CollectionArg = Annotated[str, typer.Argument(
    help="The collection's name (letters, digits, '_', '.', '-').", show_default=False)]
EXCERPT_CHARS = 160


def _open(settings: Settings) -> Store:
    return Store(settings.db_path())


def _fail(message: str) -> typer.Exit:
    """Print ``message`` as friendly_errors does; the caller raises the Exit(1) returned."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(1)


def _read(source: str, title: str | None, settings: Settings) -> tuple[str, str, str | None]:
    """``(title, text, url)`` of a file, a URL or ``-`` (standard input).

    Raises:
        FetchError: a URL that cannot be fetched safely or read.
        typer.Exit: a file that cannot be read (after printing why).
    """
    if source == "-":
        return title or "stdin", sys.stdin.read(), None
    if source.startswith(("http://", "https://")):
        page = extract(fetch(source, FetchPolicy.from_settings(settings)))
        return title or page.title or page.url, page.text, page.url
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror or e}") from None
    return title or path.name, text, None


@app.command("add")
@friendly_errors
def add(collection: CollectionArg,
        source: Annotated[str, typer.Argument(
            help="A text file, an http(s) URL, or '-' for standard input.",
            show_default=False)],
        title: Annotated[str | None, typer.Option(
            "--title", help="The document's title (default: the file's name, the page's "
                            "title, or 'stdin').", show_default=False)] = None,
        embed: Annotated[bool, typer.Option(
            "--embed", help="Also store the chunks' vectors (all-MiniLM-L6-v2; needs "
                            "chinwag[embeddings]): searches become hybrid.")] = False,
        db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Add a document to a collection (created by its first document)."""
    settings = settings_from(config, db=db)
    name, text, url = _read(source, title, settings)
    with _open(settings) as store:
        added = Collections(store).add(collection, name, text, url=url,
                                       embedder=Embedder() if embed else None)
    console.print(f"Added document {added.id} ({added.title!r}, {added.chunks} chunk(s)"
                  f"{', embedded' if added.embedded else ''}) to {collection}.")


@app.command("search")
@friendly_errors
def search(collection: CollectionArg,
           question: Annotated[str, typer.Argument(help="What to look for.",
                                                   show_default=False)],
           k: Annotated[int, typer.Option("-k", "--top", min=1, max=50,
                                          help="Most chunks shown.")] = 4,
           db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Show the chunks that best answer QUESTION, best first: score, document id, title,
    text (hybrid when the collection has vectors and the embedding model is installed)."""
    settings = settings_from(config, db=db)
    embedder = Embedder()
    with _open(settings) as store:
        hits = Collections(store).search(collection, question, k,
                                         embedder=embedder if embedder.available() else None)
    if not hits:
        console.print(f"Nothing in {collection} matches.")
    for h in hits:
        text = " ".join(h.text.split())
        excerpt = text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"
        typer.echo(f"{h.score:.4f}\t{h.document_id}\t{h.title}\t{excerpt}")


def _documents_table(collection: str, documents: list[DocumentInfo]) -> Table:
    table = Table("id", "title", "url", "chunks", "embedded", "added",
                  title=f"Documents of {collection}")
    for d in documents:
        when = datetime.fromtimestamp(d.created_at).strftime("%Y-%m-%d %H:%M")
        table.add_row(str(d.id), d.title, d.url or "", str(d.chunks),
                      "yes" if d.embedded else "", when)
    return table


@app.command("list")
@friendly_errors
def list_(collection: Annotated[str | None, typer.Argument(
              help="A collection: list its documents (default: list the collections).",
              show_default=False)] = None,
          db: DbOpt = None, config: ConfigOpt = None) -> None:
    """List the collections, or the documents of one."""
    with _open(settings_from(config, db=db)) as store:
        collections = Collections(store)
        if collection is not None:
            documents = collections.documents(collection)
            console.print(_documents_table(collection, documents) if documents
                          else f"No documents in {collection}.")
            return
        found = collections.list_collections()
    table = Table("collection", "documents", "chunks", "embedded",
                  title=f"Collections in {store.path}")
    for c in found:
        table.add_row(c.name, str(c.documents), str(c.chunks), "yes" if c.embedded else "")
    console.print(table if found else f"No collections in {store.path}.")


@app.command("delete")
@friendly_errors
def delete(collection: CollectionArg,
           document: Annotated[int, typer.Argument(help="The document's id.",
                                                   show_default=False)],
           db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Delete a document (and its chunks) from a collection."""
    with _open(settings_from(config, db=db)) as store:
        Collections(store).delete(collection, document)
    console.print(f"Deleted document {document} from {collection}.")
