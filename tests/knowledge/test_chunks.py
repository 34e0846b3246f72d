"""Chunking, and the chunks that best answer a question within a token budget (FTS5 BM25)."""

from __future__ import annotations

from chinwag.knowledge.chunks import fts_query, join_chunks, rank, select_chunks, split_chunks


def words(text: str) -> int:
    return len(text.split())


def test_paragraphs_are_joined_while_they_fit_and_long_ones_are_cut() -> None:
    text = "one two three\n\nfour five\n\n" + " ".join(f"w{i}." for i in range(25))
    chunks = split_chunks(text, max_words=10)
    assert chunks[0].startswith("one two three\nfour five\n")  # joined while they fit
    assert all(words(c) <= 10 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_no_words_no_chunks() -> None:
    assert split_chunks("  \n\n ") == []
    assert fts_query("?! ...") is None


def test_fts_syntax_in_a_question_is_only_words() -> None:
    assert fts_query('NEAR(a b) AND "x" OR col:y*') == \
        '"near" OR "a" OR "b" OR "and" OR "x" OR "or" OR "col" OR "y"'


def test_rank_puts_matching_chunks_first_then_the_rest_in_order() -> None:
    chunks = ["the mill grinds corn", "goats on the hill", "the bridge was built by Ada",
              "cheese from goats"]
    order = rank(chunks, "Who built the bridge?")
    assert order[0] == 2
    assert sorted(order) == [0, 1, 2, 3]


def test_select_keeps_everything_that_fits() -> None:
    chunks = ["a b", "c d"]
    assert select_chunks(chunks, "x", 100, words) == chunks


def test_select_keeps_the_best_chunks_in_document_order_within_the_budget() -> None:
    chunks = [f"filler text number {i} about nothing" for i in range(20)]
    chunks[3] = "the goat Moss is nineteen"
    chunks[15] = "the goat Moss eats turnips"
    kept = select_chunks(chunks, "What does Moss the goat eat?", 16, words)
    assert kept == [chunks[3], chunks[15]]
    assert words(join_chunks(kept)) <= 16
