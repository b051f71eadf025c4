"""The chat page in headless Chromium against a live server with a tiny random reader."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import office_files as office
import pytest
from server_support import LiveServer
from tiny import DOCS, build_tiny_index, make_tiny_reader, one_torch_thread, tiny_pipeline

from korqa.server.app import create_app
from korqa.server.feedback import FEEDBACK_FILE

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium not installed (apt-get install chromium chromium-driver; "
           ".ci/run does it)")

HALLA_Q = "한라산의 높이는 얼마인가?"
HALLA_TEXT = DOCS[1][2][0]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,1200", "--lang=ko-KR"]


@contextmanager
def tiny_server(root: Path, **options: object) -> Iterator[LiveServer]:
    """The tiny index and a random reader served live; `options` go to create_app."""
    with one_torch_thread():
        model_dir = make_tiny_reader(root / "reader")
        index_dir = build_tiny_index(root / "index")
        # One paragraph read per question: the page's answer then comes from the paragraph
        # a test put first, whatever the random reader thinks of the others.
        app = create_app(tiny_pipeline(index_dir, model_dir, threshold=0.0, top_k=1),
                         root / "data", **options)  # type: ignore[arg-type]
        with LiveServer(app) as live:
            live.data_dir = root / "data"  # type: ignore[attr-defined]
            yield live


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with tiny_server(tmp_path_factory.mktemp("browser")) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: webdriver.Chrome, server: LiveServer) -> None:
    browser.get(server.url + "/")
    WebDriverWait(browser, 60).until(
        lambda d: "문단" in d.find_element(By.ID, "status").text)


def _turns(browser: webdriver.Chrome) -> list:
    return browser.find_elements(By.CSS_SELECTOR, "#history .turn")


def _ask_and_wait(browser: webdriver.Chrome, question: str) -> object:
    before = len(_turns(browser))
    box = browser.find_element(By.ID, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda d: len(_turns(d)) == before + 1)
    turn = _turns(browser)[-1]
    WebDriverWait(browser, 60).until(
        lambda _: turn.find_element(By.CSS_SELECTOR, ".bot").get_attribute("data-state")
        != "pending")
    return turn


def test_the_page_highlights_exactly_the_apis_span(browser: webdriver.Chrome, server: LiveServer,
                                                   tmp_path: Path) -> None:
    expected = httpx.post(f"{server.url}/ask", json={"question": HALLA_Q}, timeout=60).json()
    assert expected["known"]
    _open(browser, server)
    turn = _ask_and_wait(browser, HALLA_Q)
    bot = turn.find_element(By.CSS_SELECTOR, ".bot")
    assert bot.get_attribute("data-state") == "answered"
    assert turn.find_element(By.CSS_SELECTOR, ".user").text == HALLA_Q
    mark = turn.find_element(By.CSS_SELECTOR, ".context mark.answer-span")
    span = expected["context"][expected["start"]:expected["end"]]
    assert mark.get_attribute("textContent") == span == expected["answer"]
    # The paragraph shown is the API's context, character for character.
    shown = turn.find_element(By.CSS_SELECTOR, ".context").get_attribute("textContent")
    assert shown == expected["context"] == HALLA_TEXT
    assert expected["title"] in turn.find_element(By.CSS_SELECTOR, ".meta").text
    assert turn.find_element(By.CSS_SELECTOR, ".answer-text").text == expected["answer"]
    # Other candidates appear on demand.
    others = turn.find_elements(By.CSS_SELECTOR, "details.candidates li")
    assert len(others) == len(expected["candidates"]) - 1
    if others:
        assert not others[0].is_displayed()
        turn.find_element(By.CSS_SELECTOR, "details.candidates summary").click()
        assert others[0].is_displayed()
        assert expected["candidates"][1]["answer"] in others[0].text
    screenshot = tmp_path / "chat.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 1000


def test_offsets_survive_characters_outside_the_bmp(browser: webdriver.Chrome,
                                                     server: LiveServer) -> None:
    # Python counts 🍊 as one character, JavaScript as two: every offset must be converted.
    text = "🍊🍊 감귤은 🍊 제주도의 특산물로 🍊 겨울에 수확한다 🍊 한라봉도 🍊 유명하다."
    added = httpx.post(f"{server.url}/documents", timeout=60, json={
        "documents": [{"title": "감귤", "text": text, "id": "tangerine"}]})
    assert added.status_code == 200
    question = "감귤은 언제 수확하나?"
    expected = httpx.post(f"{server.url}/ask", json={"question": question}, timeout=60).json()
    assert expected["paragraph_id"] == "api:tangerine:0" and expected["known"]
    assert expected["end"] > 2  # the span ends after the first emoji: conversion matters
    _open(browser, server)
    turn = _ask_and_wait(browser, question)
    mark = turn.find_element(By.CSS_SELECTOR, ".context mark.answer-span")
    assert mark.get_attribute("textContent") == expected["answer"]
    shown = turn.find_element(By.CSS_SELECTOR, ".context").get_attribute("textContent")
    assert shown == text


def test_enter_does_not_send_while_hangul_is_being_composed(browser: webdriver.Chrome,
                                                            server: LiveServer) -> None:
    _open(browser, server)
    script = """
        const box = document.getElementById("question");
        const enter = (init) => box.dispatchEvent(new KeyboardEvent("keydown",
            {key: "Enter", bubbles: true, cancelable: true, ...init}));
        const turns = () => document.querySelectorAll("#history .turn").length;
        box.value = "김치는 무엇인가";
        const counts = [turns()];
        enter({isComposing: true});                       // Chrome: Enter commits the syllable
        counts.push(turns());
        box.dispatchEvent(new CompositionEvent("compositionstart"));
        enter({});                                        // a composition is still open
        counts.push(turns());
        enter({keyCode: 229});                            // Safari, after compositionend
        box.dispatchEvent(new CompositionEvent("compositionend"));
        enter({keyCode: 229});
        counts.push(turns());
        enter({shiftKey: true});                          // Shift+Enter is a newline
        counts.push(turns());
        enter({});                                        // a plain Enter sends
        counts.push(turns());
        return counts;
    """
    counts = browser.execute_script(script)
    assert counts == [0, 0, 0, 0, 0, 1]
    assert browser.find_element(By.ID, "question").get_attribute("value") == ""


def test_dont_know_state(browser: webdriver.Chrome, server: LiveServer) -> None:
    _open(browser, server)
    turn = _ask_and_wait(browser, "xyzzy qwerty")
    bot = turn.find_element(By.CSS_SELECTOR, ".bot")
    assert bot.get_attribute("data-state") == "unknown"
    assert bot.find_element(By.CSS_SELECTOR, ".unknown-line").text == "잘 모르겠어요."
    assert not bot.find_elements(By.CSS_SELECTOR, "mark")


def test_selecting_the_right_span_sends_a_correction(browser: webdriver.Chrome,
                                                     server: LiveServer) -> None:
    _open(browser, server)
    turn = _ask_and_wait(browser, HALLA_Q)
    turn.find_element(By.CSS_SELECTOR, ".verdict-wrong").click()
    paragraph = turn.find_element(By.CSS_SELECTOR, ".context")
    target = "1947미터"
    start = HALLA_TEXT.index(target)
    # Select the characters as a drag would: a DOM range across the paragraph's text nodes.
    browser.execute_script("""
        const [paragraph, start, end] = arguments;
        const walker = document.createTreeWalker(paragraph, NodeFilter.SHOW_TEXT);
        const range = document.createRange();
        let seen = 0;
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const len = node.textContent.length;
            if (start >= seen && start <= seen + len) range.setStart(node, start - seen);
            if (end >= seen && end <= seen + len) { range.setEnd(node, end - seen); break; }
            seen += len;
        }
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
    """, paragraph, start - 1, start + len(target))  # with the space before, as drags do
    turn.find_element(By.CSS_SELECTOR, ".send-correction").click()
    WebDriverWait(browser, 60).until(lambda _: turn.find_elements(By.CSS_SELECTOR, ".thanks"))
    corrected = turn.find_element(By.CSS_SELECTOR, "mark.corrected-span")
    assert corrected.get_attribute("textContent") == target
    db = sqlite3.connect(server.data_dir / FEEDBACK_FILE)
    row = db.execute("SELECT verdict, corrected_answer, corrected_start, context "
                     "FROM feedback JOIN shown_paragraphs ON digest = paragraph_digest "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    db.close()
    assert row == ("wrong", target, start, HALLA_TEXT)


def test_the_api_docs_render_from_this_server_alone(browser: webdriver.Chrome,
                                                    server: LiveServer) -> None:
    browser.get(server.url + "/docs")
    WebDriverWait(browser, 60).until(  # Swagger UI listed the operations
        lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path"))
    assert "/ask" in browser.find_element(By.TAG_NAME, "body").text
    # Every script, style, font and image came from korqa itself: it works offline.
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(server.url + "/") for url in loaded), loaded


def test_the_page_shows_its_favicon(browser: webdriver.Chrome, server: LiveServer) -> None:
    _open(browser, server)
    icon = browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href")
    # Drawn by the browser under the page's Content-Security-Policy: a real SVG image.
    size = browser.execute_async_script(
        "const done = arguments[1]; const img = new Image();"
        "img.onload = () => done([img.naturalWidth, img.naturalHeight]);"
        "img.onerror = () => done(null); img.src = arguments[0];", icon)
    assert size and size[0] > 0 and size[1] > 0
    assert httpx.get(icon).headers["content-type"] == "image/svg+xml"


# ---- "문서 추가": documents added from the page --------------------------------------------

API_KEY = "open-sesame-42"
MAX_UPLOAD = 300_000  # small, so that the oversized-file test need not make a large file


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose writes need an API key, as one that other machines reach does."""
    with tiny_server(tmp_path_factory.mktemp("uploads"), api_key=API_KEY,
                     max_upload=MAX_UPLOAD) as live:
        yield live


