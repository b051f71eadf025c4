"""Corpus formats (SQuAD JSON, JSONL, .jsonl.xz, text files, folders), stable ids and the
SQLite store."""

from __future__ import annotations

import json
import lzma
import sqlite3

import pytest

from korqa.corpus import Paragraph, ParagraphStore, iter_documents, load_corpus
from korqa.corpus.formats import corpus_files, read_jsonl, read_squad, write_json
from korqa.corpus.paragraph import document_id

DOCS = [
    {"id": "10", "title": "서울",
     "paragraphs": ["서울은 대한민국의 수도이다.", "", "한강이 흐른다."]},
    {"id": "11", "title": "산", "paragraphs": ["산은 높다."]},
]


def write_squad(path, articles):
    path.write_text(json.dumps({"version": "t", "data": articles}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def squad_article(title, contexts):
    return {"title": title, "paragraphs": [
        {"context": c, "qas": [{"id": f"{title}-{i}", "question": "무엇?", "answers": [],
                                "is_impossible": True}]}
        for i, c in enumerate(contexts)]}


def write_jsonl(path, docs):
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    if path.suffix == ".xz":
        with lzma.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_squad_loader_keeps_each_distinct_context_once(tmp_path):
    path = write_squad(tmp_path / "kq.json", [
        squad_article("서울", ["서울은 수도이다.", "한강이 흐른다.", "서울은 수도이다."]),
        squad_article("부산", ["한강이 흐른다.", "부산은 항구이다."]),
    ])
    paragraphs = list(load_corpus([path]))
    texts = [p.text for p in paragraphs]
    assert texts == ["서울은 수도이다.", "한강이 흐른다.", "부산은 항구이다."]
    seoul, busan = document_id(path, "서울"), document_id(path, "부산")
    assert [p.id for p in paragraphs] == [f"squad:{seoul}:0", f"squad:{seoul}:1",
                                          f"squad:{busan}:1"]
    assert paragraphs[2].title == "부산" and paragraphs[2].doc_id == busan
    assert list(load_corpus([path])) == paragraphs  # deterministic ids across runs


def test_squad_loader_names_the_bad_field(tmp_path):
    path = write_squad(tmp_path / "bad.json", [{"title": "x", "paragraphs": [{"qas": []}]}])
    with pytest.raises(ValueError, match=r"bad\.json: article 0 \('x'\), paragraph 0: .*'context'"):
        list(load_corpus([path]))
    (tmp_path / "nodata.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="'data'"):
        list(load_corpus([tmp_path / "nodata.json"]))


@pytest.mark.parametrize("name", ["wiki.jsonl", "wiki.jsonl.xz"])
def test_jsonl_loader_plain_and_xz(tmp_path, name):
    path = write_jsonl(tmp_path / name, DOCS)
    paragraphs = list(load_corpus([path]))
    ten, eleven = document_id(path, "10"), document_id(path, "11")
    assert [p.id for p in paragraphs] == [f"kowiki:{ten}:0", f"kowiki:{ten}:2",
                                          f"kowiki:{eleven}:0"]
    assert paragraphs[1] == Paragraph(f"kowiki:{ten}:2", "서울", "한강이 흐른다.", ten)


def test_jsonl_loader_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(DOCS[0]) + "\n" + '{"id": "12", "title": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: field 'paragraphs'"):
        list(load_corpus([path]))
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: invalid JSON"):
        list(load_corpus([path]))


def test_folder_loader_splits_on_blank_lines(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "한국.txt").write_text("첫 문단이다.\n둘째 줄.\n\n  \n둘째 문단.\n", encoding="utf-8")
    (folder / "sub" / "메모.md").write_text("# 제목\n\n본문이다.", encoding="utf-8")
    (folder / "skip.csv").write_text("a,b", encoding="utf-8")
    paragraphs = list(load_corpus([folder]))
    # The heading titles the paragraph under it; its block number stays taken, so the
    # paragraph keeps the id it had when headings were paragraphs.
    memo, korea = document_id(folder / "sub" / "메모.md"), document_id(folder / "한국.txt")
    assert [(p.id, p.title, p.text) for p in paragraphs] == [
        (f"file:{memo}:1", "제목", "본문이다."),
        (f"file:{korea}:0", "한국", "첫 문단이다.\n둘째 줄."),
        (f"file:{korea}:1", "한국", "둘째 문단."),
    ]


def test_load_corpus_dispatches_by_path(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("가나다.", encoding="utf-8")
    squad = write_squad(tmp_path / "kq.json", [squad_article("서울", ["서울은 수도이다."])])
    jsonl = write_jsonl(tmp_path / "w.jsonl.xz", DOCS[1:])
    ids = [p.id for p in load_corpus([folder, squad, jsonl])]
    assert ids == [f"file:{document_id(folder / 'a.txt')}:0",
                   f"squad:{document_id(squad, '서울')}:0", f"kowiki:{document_id(jsonl, '11')}:0"]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        list(load_corpus([tmp_path / "missing.json"]))
    (tmp_path / "x.csv").write_text("a", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.csv: unknown corpus kind"):
        list(load_corpus([tmp_path / "x.csv"]))


def test_a_folder_holds_text_files_and_kowiki_shards_not_squad_sets(tmp_path, caplog):
    folder = tmp_path / "docs"
    (folder / "wiki").mkdir(parents=True)
    (folder / "B.TXT").write_text("대문자 확장자도 읽는다.", encoding="utf-8")
    write_jsonl(folder / "wiki" / "w.jsonl", DOCS[1:])
    write_squad(folder / "set.json", [squad_article("서울", ["서울은 수도이다."])])
    documents = list(iter_documents([folder]))
    assert [(d.id, d.title) for d in documents] == [
        (document_id(folder / "B.TXT"), "B"),
        (document_id(folder / "wiki" / "w.jsonl", "11"), "산")]
    assert corpus_files([folder]) == [folder / "B.TXT", folder / "wiki" / "w.jsonl"]
    assert caplog.records[-1].getMessage() == \
        f"{folder}: skipped 1 file — 1 file of kinds korqa does not read (1 .json)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no \.jsonl, \.jsonl\.xz, \.txt, \.md, \.pdf, "
                                         r"\.docx, \.hwp, \.hwpx, \.html, \.htm files"):
        list(iter_documents([tmp_path / "empty"]))


def test_a_text_file_is_one_document_for_every_command(tmp_path):
    from korqa.convert.unigram import trim_texts
    from korqa.pretraining.data import read_documents

    path = tmp_path / "제주.txt"
    path.write_text("한라산\n\n한라산은 제주도에 있다.\n높이는 1,947미터이다.\n\n백록담이 있다.\n",
                    encoding="utf-8")
    (document,) = iter_documents([path])
    assert document.title == "한라산"  # the short first line is the title, not a paragraph
    texts = ["한라산은 제주도에 있다.\n높이는 1,947미터이다.", "백록담이 있다."]
    assert [p.text for p in document.paragraphs] == texts
    assert [p.text for p in load_corpus([path])] == texts  # korqa index, korqa cloze
    assert list(read_documents(corpus_files([path]))) == [texts]  # korqa vocab, korqa pretrain
    assert list(trim_texts([path])) == ["한라산", *texts]  # import-e5/export --trim-corpus


def test_squad_files_may_be_gzipped_and_are_validated_whole(tmp_path):
    article = squad_article("서울", ["서울은 수도이다."])
    article["paragraphs"][0]["qas"] = [{"id": "q", "question": "어디?",
                                        "answers": [{"text": "서울", "answer_start": 0}]}]
    write_json({"data": [article]}, tmp_path / "kq.json.gz")
    assert [p.id for p in load_corpus([tmp_path / "kq.json.gz"])] == [
        f"squad:{document_id(tmp_path / 'kq.json.gz', '서울')}:0"]
    assert [e.qid for e in read_squad(tmp_path / "kq.json.gz")] == ["q"]
    article["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    write_squad(tmp_path / "bad.json", [article])
    # An index of a SQuAD file reads it through the same checks as training does.
    with pytest.raises(ValueError, match=r"bad\.json: article 0 \('서울'\), question 'q'"):
        list(load_corpus([tmp_path / "bad.json"]))


def test_store_add_get_iterate_and_update(tmp_path):
    path = tmp_path / "store.sqlite"
    # The store keys paragraphs by whatever ids it is given; short ones read better here.
    prefix = document_id(write_jsonl(tmp_path / "w.jsonl", DOCS), "")
    first = [Paragraph(p.id.replace(prefix, ""), p.title, p.text, p.doc_id.replace(prefix, ""))
             for p in load_corpus([tmp_path / "w.jsonl"])]
    with ParagraphStore(path) as store:
        assert store.add(first).added == 3
        again = store.add(first)
        assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
        assert store.count() == len(store) == 3
        got = store.get(["kowiki:11:0", "kowiki:10:0"])
        assert [p.text for p in got] == ["산은 높다.", "서울은 대한민국의 수도이다."]
        with pytest.raises(KeyError, match="nope"):
            store.get(["nope"])
    # Adding documents later: one edited paragraph, one new; order of first insertion is kept.
    edited = Paragraph("kowiki:10:0", "서울", "서울특별시는 수도이다.", "10")
    new = Paragraph("kowiki:12:0", "강", "강은 흐른다.", "12")
    with ParagraphStore(path) as store:
        result = store.add([edited, new])
        assert (result.added, result.updated, result.unchanged) == (1, 1, 0)
        assert [p.id for p in store] == ["kowiki:10:0", "kowiki:10:2", "kowiki:11:0",
                                         "kowiki:12:0"]
        assert store.get(["kowiki:10:0"])[0].text == "서울특별시는 수도이다."
        assert [p.id for p in store.by_title("서울")] == ["kowiki:10:0", "kowiki:10:2"]
        assert store.containing("한강이") == ["kowiki:10:2"]
    with ParagraphStore(path, readonly=True) as store:
        assert len(store) == 4


def test_store_rejects_other_sqlite_files(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="not a korqa paragraph store"):
        ParagraphStore(path)
    with pytest.raises(FileNotFoundError):
        ParagraphStore(tmp_path / "none.sqlite", readonly=True)


def p(doc_id, index, text, kind="file"):
    return Paragraph(f"{kind}:{doc_id}:{index}", doc_id, text, doc_id)


def test_sync_source_replaces_documents_whole_and_drops_vanished_ones(tmp_path):
    with ParagraphStore(tmp_path / "s.sqlite") as store:
        store.sync_source([p("a", 0, "가"), p("a", 1, "나"), p("b", 0, "다")], "/docs")
        store.sync_source([p("c", 0, "라")], "/other")
        store.add([p("x", 0, "마", kind="api")])  # added without a source (the server's API)
        # a.txt now has one paragraph, b.txt was deleted, d.txt is new.
        result = store.sync_source([p("a", 0, "가!"), p("d", 0, "바")], "/docs", batch_size=1)
        assert (result.added, result.updated, result.unchanged) == (1, 1, 0)
        assert (result.removed, result.removed_documents) == (2, 1)
        assert [q.id for q in store] == ["file:a:0", "file:c:0", "api:x:0", "file:d:0"]
        assert [(d.doc_id, d.paragraphs, d.source) for d in store.documents()] == [
            ("a", 1, "/docs"), ("c", 1, "/other"), ("x", 1, None), ("d", 1, "/docs")]
        assert store.remove_documents(["c", "x"]) == 2
        with pytest.raises(KeyError, match="'nope'"):
            store.remove_documents(["a", "nope"])
        assert [q.id for q in store] == ["file:a:0", "file:d:0"]


def test_sync_source_rolls_back_inside_a_failed_transaction(tmp_path):
    with ParagraphStore(tmp_path / "s.sqlite") as store:
        store.sync_source([p("a", 0, "가"), p("b", 0, "나")], "/docs")

        def failing():
            yield p("a", 0, "새 가")
            raise ValueError("bad file")

        with pytest.raises(ValueError, match="bad file"), store.transaction():
            store.sync_source(failing(), "/docs")
        assert [(q.id, q.text) for q in store] == [("file:a:0", "가"), ("file:b:0", "나")]


def test_stores_without_the_documents_table_still_open_and_list(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # a store as korqa wrote it before sources were kept
        conn.executescript("CREATE TABLE paragraphs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL "
                           "UNIQUE, title TEXT NOT NULL, text TEXT NOT NULL, doc_id TEXT NOT "
                           "NULL); PRAGMA user_version = 1;")
        conn.execute("INSERT INTO paragraphs (id, title, text, doc_id) "
                     "VALUES ('file:a:0', 'a', '가', 'a')")
    with ParagraphStore(path, readonly=True) as store:
        assert [(d.doc_id, d.source) for d in store.documents()] == [("a", None)]
    with ParagraphStore(path) as store:  # the first write adds the table
        store.sync_source([p("b", 0, "나")], "/docs")
        assert [(d.doc_id, d.source) for d in store.documents()] == [("a", None), ("b", "/docs")]


def test_a_json_lines_file_torn_by_a_kill_reads_up_to_its_last_whole_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n\n{"step": 2}\n{"step": 3, "lo', encoding="utf-8")
    assert read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{"step": 2\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"log.jsonl:2: not JSON .*; delete it"):
        read_jsonl(log, hint="delete it")


def test_korqa_documents_shows_each_documents_title_not_a_heading_path(tmp_path, capsys):
    from korqa.cli import main

    folder = tmp_path / "docs"
    folder.mkdir()
    # The first paragraph sits under a section: its title is "한라산 › 등산로".
    (folder / "halla.md").write_text("# 한라산\n\n## 등산로\n\n성판악 코스는 가장 길다.\n",
                                     encoding="utf-8")
    (folder / "notes.txt").write_text("제목 없는 메모의 첫 문단이다.\n", encoding="utf-8")
    out = str(tmp_path / "idx")
    assert main(["index", "--corpus", str(folder), "--out", out, "--no-morphemes",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["documents", "--index", out]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[:3] for row in rows] == [[str(folder / "halla.md"), "1", "한라산"],
                                         [str(folder / "notes.txt"), "1", "notes"]]
    assert main(["documents", "--index", out, "--json"]) == 0
    assert [d["title"] for d in json.loads(capsys.readouterr().out)] == ["한라산", "notes"]
