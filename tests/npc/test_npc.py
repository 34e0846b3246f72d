"""The game-agnostic NPC on the scripted backend, with a clock the test moves: thinking lines,
replies, cancel and failure leaving nothing behind, overheard lines, memories kept apart and
kept across processes, talk while busy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat.memory import MemoryPolicy
from chinwag.chat.persona import Persona
from chinwag.errors import Cancelled, InvalidParams, NPCBusy
from chinwag.npc import NPC, Failed, NPCEvent, Reply, Thinking, Token, tidy_npc_reply
from chinwag.store import Store
from support.gated import GatedBackend
from support.waiting import until

T = TypeVar("T")

PERSONA = Persona(
    name="villager", character="Bertha", description="an old villager",
    location="the square", user_name="Traveller",
    system_prompt="You are {name}, {description}, in {location}, talking with {user}.",
    memory=MemoryPolicy(policy="window", window=25),
    thinking_lines=("{name} ponders your words...", "{name} scratches her head."),
    fallback_lines=("{name} shrugs.",))


class ManualClock:
    """``sleep`` for the NPC: sleepers wake only when the test moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, wake))
        await wake

    @property
    def deadlines(self) -> list[float]:
        return [at for at, wake in self.sleepers if not wake.done()]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, wake in self.sleepers:
            if at <= self.now + 1e-9 and not wake.done():
                wake.set_result(None)
        self.sleepers = [(at, w) for at, w in self.sleepers if not w.done()]


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


async def collect(events: Any, into: list[NPCEvent]) -> None:
    async for event in events:
        into.append(event)


async def say(npc: NPC, player: str, text: str, **context: str) -> list[NPCEvent]:
    return [e async for e in npc.talk(player, text, context)]


def messages(store: Store, npc: NPC, player: str) -> list[tuple[str, str]]:
    found = store.latest_conversation(npc.persona.name, player, scope=npc.id)
    return [] if found is None else [(m.role, m.content) for m in store.messages(found.id)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "chinwag.db") as opened:
        yield opened


def test_thinking_lines_after_thinking_after_then_every_thinking_every(store: Store) -> None:
    backend, clock = GatedBackend("Well met, dear."), ManualClock()
    npc = NPC(PERSONA, backend, store, sleep=clock.sleep)

    async def main() -> list[NPCEvent]:
        got: list[NPCEvent] = []
        reading = asyncio.create_task(collect(npc.talk("p1", "Hello"), got))
        await until(lambda: clock.deadlines == [2.0] and backend.holding.is_set())
        clock.advance(1.9)
        assert clock.deadlines == [2.0] and got == []
        clock.advance(0.1)
        await until(lambda: len(got) == 1 and clock.deadlines == [10.0])
        clock.advance(7.9)
        assert clock.deadlines == [10.0] and len(got) == 1
        clock.advance(0.1)
        await until(lambda: len(got) == 2 and clock.deadlines == [18.0])
        backend.gate.set()
        await reading
        return got

    got = run(main)
    assert got[:2] == [Thinking("Bertha ponders your words..."),
                       Thinking("Bertha scratches her head.")]
    assert all(isinstance(e, Token) for e in got[2:-1])
    assert isinstance(got[-1], Reply) and got[-1].text == "Well met, dear."


def test_no_thinking_line_when_the_reply_comes_first(store: Store) -> None:
    clock = ManualClock()
    npc = NPC(PERSONA, ScriptedBackend(["Hi."]), store, sleep=clock.sleep)
    got = run(lambda: say(npc, "p1", "Hello"))
    assert not any(isinstance(e, Thinking) for e in got)
    assert got[-1] == Reply("Hi.", store.latest_conversation("villager", "p1",
                                                             scope="villager").id)  # type: ignore[union-attr]


def test_prompt_ends_with_the_npc_cue_and_context_fills_the_persona(store: Store) -> None:
    backend = ScriptedBackend(["Berta: Hello, Ada.\nAda: and then I said"])
    npc = NPC(PERSONA, backend, store)
    got = run(lambda: say(npc, "p1", "Hi", user="Ada", location="the mill", name="Berta"))
    prompt = backend.requests[-1].prompt
    assert "You are Berta, an old villager, in the mill, talking with Ada." in prompt
    assert prompt.endswith("Ada: Hi\nBerta:")
    assert got[-1] == Reply("Hello, Ada.", got[-1].conversation)  # type: ignore[union-attr]
    conversation = store.latest_conversation("villager", "p1", scope="villager")
    assert conversation is not None and conversation.user == "p1"