def _open_documents(browser: webdriver.Chrome, server: LiveServer) -> None:
    _open(browser, server)
    browser.find_element(By.ID, "documents-toggle").click()
    assert browser.find_element(By.ID, "documents").is_displayed()


def _uploads(browser: webdriver.Chrome, state: str) -> list:
    return browser.find_elements(By.CSS_SELECTOR, f"#uploads li[data-state={state}]")


def _listed(browser: webdriver.Chrome) -> list[str]:
    # Read in one script: the page may redraw the list between two element lookups.
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#document-list .document-title'),"
        " (node) => node.textContent)")


def test_the_page_uploads_a_docx_and_then_answers_from_it(
        browser: webdriver.Chrome, upload_server: LiveServer, tmp_path: Path) -> None:
    docx = office.write(tmp_path / "출장 규정.docx", office.TRAVEL)
    _open_documents(browser, upload_server)
    assert _listed(browser) == []
    browser.find_element(By.ID, "file-input").send_keys(str(docx))
    # The server wants its key: the page asks for it once, then sends the file again.
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "key-form").is_displayed())
    browser.find_element(By.ID, "api-key").send_keys("열려라참깨")  # no header carries Hangul
    browser.find_element(By.ID, "key-save").click()
    assert "영문, 숫자, 기호만" in browser.find_element(By.ID, "key-reason").text
    browser.find_element(By.ID, "api-key").clear()
    browser.find_element(By.ID, "api-key").send_keys("wrong-key")
    browser.find_element(By.ID, "key-save").click()
    WebDriverWait(browser, 60).until(  # asked again, saying why
        lambda d: "맞지 않아요" in d.find_element(By.ID, "key-reason").text
        and d.find_element(By.ID, "key-form").is_displayed())
    browser.find_element(By.ID, "api-key").send_keys(API_KEY)
    browser.find_element(By.ID, "key-save").click()
    WebDriverWait(browser, 120).until(lambda d: _uploads(d, "done"))
    row = _uploads(browser, "done")[0]
    assert row.find_element(By.CSS_SELECTOR, ".upload-name").text == "출장 규정.docx"
    note = row.find_element(By.CSS_SELECTOR, ".upload-note").text
    assert note == "문단 5개 추가 · 사내 출장 규정"
    assert browser.execute_script("return sessionStorage.getItem('korqa.apiKey')") == API_KEY
    WebDriverWait(browser, 60).until(lambda d: _listed(d) == ["사내 출장 규정"])
    WebDriverWait(browser, 60).until(  # the header counts the new paragraphs
        lambda d: d.find_element(By.ID, "status").text.startswith(f"문단 {len(DOCS) + 5}개"))
    # Asked about it, the page answers from the uploaded file's paragraph.
    question, _ = office.QUESTIONS["travel.docx"]
    bot = _ask_and_wait(browser, question).find_element(By.CSS_SELECTOR, ".bot")
    assert bot.get_attribute("data-state") == "answered"
    assert bot.get_attribute("data-paragraph-id").startswith("api:출장_규정.docx:")
    shown = bot.find_element(By.CSS_SELECTOR, ".context").get_attribute("textContent")
    assert shown == "국내 출장 일비는 하루 3만 원이고, 숙박비는 1박에 7만 원까지 실비로 정산한다."
    assert "사내 출장 규정 › 여비 기준" in bot.find_element(By.CSS_SELECTOR, ".meta").text
    # Removed from the list, it is gone from the index too.
    browser.find_element(By.CSS_SELECTOR, "#document-list .remove-document").click()
    WebDriverWait(browser, 60).until(lambda d: _listed(d) == [])
    assert httpx.get(f"{upload_server.url}/documents").json()["documents"] == []
    again = httpx.post(f"{upload_server.url}/ask", json={"question": question}, timeout=60)
    assert not again.json()["paragraph_id"].startswith("api:")


