"""``engine/model.py``: how many layers go to a GPU, and where the model says it runs."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from chinwag.engine import model as engine_model
from chinwag.engine.model import ALL_LAYERS, LlamaModel, gpu_layers


def test_auto_offloads_every_layer_when_llama_cpp_can() -> None:
    assert gpu_layers("auto", supports_offload=True) == ALL_LAYERS


def test_auto_keeps_every_layer_on_the_cpu_when_llama_cpp_cannot_offload() -> None:
    assert gpu_layers("auto", supports_offload=False) == 0


@pytest.mark.parametrize("supports", [True, False])
def test_an_explicit_number_wins_over_auto(supports: bool) -> None:
    assert gpu_layers(0, supports_offload=supports) == 0
    assert gpu_layers(12, supports_offload=supports) == 12


@pytest.mark.parametrize("supports", [True, False])
def test_minus_one_means_every_layer(supports: bool) -> None:
    assert gpu_layers(-1, supports_offload=supports) == ALL_LAYERS


@pytest.mark.slow
def test_the_model_asks_llama_cpp_whether_it_can_offload(
        model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_model.llama_cpp, "llama_supports_gpu_offload", lambda: True)
    offloading = LlamaModel(model_path)
    try:
        assert offloading.n_gpu_layers == ALL_LAYERS
        assert offloading.device == f"GPU ({offloading.n_layer} of {offloading.n_layer} layers)"
    finally:
        offloading.close()
    monkeypatch.setattr(engine_model.llama_cpp, "llama_supports_gpu_offload", lambda: False)
    cpu = LlamaModel(model_path, n_gpu_layers=5)
    try:
        assert cpu.n_gpu_layers == 5 and cpu.device == "CPU"  # llama.cpp ignores the number
    finally:
        cpu.close()


@pytest.mark.slow
def test_the_default_model_runs_where_this_build_of_llama_cpp_can(model: LlamaModel) -> None:
    if llama_cpp.llama_supports_gpu_offload():
        assert model.device == f"GPU ({model.n_layer} of {model.n_layer} layers)"
    else:
        assert model.device == "CPU" and model.n_gpu_layers == 0