def test_tidy_keeps_one_speakers_words() -> None:
    assert tidy_npc_reply("Bertha: Hi.\nTraveller: bye", PERSONA) == "Hi."
    assert tidy_npc_reply("Hi.\nOld Tom: stew!", PERSONA) == "Hi."
    assert tidy_npc_reply("  Hi.\nsecond line  ", PERSONA) == "Hi.\nsecond line"


def test_unknown_context_key_is_refused(store: Store) -> None:
    npc = NPC(PERSONA, ScriptedBackend(), store)
    with pytest.raises(InvalidParams):
        npc.talk("p1", "hi", {"mood": "grumpy"})


def test_cancel_stops_the_generation_and_stores_nothing(store: Store) -> None:
    backend = GatedBackend("one two three four", hold_after=1)
    npc = NPC(PERSONA, backend, store)

    async def main() -> list[NPCEvent]:
        got: list[NPCEvent] = []
        reading = asyncio.create_task(collect(npc.talk("p1", "Tell me a story"), got))
        await until(lambda: any(isinstance(e, Token) for e in got))
        assert npc.cancel("p1")
        await reading
        return got

    got = run(main)
    assert isinstance(got[-1], Failed) and isinstance(got[-1].error, Cancelled)
    assert got[-1].fallback_line == ""
    assert messages(store, npc, "p1") == []
    assert not npc.busy("p1") and not npc.cancel("p1")


def test_a_reader_leaving_early_stores_nothing(store: Store) -> None:
    backend = GatedBackend("one two three", hold_after=1)
    npc = NPC(PERSONA, backend, store)

    async def main() -> None:
        events = npc.talk("p1", "Hello")
        async for event in events:
            if isinstance(event, Token):
                break
        await events.aclose()  # type: ignore[attr-defined]

    run(main)
    assert messages(store, npc, "p1") == []


def test_a_failed_call_is_not_sent_again(store: Store) -> None:
    backend = ScriptedBackend()
    backend.enqueue_failure("boom", partial="half a")
    backend.enqueue("Sorry, what?")
    npc = NPC(PERSONA, backend, store)
    failed = run(lambda: say(npc, "p1", "Where is the mill?"))[-1]
    assert isinstance(failed, Failed) and failed.fallback_line == "Bertha shrugs."
    assert "boom" in failed.reason
    assert messages(store, npc, "p1") == []
    run(lambda: say(npc, "p1", "Hello again"))
    assert "Where is the mill?" not in backend.requests[-1].prompt
    assert messages(store, npc, "p1") == [("user", "Hello again"), ("assistant", "Sorry, what?")]


def test_overheard_lines_are_in_the_hearers_prompts_only(store: Store) -> None:
    backend = ScriptedBackend(default_reply="Mm.")
    npc = NPC(PERSONA, backend, store)

    async def main() -> None:
        await npc.overhear("Bob", "The mill burned down!", ["p1", "p2"])
        await say(npc, "p1", "Did you hear?")
        await say(npc, "p3", "Hello")

    run(main)
    p1, p3 = backend.requests[0].prompt, backend.requests[1].prompt
    assert "[Bob: The mill burned down!]\nDid you hear?" in p1
    assert p1.endswith("Bertha:")
    assert "mill burned" not in p3
    assert messages(store, npc, "p2") == [("system", "Bob: The mill burned down!")]
    run(lambda: say(npc, "p2", "Hi"))
    assert "[Bob: The mill burned down!]\nHi" in backend.requests[-1].prompt
    run(lambda: say(npc, "p2", "And?"))  # later turns still show it, in its place
    assert "[Bob: The mill burned down!]\nHi\nBertha: Mm.\nTraveller: And?" in \
        backend.requests[-1].prompt


def test_a_line_overheard_during_a_turn_is_written_after_it(store: Store) -> None:
    backend = GatedBackend("Yes.", hold_after=0)
    npc = NPC(PERSONA, backend, store)

    async def main() -> None:
        got: list[NPCEvent] = []
        reading = asyncio.create_task(collect(npc.talk("p1", "Hi"), got))
        await until(backend.holding.is_set)
        await npc.overhear("Bob", "Psst.", ["p1"])
        backend.gate.set()
        await reading

    run(main)
    assert messages(store, npc, "p1") == [("user", "Hi"), ("assistant", "Yes."),
                                          ("system", "Bob: Psst.")]


