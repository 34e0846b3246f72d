from chinwag.backends.stops import StopEvents, StopScanner
from chinwag.types import TokenEvent, TokenLogprob


def feed_all(scanner: StopScanner, pieces: list[str]) -> str:
    return "".join(scanner.feed(p) for p in pieces) + scanner.flush()


def test_stop_string_split_over_pieces_is_not_emitted() -> None:
    scanner = StopScanner(["\nTraveller:"])
    assert feed_all(scanner, ["Hello", " there", "\nTrav", "eller:", " more"]) == "Hello there"
    assert scanner.stopped


def test_partial_match_that_turns_out_not_to_be_a_stop_is_released() -> None:
    scanner = StopScanner(["\nTraveller:"])
    assert feed_all(scanner, ["a\nTra", "in"]) == "a\nTrain"
    assert not scanner.stopped


def test_earliest_of_several_stop_strings_wins() -> None:
    scanner = StopScanner(["END", "\n\n"])
    assert feed_all(scanner, ["one\n\ntwo END"]) == "one"


def test_no_stop_strings_passes_everything() -> None:
    assert feed_all(StopScanner([]), ["a", "b"]) == "ab"


# -- token events with their log-probability records ---------------------------------------------

def run(events: StopEvents, pieces: list[str], final: str = "") -> list[TokenEvent]:
    """Feed each piece with one record named after it; the events that come out."""
    out = [events.feed(p, (TokenLogprob(p, -1.0),)) for p in pieces]
    return [e for e in [*out, events.finish(final)] if e is not None]


def test_each_record_comes_with_the_event_that_ends_its_text() -> None:
    """A held-back piece's record waits for the event that lets its text out."""
    out = run(StopEvents(["\nTraveller:"]), ["Hello", " there", "\nTrav", "el"])
    assert [e.text for e in out] == ["Hello", " there", "\nTravel"]
    assert [[r.token for r in e.logprobs] for e in out] == [
        ["Hello"], [" there"], ["\nTrav", "el"]]


def test_records_of_text_a_stop_string_cut_are_dropped_the_rest_reported_once() -> None:
    """The piece that starts before the stop string keeps its record; the pieces of the stop
    string do not; every other record comes once, in order."""
    out = run(StopEvents(["END"]), ["one", " twoE", "N", "D", " three"])
    assert "".join(e.text for e in out) == "one two"
    assert [r.token for e in out for r in e.logprobs] == ["one", " twoE"]


def test_a_piece_of_no_text_keeps_its_record_for_the_end() -> None:
    """Part of a character decodes to nothing: its record still comes, with the last event."""
    events = StopEvents([])
    assert events.feed("a", (TokenLogprob("a", -1.0),)) is not None
    assert events.feed("", (TokenLogprob("", -2.0, (0xF0,)),)) is None
    last = events.finish("\ufffd")
    assert last is not None and last.text == "\ufffd"
    assert [r.logprob for r in last.logprobs] == [-2.0]


def test_without_records_the_events_are_the_scanners_text() -> None:
    events = StopEvents(["\nUser:"])
    out = [events.feed(p) for p in ["Hi", "\nUs", "er:", "more"]]
    assert [e.text if e else None for e in out] == ["Hi", None, None, None]
    assert events.stopped and events.finish() is None
