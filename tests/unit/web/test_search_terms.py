"""How transcripts and queries become index terms (callcenter.storage.search)."""

import pytest

from callcenter.storage.search import QueryError, _pg_tsquery, _pg_tsvector, document_terms, query_phrases


def test_chinese_runs_become_overlapping_bigrams_and_punctuation_splits_runs():
    assert document_terms(["车洗得不干净，等了"]) == ["车洗", "洗得", "得不", "不干", "干净", "等了"]


def test_latin_words_and_numbers_are_whole_lowercase_terms_full_width_folded():
    assert document_terms(["4S店 OK", "ＡＢＣ１２３"]) == ["4s", "店", "ok", "abc123"]


def test_a_query_is_one_phrase_per_run():
    assert query_phrases("不满意") == [["不满", "满意"]]
    assert query_phrases("洗车 价格") == [["洗车"], ["价格"]]


@pytest.mark.parametrize("query", ["", "  ", "！？", "好"])
def test_unsearchable_queries_say_why(query):
    with pytest.raises(QueryError):
        query_phrases(query)


def test_postgres_literals_quote_lexemes_and_keep_positions():
    assert _pg_tsvector(["ab", "it's", "ab"]) == "'ab':1,3 'it''s':2"
    assert _pg_tsquery([["不满", "满意"], ["ok"]]) == "('不满' <-> '满意') & ('ok')"
