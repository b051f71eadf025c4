"""The chat page in headless Chromium against a live server with a tiny random reader."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("browser")
    with one_torch_thread():
        model_dir = make_tiny_reader(root / "reader")
        index_dir = build_tiny_index(root / "index")
        # One paragraph read per question: the page's answer then comes from the paragraph
        # a test put first, whatever the random reader thinks of the others.
        app = create_app(tiny_pipeline(index_dir, model_dir, threshold=0.0, top_k=1),
                         root / "data")
        with LiveServer(app) as live:
            live.data_dir = root / "data"  # type: ignore[attr-defined]
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
