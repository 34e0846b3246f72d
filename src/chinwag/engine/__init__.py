"""chinwag's in-process llama.cpp engine, on llama-cpp-python's low-level (ctypes) API.

``LlamaModel`` holds the weights and tokenizer; ``Engine`` owns a llama.cpp context and runs
sequences through a step loop (one ``llama_decode`` per step for every active sequence);
``sampler.build_sampler`` makes llama.cpp's C sampler chain for a ``SamplingParams``.
"""

from chinwag.engine.model import LlamaModel
from chinwag.engine.scheduler import Engine, Sequence

__all__ = ["Engine", "LlamaModel", "Sequence"]
