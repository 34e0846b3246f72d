from chinwag.backends.stops import StopScanner


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
