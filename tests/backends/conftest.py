"""Fixtures for backend tests: a tiny Hugging Face model built in-process (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

# Text the tiny tokenizer learns its merges from: enough English, chat markup and JSON for
# every prompt the tests send to become a handful of tokens each.
_CORPUS = [
    "Once upon a time, there was a little village by the sea.",
    "The weather today is sunny and warm; tomorrow it may rain.",
    "Hello! What is the name of this village? Bertha: Well met, traveller.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Count with me: one, two, three, four, five, six, seven, eight, nine, ten.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20",
    '{"name": "Alice", "age": 30, "ok": true, "color": "red", "tags": ["a", "b"]}',
    '[{"label": "green", "ok": false}, {"label": "blue", "ok": null}]',
    "You are a helpful assistant. Answer the user's question in one sentence.",
    "naïve café façade — quotes 'single' and \"double\", tabs\tand\nnew lines.",
]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""The tiny model's own chat template: ``<s><|user|>\\nHi</s>\\n<|assistant|>\\n``."""


def build_tiny_hf_model(folder: Path) -> Path:
    """Write a tiny random-weight causal LM and its tokenizer into ``folder``.

    The model is a 2-layer Llama (hidden size 64, 4 heads, 512 positions, about 125k
    parameters) with weights drawn under ``torch.manual_seed(0)``, so every build is the same.
    The tokenizer is a byte-level BPE of about 400 tokens trained on ``_CORPUS``, with BOS
    ``<s>`` (added to every prompt), EOS ``</s>``, role markers ``<|system|>``, ``<|user|>``,
    ``<|assistant|>``, and ``CHAT_TEMPLATE`` as its chat template. Takes about a second.

    Returns:
        ``folder``, loadable with ``from_pretrained(folder, local_files_only=True)``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    bos = bpe.token_to_id("<s>")
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        pad_token="</s>", chat_template=CHAT_TEMPLATE)
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, initializer_range=0.1,
                         bos_token_id=bos, eos_token_id=bpe.token_to_id("</s>"),
                         pad_token_id=bpe.token_to_id("</s>"), tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny random-weight Hugging Face causal LM with a chat template.

    Built in-process once per session (see ``build_tiny_hf_model``); skips when the
    ``transformers`` extra is not installed.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return build_tiny_hf_model(tmp_path_factory.mktemp("tiny-hf-model"))
