"""Retrievers on a tiny Korean corpus: terms, ranking, save/load, manifests, index, recall."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata

import bm25s
import numpy as np
import pytest

from korqa.cli import main
from korqa.corpus import Paragraph, ParagraphStore
from korqa.corpus.paragraph import document_id
from korqa.retrieval import (
    BM25Retriever,
    HybridRetriever,
    Index,
    TermAnalyzer,
    TermConfig,
    TfidfRetriever,
    build_index,
    load_retriever,
)
from korqa.retrieval.bm25 import bm25_weights
from korqa.retrieval.evaluate import evaluate_recall, load_questions
from korqa.retrieval.sparse import count_matrix

DOCS = {
    "서울": "서울특별시는 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "부산": "부산광역시는 대한민국 남동부에 있는 항구 도시로 해운대 해수욕장이 유명하다.",
    "한라산": "한라산은 제주도에 있는 산으로 높이는 1947미터이다. 산 정상에는 백록담이 있다.",
    "세종": "세종은 조선의 제4대 왕으로 훈민정음을 창제하였다.",
    "김치": "김치는 배추와 무를 소금에 절여 고춧가루와 젓갈로 버무린 한국의 발효 음식이다.",
    "이순신": "이순신은 조선 중기의 무신으로 임진왜란 때 거북선을 이끌고 왜군을 물리쳤다.",
}
QUERIES = {
    "훈민정음을 창제한 왕은?": "세종",
    "백록담이 있는 산의 높이는?": "한라산",
    "거북선을 이끈 조선의 장군은 누구인가?": "이순신",
    "해운대 해수욕장이 있는 항구 도시는?": "부산",
    "배추를 소금에 절인 발효 음식은?": "김치",
    "한강이 흐르는 대한민국의 수도는?": "서울",
}


def paragraphs() -> list[Paragraph]:
    return [Paragraph(f"t:{title}:0", title, text, title) for title, text in DOCS.items()]


def sparse_retrievers() -> dict[str, object]:
    return {
        "tfidf": TfidfRetriever(),
        "bm25": BM25Retriever(),
        "bm25-morphemes": BM25Retriever(TermConfig(ngrams=(2,), morphemes=True)),
        "hybrid-rrf": HybridRetriever([BM25Retriever(), TfidfRetriever()], fusion="rrf"),
        "hybrid-weighted": HybridRetriever([BM25Retriever(), TfidfRetriever()],
                                           fusion="weighted", weights=[0.7, 0.3]),
    }


# ---- terms ------------------------------------------------------------------------------


def test_terms_keep_one_syllable_words_and_hangul_intact():
    analyzer = TermAnalyzer(TermConfig(ngrams=(2,)))
    terms = analyzer("산 위의 강, 그리고 ABC 서울")
    assert "산" in terms and "강" in terms  # one-syllable words survive bigram-only terms
    assert "서울" in terms and "abc"[:2] in terms and "ab" in terms
    assert "강그" not in terms and "산위" not in terms  # n-grams never cross a space
    # Decomposed (NFD) jamo input is composed back: syllables, never jamo, reach the index.
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert TermAnalyzer(TermConfig(ngrams=(1,)))(decomposed) == ["한", "국", "어"]
    assert all("\u1100" > ch or ch > "\u11ff" for t in terms for ch in t)


def test_terms_morphemes_are_prefixed_and_config_round_trips():
    config = TermConfig(ngrams=(1, 2), words=True, morphemes=True)
    terms = TermAnalyzer(config)("훈민정음을 창제하였다")
    assert "m:훈민정음" in terms and "훈민정음을" in terms and "훈" in terms
    assert TermConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown field"):
        TermConfig.from_dict({"ngram": [2]})


# ---- ranking ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(sparse_retrievers()))
def test_each_retriever_ranks_the_right_paragraph_first(name):
    retriever = sparse_retrievers()[name]
    retriever.index(paragraphs(), progress=False)
    for query, title in QUERIES.items():
        hits = retriever.retrieve(query, k=3)
        assert hits[0][0] == f"t:{title}:0", (name, query, hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    batch = retriever.retrieve_many(list(QUERIES), k=2)
    assert [h[0][0] for h in batch] == [f"t:{t}:0" for t in QUERIES.values()]
    assert retriever.retrieve("zzzz", k=3) == []  # no shared term: nothing retrieved


def test_chunked_bm25_weights_equal_bm25s_index():
    analyzer = TermAnalyzer(TermConfig(ngrams=(1, 2)))
    texts = list(DOCS.values())
    counts, vocabulary = count_matrix(texts, analyzer, chunk_size=2, progress=False)
    ours = bm25_weights(counts, k1=1.2, b=0.75).toarray()
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([analyzer(t) for t in texts], show_progress=False)
    scores = reference.scores
    theirs = np.zeros((len(texts), len(reference.vocab_dict)), dtype=np.float32)
    for column in range(len(scores["indptr"]) - 1):
        lo, hi = scores["indptr"][column], scores["indptr"][column + 1]
        theirs[scores["indices"][lo:hi], column] = scores["data"][lo:hi]
    for term, column in vocabulary.items():
        np.testing.assert_allclose(ours[:, column], theirs[:, reference.vocab_dict[term]],
                                   rtol=1e-5)


def test_tiny_random_dense_encoder(tmp_path):
    from tiny import tiny_encoder

    from korqa.retrieval.dense import DenseRetriever

    encoder = tiny_encoder(tmp_path / "encoder", DOCS.values(), hidden_size=64, layers=2,
                           max_positions=128)

    retriever = DenseRetriever(encoder, max_length=128, batch_size=4)
    retriever.index(paragraphs(), progress=False)
    assert retriever.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(retriever.embeddings, axis=1), 1.0, rtol=1e-5)
    # Mean pooling ignores padding: a text encodes the same alone and batched with a longer one.
    alone = retriever.encode(["passage: 산"], 128)
    batched = retriever.encode(["passage: 산", "passage: " + DOCS["김치"]], 128)
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
    # A random encoder still maps a text closest to itself.
    for title, text in DOCS.items():
        assert retriever.retrieve(text, k=1)[0][0] == f"t:{title}:0"
    retriever.save(tmp_path / "dense")
    loaded = load_retriever(tmp_path / "dense")
    assert loaded.retrieve_many(list(QUERIES), 3) == retriever.retrieve_many(list(QUERIES), 3)


# ---- persistence ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tfidf", "bm25", "hybrid-rrf", "hybrid-weighted"])
def test_save_load_round_trip_gives_identical_results(tmp_path, name):
    retriever = sparse_retrievers()[name]
    retriever.index(paragraphs(), progress=False)
    retriever.save(tmp_path / "index")
    loaded = load_retriever(tmp_path / "index")
    assert type(loaded) is type(retriever) and loaded.params() == retriever.params()
    queries = [*QUERIES, "대한민국 조선", "없는말"]
    assert loaded.retrieve_many(queries, 5) == retriever.retrieve_many(queries, 5)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


@pytest.mark.parametrize("name", ["tfidf", "bm25", "hybrid-rrf"])
def test_corrupted_file_raises_a_clear_error(tmp_path, name):
    retriever = sparse_retrievers()[name]
    retriever.index(paragraphs(), progress=False)
    retriever.save(tmp_path / "index")
    victim = max((p for p in (tmp_path / "index").rglob("*")
                  if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{victim.name}: sha256 does not match"):
        load_retriever(tmp_path / "index")


def test_mismatched_manifest_raises_a_clear_error(tmp_path):
    retriever = BM25Retriever()
    retriever.index(paragraphs(), progress=False)
    directory = tmp_path / "index"
    retriever.save(directory)
    manifest_path = directory / "manifest.json"
    original = json.loads(manifest_path.read_text(encoding="utf-8"))

    def rewrite(**changes):
        manifest_path.write_text(json.dumps({**original, **changes}), encoding="utf-8")

    with pytest.raises(ValueError, match="field 'kind' is 'bm25', expected 'tfidf'"):
        TfidfRetriever.load(directory)
    rewrite(paragraph_count=7)
    with pytest.raises(ValueError, match="field 'paragraph_count' is 7"):
        load_retriever(directory)
    rewrite(format_version=99)
    with pytest.raises(ValueError, match="field 'format_version' is 99"):
        load_retriever(directory)
    rewrite(params={**original["params"], "k1": -1.0})  # k1 and b apply at query time
    with pytest.raises(ValueError, match="k1 must be positive"):
        load_retriever(directory)
    rewrite(files={**original["files"], "gone.npy": "0" * 64})
    with pytest.raises(FileNotFoundError, match="gone.npy"):
        load_retriever(directory)


def test_index_directory_build_update_and_search(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for title in ("서울", "부산", "세종"):
        (folder / f"{title}.txt").write_text(DOCS[title] + "\n\n" + title + " 문단.",
                                             encoding="utf-8")
    out = tmp_path / "index"
    added, total = build_index(out, [folder], "bm25", progress=False)
    assert (added.added, total) == (6, 6)
    with Index(out) as index:
        paragraph, score = index.search("훈민정음을 창제한 왕은?", k=1)[0]
        assert (paragraph.title, paragraph.id) == (
            "세종", f"file:{document_id(folder / '세종.txt')}:0") and score > 0
    # Documents added later join the store; the retriever is rebuilt over all of them.
    (folder / "김치.txt").write_text(DOCS["김치"], encoding="utf-8")
    added, total = build_index(out, [folder], "tfidf", progress=False)
    assert (added.added, added.unchanged, total) == (1, 6, 7)
    with Index(out) as index:
        assert index.retriever.kind == "tfidf"
        assert index.search("배추를 소금에 절인 음식", k=1)[0][0].title == "김치"
    # A store changed behind the index's back is caught.
    with ParagraphStore(out / "paragraphs.sqlite") as store:
        store.add([Paragraph("x:1:0", "x", "새 문단", "1")])
    with pytest.raises(ValueError, match=r"store \(7 paragraphs\), which is at generation \d+ "
                                         r"\(8 paragraphs"):
        Index(out)


# ---- retrieval-eval ---------------------------------------------------------------------


def korquad_like(path):
    """Five articles (index 4 is the test split), one question each and a hand-known outcome."""
    titles = ["서울", "부산", "한라산", "세종", "김치"]
    questions = [
        "한강이 흐르는 대한민국의 수도는?",      # 서울: rank 1
        "해운대 해수욕장이 있는 항구 도시는?",    # 부산: rank 1
        "제주도",                                 # 한라산: rank 1 (only paragraph with 제주도)
        "xyz qqq",                                # 세종: shares no term, never retrieved
        "김치",                                   # 김치 (test split): rank 1
    ]
    data = {"version": "t", "data": [
        {"title": t, "paragraphs": [{"context": DOCS[t], "qas": [
            {"id": str(i), "question": q, "answers": [{"text": DOCS[t][:2], "answer_start": 0}]}
        ]}]} for i, (t, q) in enumerate(zip(titles, questions, strict=True))]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_retrieval_eval_recall_equals_a_hand_count(tmp_path, capsys):
    data = korquad_like(tmp_path / "kq.json")
    assert main(["retrieval-eval", "--data", str(data), "--corpus", str(data), "--split", "all",
                 "--k", "1,5", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rule"] == "context" and result["questions"] == 5
    assert result["recall@1"] == pytest.approx(4 / 5) and result["recall@5"] == pytest.approx(4 / 5)
    assert result["latency_ms"]["mean"] >= 0
    assert main(["retrieval-eval", "--data", str(data), "--corpus", str(data), "--split", "test",
                 "--k", "1", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["questions"], result["recall@1"]) == (1, 1.0)
    assert main(["retrieval-eval", "--data", str(data), "--corpus", str(data),
                 "--k", "1,x", "--no-progress"]) == 2
    assert "--k" in capsys.readouterr().err


def test_title_answer_rule_for_corpora_from_another_dump(tmp_path):
    data = korquad_like(tmp_path / "kq.json")
    # A "wiki" whose paragraphs differ from the contexts: hits need the title and the answer.
    wiki = tmp_path / "wiki.jsonl"
    docs = [{"id": str(i), "title": t, "paragraphs": [DOCS[t][:-1] + "고 한다.", "기타 내용"]}
            for i, t in enumerate(["서울", "부산", "한라산", "세종", "김치"])]
    wiki.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                    encoding="utf-8")
    out = tmp_path / "index"
    build_index(out, [wiki], BM25Retriever(), progress=False)
    with Index(out) as index:
        questions = load_questions(data, "all")
        result = evaluate_recall(index.retriever, index.store, questions, ks=(1, 5))
        forced = evaluate_recall(index.retriever, index.store, questions, ks=(1,), rule="context")
    assert result["rule"] == "title-answer" and result["questions_without_gold"] == 0
    # As with the context rule, only 세종's question (no shared term) misses.
    assert result["recall@1"] == pytest.approx(4 / 5)
    assert (forced["questions_without_gold"], forced["recall@1"]) == (5, 0.0)


def test_tfidf_query_vectors_equal_scikit_learns_transform():
    from korqa.retrieval.sparse import query_counts

    retriever = TfidfRetriever()
    retriever.index(paragraphs(), progress=False)
    queries = [*QUERIES, "없는말 zzz", "산 산 산 강"]
    ours = retriever.query_vectors(queries).toarray()
    counts = query_counts(retriever.analyzer.many(queries), retriever.vocabulary)
    import scipy.sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    reference = TfidfTransformer(sublinear_tf=retriever.sublinear_tf)
    reference.idf_ = retriever.idf  # the index's own; its fit is checked in test_sparse_matrix
    expected = reference.transform(scipy.sparse.csr_matrix(counts.toarray()))
    np.testing.assert_allclose(ours, expected.toarray(), rtol=1e-6)


def test_retrieval_never_imports_torch():
    code = ("import sys, korqa.corpus, korqa.retrieval, korqa.retrieval.dense, korqa.cli; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_title_answer_rule_reads_underscores_as_spaces(tmp_path):
    from korqa.retrieval.evaluate import GoldJudge, Question

    with ParagraphStore(tmp_path / "s.sqlite") as store:
        store.add([Paragraph("w:1:0", "알렉산더 헤이그", "헤이그는 국무장관이었다.", "1")])
        judge = GoldJudge(store, "title-answer")
        question = Question("q", "누가 국무장관?", "…", "알렉산더_헤이그", ("헤이그",), 0)
        assert judge.answerable(question)
        assert judge.first_hit_rank(question, [("w:1:0", 1.0)]) == 1
