"""A persona's knowledge settings: how much context it takes, what a failed source does, which
fact collections it searches (``context:`` and ``knowledge:`` in its YAML file)::

    sources: [weather, news]       # the sources it may use (names, or inline definitions)
    context:
      budget_tokens: 1000          # all knowledge in one prompt at most
      on_source_error: skip        # skip: answer without it (and say so); fail: HTTP 422
      choose_sources: keywords     # keywords (triggers) | model (the model picks, with choose)
    knowledge:
      collections: [handbook]
      top_k: 4
      budget_tokens: 800
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OnSourceError = Literal["skip", "fail"]


class ContextPolicy(BaseModel):
    """How a persona takes knowledge into its prompt.

    Attributes:
        budget_tokens: the most tokens of knowledge in one prompt, all pieces together; a
            page or ``|CONTEXT|`` text over it keeps its chunks that best match the question
            (BM25), and in a stored conversation the oldest pieces go first when new ones
            do not fit.
        on_source_error: ``skip`` (the answer comes without the source, and ``sources`` says
            why) or ``fail`` (the request fails: HTTP 422 with the fetch error's code).
        choose_sources: ``keywords`` (each source's ``triggers``) or ``model`` (the model
            picks the sources that help with the question, through ``choose``: for bigger
            models).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget_tokens: int = Field(default=1000, ge=16)
    on_source_error: OnSourceError = "skip"
    choose_sources: Literal["keywords", "model"] = "keywords"


class CollectionsPolicy(BaseModel):
    """Which fact collections a persona searches for each question.

    Attributes:
        collections: the collections' names.
        top_k: chunks taken from each collection at most.
        budget_tokens: the most tokens they take in the prompt; when a whole collection
            fits, all of it goes in.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    collections: tuple[str, ...] = ()
    top_k: int = Field(default=4, ge=1, le=50)
    budget_tokens: int = Field(default=800, ge=16)
