"""Personas and chatbots: who is talking, and a conversation with them."""

from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Example, Persona, get_persona, load_persona_file, load_personas

__all__ = ["Chatbot", "Example", "Persona", "get_persona", "load_persona_file", "load_personas"]
