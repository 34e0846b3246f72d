"""chinwag: a local-first engine and service for LLM chatbots.

The public API, re-exported here (``tests/test_public_api.py`` pins ``__all__``)::

    from chinwag import Chatbot, get_persona, load_backend, load_settings

    backend = load_backend(load_settings())          # the embedded model by default
    bot = Chatbot(backend, get_persona("villager"))
    for piece in bot.send("Hello!"):
        print(piece, end="", flush=True)
"""

from chinwag.backends import Capabilities, LanguageBackend, ModelInfo, ScriptedBackend, load_backend
from chinwag.chat import Chatbot, Example, Persona, get_persona, load_persona_file, load_personas
from chinwag.errors import (
    BackendError,
    Cancelled,
    ChinwagError,
    ConfigError,
    ContextOverflow,
    FormatError,
    InvalidParams,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    PersonaError,
    SchemaError,
    StoreError,
    UnknownPersona,
)
from chinwag.models import resolve_model
from chinwag.prompting import Prompt, Speakers
from chinwag.settings import Settings, load_settings
from chinwag.store import Conversation, Store
from chinwag.types import Choice, Done, Message, SamplingParams, TokenEvent, Usage, collect

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Cancelled",
    "Capabilities",
    "Chatbot",
    "ChinwagError",
    "Choice",
    "ConfigError",
    "ContextOverflow",
    "Conversation",
    "Done",
    "Example",
    "FormatError",
    "InvalidParams",
    "LanguageBackend",
    "Message",
    "ModelError",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFound",
    "Persona",
    "PersonaError",
    "Prompt",
    "SamplingParams",
    "SchemaError",
    "ScriptedBackend",
    "Settings",
    "Speakers",
    "Store",
    "StoreError",
    "TokenEvent",
    "UnknownPersona",
    "Usage",
    "collect",
    "get_persona",
    "load_backend",
    "load_persona_file",
    "load_personas",
    "load_settings",
    "resolve_model",
]
