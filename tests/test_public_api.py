"""The public API changes only on purpose (as httpx's test_exported_members)."""

import chinwag

EXPECTED = {
    "BackendError", "Cancelled", "Capabilities", "Chatbot", "ChinwagError", "Choice",
    "ConfigError", "ContextOverflow", "Done", "Example", "FormatError", "InvalidParams",
    "LanguageBackend", "Message", "ModelError", "ModelInfo", "ModelLoadError", "ModelNotFound",
    "Persona", "PersonaError", "Prompt", "SamplingParams", "SchemaError", "ScriptedBackend",
    "Settings", "Speakers", "Store", "StoreError", "Conversation", "TokenEvent",
    "UnknownPersona", "Usage", "collect", "get_persona",
    "load_backend", "load_persona_file", "load_personas", "load_settings", "resolve_model",
}


def test_all_is_pinned() -> None:
    assert set(chinwag.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in chinwag.__all__:
        assert getattr(chinwag, name) is not None, name


def test_every_error_is_a_chinwag_error() -> None:
    errors = [getattr(chinwag, n) for n in chinwag.__all__ if n.endswith(("Error", "Overflow"))]
    errors += [chinwag.Cancelled, chinwag.UnknownPersona, chinwag.ModelNotFound]
    for cls in errors:
        assert issubclass(cls, chinwag.ChinwagError), cls