def test_two_players_and_two_npcs_remember_apart(store: Store) -> None:
    backend = ScriptedBackend(default_reply="Noted.")
    north = NPC(PERSONA, backend, store, npc_id="villager-north")
    south = NPC(PERSONA, backend, store, npc_id="villager-south")

    async def main() -> None:
        await say(north, "p1", "My name is Ada.")
        await say(north, "p2", "My name is Bo.")
        await say(south, "p1", "Who am I?")
        await say(north, "p1", "Who am I?")

    run(main)
    south_prompt, north_prompt = backend.requests[2].prompt, backend.requests[3].prompt
    assert "Ada" not in south_prompt
    assert "My name is Ada." in north_prompt and "Bo" not in north_prompt


def test_memory_survives_a_new_process_on_the_same_database(tmp_path: Path) -> None:
    path = tmp_path / "game.db"
    with Store(path) as first:
        run(lambda: say(NPC(PERSONA, ScriptedBackend(["Welcome!"]), first), "p1",
                        "I am Ada."))
    backend = ScriptedBackend(["Ada, of course."])
    with Store(path) as second:
        run(lambda: say(NPC(PERSONA, backend, second), "p1", "Who am I?"))
    assert "Traveller: I am Ada.\nBertha: Welcome!\nTraveller: Who am I?\nBertha:" in \
        backend.requests[-1].prompt


def test_a_second_line_waits_for_the_first_reply(store: Store) -> None:
    backend = GatedBackend("First answer.", "Second answer.")
    npc = NPC(PERSONA, backend, store)

    async def main() -> tuple[list[NPCEvent], list[NPCEvent]]:
        first: list[NPCEvent] = []
        second: list[NPCEvent] = []
        one = asyncio.create_task(collect(npc.talk("p1", "One"), first))
        await until(backend.holding.is_set)
        two = asyncio.create_task(collect(npc.talk("p1", "Two"), second))
        await until(lambda: npc.busy("p1"))
        assert len(backend.requests) == 1
        backend.gate.set()
        await asyncio.gather(one, two)
        return first, second

    first, second = run(main)
    assert first[-1].text == "First answer."  # type: ignore[union-attr]
    assert second[-1].text == "Second answer."  # type: ignore[union-attr]
    assert "One\nBertha: First answer.\nTraveller: Two" in backend.requests[1].prompt


def test_on_busy_reject_refuses_a_second_line(store: Store) -> None:
    backend = GatedBackend("Answer.")
    npc = NPC(PERSONA, backend, store, on_busy="reject")

    async def main() -> None:
        got: list[NPCEvent] = []
        one = asyncio.create_task(collect(npc.talk("p1", "One"), got))
        await until(backend.holding.is_set)
        with pytest.raises(NPCBusy):
            npc.talk("p1", "Two")
        npc.talk("p2", "Hi")  # another player is not refused
        backend.gate.set()
        await one
        assert isinstance(got[-1], Reply)

    run(main)


def test_a_backend_raising_a_stray_error_still_ends_the_turn(store: Store) -> None:
    class Broken(ScriptedBackend):
        def generate(self, prompt: str, params: Any) -> Any:
            raise RuntimeError("unexpected")

    npc = NPC(PERSONA, Broken(), store)
    last = run(lambda: say(npc, "p1", "Hello"))[-1]
    assert isinstance(last, Failed) and "RuntimeError" in last.reason
    assert last.fallback_line == "Bertha shrugs."
    assert messages(store, npc, "p1") == []


def test_the_running_summary_is_written_after_the_reply(store: Store) -> None:
    persona = PERSONA.model_copy(update={"memory": MemoryPolicy(
        policy="summary", window=2, summary_batch=1)})
    backend = ScriptedBackend(default_reply="Ada likes goats.")
    npc = NPC(persona, backend, store)

    async def main() -> None:
        for text in ("I am Ada.", "I like goats.", "And cheese."):
            await say(npc, "p1", text)
        await npc.aclose()

    run(main)
    found = store.latest_conversation("villager", "p1", scope="villager")
    assert found is not None and "Ada likes goats." in found.summary
