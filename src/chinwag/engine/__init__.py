"""chinwag's in-process llama.cpp engine, on llama-cpp-python's low-level (ctypes) API.

``LlamaModel`` holds the weights and tokenizer; ``Engine`` owns a llama.cpp context and runs
``Generation``s through a step loop (one ``llama_decode`` per step for every active one);
``Slots`` decides which slot a prompt takes and what KV cells slots keep;
``sampler.Sampler`` is llama.cpp's C sampler chain for a ``SamplingParams``, with chinwag's own
repetition penalty.
"""

from chinwag.engine.model import LlamaModel
from chinwag.engine.scheduler import Engine, EngineStats, Generation
from chinwag.engine.slots import Claim, Slots

__all__ = ["Claim", "Engine", "EngineStats", "Generation", "LlamaModel", "Slots"]