def test_pasted_text_and_dropped_files_are_added_and_bad_files_explained(
        browser: webdriver.Chrome, upload_server: LiveServer) -> None:
    _open_documents(browser, upload_server)
    browser.execute_script("sessionStorage.setItem('korqa.apiKey', arguments[0])", API_KEY)
    browser.find_element(By.ID, "paste-title").send_keys("회의 메모")
    browser.find_element(By.ID, "paste-text").send_keys(
        "다음 회의는 목요일 오후 세 시에 열린다.\n\n회의실은 본관 3층이다.")
    browser.find_element(By.ID, "paste-add").click()
    WebDriverWait(browser, 120).until(lambda d: len(_uploads(d, "done")) == 1)
    assert _uploads(browser, "done")[0].find_element(By.CSS_SELECTOR, ".upload-note").text \
        == "문단 2개 추가 · 회의 메모"
    # Files dropped on the page: a Markdown note, a "DOCX" that is not one, and one too large.
    browser.execute_script("""
        const [big] = arguments;
        const drop = (files) => {
            const data = new DataTransfer();
            for (const file of files) data.items.add(file);
            document.getElementById("history").dispatchEvent(new DragEvent("drop",
                {dataTransfer: data, bubbles: true, cancelable: true}));
        };
        drop([new File(["# 봄 소풍\\n\\n봄 소풍은 4월 셋째 주 금요일에 간다.\\n"], "소풍.md"),
              new File([new Uint8Array([80, 75, 3, 4, 1, 2, 3])], "깨진.docx"),
              new File([new Uint8Array(big)], "큰 파일.pdf")]);
    """, MAX_UPLOAD + 1)
    WebDriverWait(browser, 120).until(lambda d: len(_uploads(d, "done")) == 2
                                      and len(_uploads(d, "error")) == 2)
    notes = {row.find_element(By.CSS_SELECTOR, ".upload-name").text:
             row.find_element(By.CSS_SELECTOR, ".upload-note").text
             for row in browser.find_elements(By.CSS_SELECTOR, "#uploads li")}
    assert notes["소풍.md"] == "문단 1개 추가 · 봄 소풍"
    assert notes["깨진.docx"].startswith("읽을 수 없어요: 깨진.docx: cannot be read: not a Word")
    assert notes["큰 파일.pdf"].startswith("너무 커요: 큰 파일.pdf: 0.3 MB; the server takes")
    WebDriverWait(browser, 60).until(lambda d: sorted(_listed(d)) == ["봄 소풍", "회의 메모"])
    listed = httpx.get(f"{upload_server.url}/documents").json()["documents"]
    assert sorted(d["title"] for d in listed) == ["봄 소풍", "회의 메모"]
    for doc in listed:  # leave the server as the other tests found it
        httpx.delete(f"{upload_server.url}/documents/{doc['id']}",
                     headers={"Authorization": f"Bearer {API_KEY}"})
