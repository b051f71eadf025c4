"""POST /documents/files and GET /documents (issue 29, item 2): files uploaded to `korqa serve`
go through the readers and limits `korqa index` uses, behind the API key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import office_files as office
import pytest
from fastapi.testclient import TestClient
from tiny import DOCS, build_tiny_index, tiny_pipeline

from korqa.server.app import create_app
from korqa.server.uploads import document_id, file_name

KEY = "open-sesame-42"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_UPLOAD = 300_000
MAX_BODY = 64 * 1024

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_reader_dir: Path) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("uploads")
    app = create_app(tiny_pipeline(build_tiny_index(root / "index"), tiny_reader_dir,
                                   threshold=0.0, top_k=1), root / "data", api_key=KEY,
                     max_body=MAX_BODY, max_upload=MAX_UPLOAD)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture()
def clean(client: TestClient) -> Iterator[TestClient]:
    """The client, with every document a test uploaded removed after it."""
    yield client
    for document in client.get("/documents").json()["documents"]:
        client.delete(f"/documents/{document['id']}", headers=AUTH)


def upload(client: TestClient, *files: tuple[str, bytes], headers: dict | None = None):
    return client.post("/documents/files", headers=AUTH if headers is None else headers,
                       files=[("files", (name, content)) for name, content in files])


def test_an_uploaded_docx_is_read_as_korqa_index_reads_it_and_answers(
        clean: TestClient, tmp_path: Path) -> None:
    docx = office.write(tmp_path / "출장 규정.docx", office.TRAVEL).read_bytes()
    response = upload(clean, ("출장 규정.docx", docx))
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["added"], data["paragraphs"]) == (5, len(DOCS) + 5)
    [document] = data["documents"]
    assert (document["id"], document["title"]) == ("출장_규정.docx", "사내 출장 규정")
    assert clean.get("/documents").json()["documents"] == [
        {"id": "출장_규정.docx", "title": "사내 출장 규정", "paragraphs": 5}]
    question, _ = office.QUESTIONS["travel.docx"]
    answer = clean.post("/ask", json={"question": question}).json()
    assert answer["paragraph_id"].startswith("api:출장_규정.docx:")
    assert answer["title"] == "사내 출장 규정 › 여비 기준"
    # The same paragraphs as `korqa index` makes of the file, section titles included.
    from korqa.corpus.documents.files import document_file

    indexed = document_file(tmp_path / "출장 규정.docx")
    assert indexed is not None
    assert [(p.title, p.text) for p in indexed.paragraphs] == \
        [(p["title"], p["context"]) for p in (
            clean.post("/ask", json={"question": p.text[:30], "top_k": 1}).json()
            for p in indexed.paragraphs)]
    # Uploaded again after an edit, it replaces its paragraphs, as re-indexing a file does.
    office.write(tmp_path / "출장 규정.docx", office.TRAVEL[:4])
    again = upload(clean, ("출장 규정.docx", (tmp_path / "출장 규정.docx").read_bytes())).json()
    assert (again["unchanged"], again["removed"], again["paragraphs"]) == (2, 3, len(DOCS) + 2)


def test_text_files_upload_as_text_files_index_cp949_included(clean: TestClient) -> None:
    note = "# 봄 소풍\n\n봄 소풍은 4월 셋째 주 금요일에 간다.\n\n## 준비물\n\n도시락과 물.\n"
    plain = "회의 메모\n\n다음 회의는 목요일 오후 세 시에 열린다."
    response = upload(clean, ("소풍.md", note.encode("utf-8")), ("메모.txt", plain.encode("cp949")))
    assert response.status_code == 200, response.text
    assert [(d["id"], d["title"], len(d["paragraph_ids"])) for d in response.json()["documents"]] \
        == [("소풍.md", "봄 소풍", 2), ("메모.txt", "회의 메모", 1)]
    answer = clean.post("/ask", json={"question": "준비물은 무엇인가?"}).json()
    assert (answer["title"], answer["context"]) == ("봄 소풍 › 준비물", "도시락과 물.")


def test_an_unreadable_file_is_refused_by_name_and_nothing_is_stored(
        clean: TestClient, tmp_path: Path) -> None:
    office.write_pdf(tmp_path / "locked.pdf", office.LIBRARY, password="secret")
    office.write_pdf(tmp_path / "scan.pdf", office.LIBRARY, scanned=True)
    good = ("good.md", "# 좋은 글\n\n읽을 수 있는 문단이다.".encode())
    cases = {
        "깨진.docx": (b"PK\x03\x04 not a zip at all", 422,
                     "깨진.docx: cannot be read: not a Word (DOCX) file"),
        "locked.pdf": ((tmp_path / "locked.pdf").read_bytes(), 422,
                       "locked.pdf: cannot be read: encrypted"),
        "scan.pdf": ((tmp_path / "scan.pdf").read_bytes(), 422,
                     "scan.pdf: cannot be read: no text layer"),
        "binary.txt": (bytes(range(256)) * 4, 422, "binary.txt: cannot be read: byte 0 is NUL"),
        "sheet.xlsx": (b"PK\x03\x04", 415, "sheet.xlsx: korqa does not read .xlsx; it reads "
                                           ".txt, .md, .pdf, .docx, .hwp, .hwpx, .html, .htm"),
        "README": (b"text", 415, "README: korqa does not read files without a suffix"),
    }
    for name, (content, status, message) in cases.items():
        response = upload(clean, good, (name, content))
        assert response.status_code == status, (name, response.text)
        assert response.json() == {"error": message} or \
            response.json()["error"].startswith(message), (name, response.json())
        # One line, never a traceback or a path on the server.
        assert "\n" not in response.json()["error"] and "/tmp" not in response.json()["error"]
    assert clean.get("/documents").json()["documents"] == []  # not even the good file


def test_an_oversized_upload_is_refused_before_it_is_read(clean: TestClient) -> None:
    big = ("큰 파일.txt", "가".encode() * (MAX_UPLOAD // 3 + 1))
    response = upload(clean, big)
    assert response.status_code == 413
    assert response.json() == {"error": f"request body over {MAX_UPLOAD} bytes"}
    # Uploads have their own limit: the same bytes as JSON hit the smaller body limit.
    small = ("작은 파일.txt", "가나다라마바사. ".encode() * 8000)
    assert MAX_BODY < len(small[1]) < MAX_UPLOAD
    assert upload(clean, small).status_code == 200
    as_json = clean.post("/documents", headers=AUTH, json={"documents": [
        {"title": "작은 파일", "text": small[1].decode()}]})
    assert as_json.status_code == 413
    listing = clean.get("/documents").json()
    assert listing["max_upload_bytes"] == MAX_UPLOAD and ".hwpx" in listing["suffixes"]


def test_uploads_need_the_api_key(clean: TestClient) -> None:
    file = ("메모.md", "# 메모\n\n비밀 문서다.".encode())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = upload(clean, file, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer <api key>" in response.json()["error"]
    assert clean.get("/documents").json()["documents"] == []
    assert upload(clean, file).status_code == 200
    assert clean.delete("/documents/메모.md").status_code == 401
    assert clean.delete("/documents/메모.md", headers=AUTH).json()["removed"] == 1


def test_a_body_that_is_not_files_is_told_to_send_multipart(clean: TestClient) -> None:
    response = clean.post("/documents/files", headers=AUTH, json={"files": ["a.md"]})
    assert response.status_code == 415
    assert response.json()["error"] == ("send the files as 'Content-Type: multipart/form-data' "
                                         "(got 'application/json')")
    empty = clean.post("/documents/files", headers=AUTH, files={"other": ("a.md", b"x")})
    assert empty.status_code == 422 and "files" in empty.json()["error"]


def test_a_files_name_is_its_id_without_folders() -> None:
    assert file_name("C:\\fakepath\\보고서 (최종).pdf") == "보고서 (최종).pdf"
    assert file_name("../../etc/passwd.md") == "passwd.md"
    assert document_id("보고서 (최종).pdf") == "보고서_최종_.pdf"
    assert document_id("<>.md") == ".md" and document_id("(((") == "document"
    assert len(document_id("가" * 300 + ".pdf")) == 100


def test_openapi_documents_the_upload_and_the_list(clean: TestClient) -> None:
    paths = clean.get("/openapi.json").json()["paths"]
    body = paths["/documents/files"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] and "$ref" in schema
    components = clean.get("/openapi.json").json()["components"]["schemas"]
    form = components[schema["$ref"].rsplit("/", 1)[1]]
    assert form["required"] == ["files"]
    assert form["properties"]["files"]["type"] == "array"
    assert ".hwpx" in form["properties"]["files"]["description"]
    responses = paths["/documents/files"]["post"]["responses"]
    assert {"200", "401", "413", "415", "422"} <= set(responses)
    listed = paths["/documents"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["$ref"].endswith("/DocumentListOut")
    assert json.dumps(components["DocumentOut"]).count("paragraphs") >= 1
