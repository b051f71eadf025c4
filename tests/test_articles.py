"""The two-stage article retriever on a tiny corpus: its paragraph part is BM25, its article part
finds the article a question names, save/load, and documents whose paragraphs are scattered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from korqa.corpus import Paragraph
from korqa.retrieval import BM25Retriever, Index, TermConfig, build_index, load_retriever
from korqa.retrieval.articles import ArticleRetriever

ARTICLES = {
    "한라산": ["한라산은 제주도 한가운데에 있는 화산이다.",
             "정상의 화구호를 백록담이라 부르며 높이는 1947미터이다.",
             "등산로는 성판악 코스와 관음사 코스가 있다."],
    "세종": ["세종은 조선의 제4대 왕이다.",
           "집현전 학자들과 함께 훈민정음을 창제하였다."],
    "이순신": ["이순신은 조선 중기의 무신이다.",
            "임진왜란 때 거북선을 이끌고 한산도에서 왜군을 물리쳤다."],
    "부산": ["부산은 대한민국 남동부의 항구 도시이다.",
           "해운대 해수욕장과 자갈치 시장이 유명하다."],
}


def paragraphs() -> list[Paragraph]:
    return [Paragraph(f"t:{title}:{i}", title, text, title)
            for title, texts in ARTICLES.items() for i, text in enumerate(texts)]


def test_without_the_article_part_it_ranks_exactly_as_paragraph_bm25():
    articles = ArticleRetriever(k1=0.6, b=0.75, weight=0.0)
    bm25 = BM25Retriever(k1=0.6, b=0.75, with_title=True)
    articles.index(paragraphs(), progress=False)
    bm25.index(paragraphs(), progress=False)
    for query in ["백록담의 높이는?", "거북선을 이끈 장군", "훈민정음 창제", "자갈치 시장"]:
        mine, theirs = articles.retrieve(query, 5), bm25.retrieve(query, 5)
        # Normalised by the best score, so compare orders and score ratios.
        assert [p for p, _ in mine] == [p for p, _ in theirs]
        assert np.allclose([s for _, s in mine], [s / theirs[0][1] for _, s in theirs],
                           rtol=1e-5)


def test_the_article_a_question_names_lifts_its_paragraphs():
    # "높이" is in the 한라산 article's second paragraph only; the question names 한라산,
    # which that paragraph's text does not (only its title does, once).
    query = "한라산 정상의 높이는?"
    paragraph_only = ArticleRetriever(weight=0.0)
    with_articles = ArticleRetriever(weight=2.0)
    for retriever in (paragraph_only, with_articles):
        retriever.index(paragraphs(), progress=False)
    top = [p for p, _ in with_articles.retrieve(query, 3)]
    assert top == ["t:한라산:1", "t:한라산:0", "t:한라산:2"]
    # The article part adds the same amount to every paragraph of an article, so inside
    # 한라산 the paragraph order stays paragraph BM25's.
    inside = [p for p, _ in paragraph_only.retrieve(query, 10) if p.startswith("t:한라산")]
    assert inside == top


def test_only_the_top_articles_count_when_articles_is_set():
    retriever = ArticleRetriever(weight=10.0, articles=1)
    retriever.index(paragraphs(), progress=False)
    hits = retriever.retrieve("조선의 왕 세종과 장군 이순신", 9)
    scores = dict(hits)
    # Both articles match; only the better one gets the (large) article share.
    best = max(("세종", "이순신"), key=lambda t: scores[f"t:{t}:0"])
    other = "이순신" if best == "세종" else "세종"
    assert all(scores[f"t:{best}:0"] > s for p, s in hits if p.startswith(f"t:{other}"))
    assert scores[f"t:{best}:0"] > 5.0 > max(s for p, s in hits if p.startswith(f"t:{other}"))


def test_common_terms_are_skipped_above_max_df():
    retriever = ArticleRetriever(max_df=0.5)
    retriever.index(paragraphs(), progress=False)
    # "이" is in more than half of the paragraphs; "다" ends every one of them.
    assert retriever._query_terms(["다", "이", "백록"]) == [retriever.vocabulary["백록"]]
    assert ArticleRetriever(max_df=1.0)._query_terms([]) == []
    with pytest.raises(ValueError, match="max_df"):
        ArticleRetriever(max_df=0.0)


def test_scattered_paragraphs_of_a_document_give_the_same_ranking():
    ordered = paragraphs()
    # Every document's paragraphs interleaved with the others', across small chunks.
    scattered = sorted(ordered, key=lambda p: (int(p.id.rsplit(":", 1)[1]), p.title))
    one = ArticleRetriever(chunk_size=3)
    two = ArticleRetriever(chunk_size=3)
    one.index(ordered, progress=False)
    two.index(scattered, progress=False)
    for query in ["한라산 정상의 높이는?", "거북선", "조선의 왕"]:
        mine, theirs = dict(one.retrieve(query, 20)), dict(two.retrieve(query, 20))
        assert mine.keys() == theirs.keys()
        assert [mine[p] for p in mine] == pytest.approx([theirs[p] for p in mine], rel=1e-6)
    assert sorted(one.article_ids) == sorted(two.article_ids) == sorted(ARTICLES)


def test_save_load_round_trip_in_an_index_directory(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(
        json.dumps({"id": str(i), "title": title, "paragraphs": texts}, ensure_ascii=False) + "\n"
        for i, (title, texts) in enumerate(ARTICLES.items())), encoding="utf-8")
    retriever = ArticleRetriever(terms=TermConfig(ngrams=(1, 2)), weight=0.7, title_weight=2.0)
    build_index(tmp_path / "idx", [corpus], retriever=retriever, progress=False)
    with Index(tmp_path / "idx") as index:
        assert isinstance(index.retriever, ArticleRetriever)
        assert index.retriever.params() == retriever.params()
        found = index.search("백록담의 높이는?", 2)
        assert found[0][0].title == "한라산" and "1947" in found[0][0].text
        assert index.retriever.retrieve("거북선", 3) == retriever.retrieve("거북선", 3)
        # Served from memory-mapped arrays, not copies.
        assert isinstance(index.retriever.matrices["paragraphs"]["data"], np.memmap)
    files = {p.name for p in (tmp_path / "idx" / "retriever").iterdir()}
    assert "paragraphs.data.npy" in files and not any(f.endswith(".pkl") for f in files)


def test_a_damaged_vocabulary_is_named_with_the_fix(tmp_path):
    retriever = ArticleRetriever()
    retriever.index(paragraphs(), progress=False)
    retriever.save(tmp_path / "r")
    (tmp_path / "r" / "vocabulary.json").write_text('{"terms": [', encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocabulary\.json.*rebuild"):
        load_retriever(tmp_path / "r", verify=False)


def test_korqa_index_builds_the_tuned_article_retriever(tmp_path):
    from korqa.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(
        json.dumps({"id": str(i), "title": title, "paragraphs": texts}, ensure_ascii=False) + "\n"
        for i, (title, texts) in enumerate(ARTICLES.items())), encoding="utf-8")
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"),
                 "--retriever", "articles", "--no-morphemes"]) == 0
    with Index(tmp_path / "idx") as index:
        params = index.retriever.params()
        assert index.retriever.kind == "articles" and not params["terms"]["morphemes"]
        assert (params["weight"], params["max_df"]) == (0.1, 0.2)  # the kowiki-tuned preset
        assert index.search("거북선을 이끈 장군", 1)[0][0].title == "이순신"
