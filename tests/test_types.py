import pytest

from chinwag.errors import InvalidParams
from chinwag.types import Done, Message, SamplingParams, TokenEvent, Usage, collect


@pytest.mark.parametrize("field, value", [
    ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("min_p", -1.0), ("top_k", -1),
    ("max_tokens", 0), ("repeat_penalty", 0.0), ("seed", -5), ("temperature", float("nan")),
    ("temperature", "hot"), ("presence_penalty", 2.5), ("frequency_penalty", -2.1),
    ("presence_penalty", float("nan")), ("logit_bias", {5: 150.0}), ("logit_bias", {-1: 1.0}),
    ("logit_bias", {"12": 1.0}), ("logprobs", 21), ("logprobs", -1), ("logprobs", True),
])
def test_invalid_sampling_value_is_rejected_with_its_name(field: str, value: object) -> None:
    with pytest.raises(InvalidParams) as err:
        SamplingParams(**{field: value})  # type: ignore[arg-type]
    assert err.value.param == field
    assert field in str(err.value)


def test_with_rejects_unknown_parameter() -> None:
    with pytest.raises(InvalidParams, match="unknown sampling parameter"):
        SamplingParams().with_(temprature=0.5)


def test_with_validates_and_copies() -> None:
    base = SamplingParams()
    changed = base.with_(temperature=0, stop=["\n"])
    assert changed.temperature == 0 and changed.stop == ("\n",)
    assert base.temperature == 0.8


def test_message_role_is_checked() -> None:
    with pytest.raises(InvalidParams, match="role"):
        Message("narrator", "hi")  # type: ignore[arg-type]


def test_collect_joins_text_and_returns_done() -> None:
    done = Done("stop", Usage(3, 2))
    text, end = collect(iter([TokenEvent("Hel"), TokenEvent("lo"), done]))
    assert (text, end) == ("Hello", done)
    assert end.usage.total_tokens == 5
