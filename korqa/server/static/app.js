// korqa chat page: asks /ask, marks the answer in its paragraph, sends verdicts to /feedback.
"use strict";

const form = document.getElementById("ask-form");
const input = document.getElementById("question");
const historyBox = document.getElementById("history");
const statusLine = document.getElementById("status");

// ---- small helpers ---------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // never innerHTML: answers are untrusted text
  return node;
}

function button(label, onClick) {
  const node = el("button", "", label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

function formatScore(score) {
  return typeof score === "number" ? score.toFixed(2) : "-";
}

// The API counts characters as Python does (code points); the DOM counts UTF-16 units. They
// differ after any character outside the BMP (emoji, rare hanja), so every offset is converted.
function unitIndex(text, codePoints) {
  let units = 0;
  let seen = 0;
  for (const ch of text) {
    if (seen === codePoints) break;
    units += ch.length;
    seen += 1;
  }
  return units;
}

function codePointIndex(text, units) {
  return Array.from(text.slice(0, units)).length;
}

// ---- the paragraph and selections in it --------------------------------------------------------

// Fills `node` with exactly `context` (so its text offsets are the context's), with
// context[start:end] (code points) wrapped in <mark class=markClass>.
function renderContext(node, context, start, end, markClass) {
  node.textContent = "";
  if (start === null || start === undefined || end === null || end === undefined) {
    node.append(context);
    return;
  }
  const a = unitIndex(context, start);
  const b = unitIndex(context, end);
  node.append(context.slice(0, a), el("mark", markClass, context.slice(a, b)), context.slice(b));
}

// The current selection as [start, end) UTF-16 offsets into `container`'s text, or null.
function selectionIn(container) {
  const selection = window.getSelection();
  if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
  const range = selection.getRangeAt(0);
  if (!container.contains(range.startContainer) || !container.contains(range.endContainer)) {
    return null;
  }
  const before = document.createRange();
  before.selectNodeContents(container);
  before.setEnd(range.startContainer, range.startOffset);
  const start = before.toString().length;
  return { start, end: start + range.toString().length };
}

// Clicking a button may clear the selection before its handler runs, so the last selection
// made inside each paragraph is remembered as it changes.
const lastSelections = new WeakMap();
document.addEventListener("selectionchange", () => {
  const selection = window.getSelection();
  if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return;
  let node = selection.getRangeAt(0).commonAncestorContainer;
  if (node.nodeType !== Node.ELEMENT_NODE) node = node.parentElement;
  const paragraph = node && node.closest(".context");
  const picked = paragraph && selectionIn(paragraph);
  if (picked) lastSelections.set(paragraph, picked);
});

// ---- feedback --------------------------------------------------------------------------------

async function postFeedback(payload) {
  const response = await fetch("/feedback", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const data = await readJson(response);
  if (!response.ok) throw new Error(data.error || `오류 ${response.status}`);
  return data;
}

function feedbackBox(data, paragraph) {
  const box = el("div", "feedback");
  const note = el("span", "hint");
  const base = { question: data.question, answer: data.answer, paragraph_id: data.paragraph_id };
  const canSelect = paragraph !== null && data.source !== "faq";
  const buttons = [];

  function done(message) {
    buttons.forEach((b) => { b.disabled = true; });
    note.className = "thanks";
    note.textContent = message;
  }

  async function send(payload, message) {
    try {
      await postFeedback({ ...base, ...payload });
      done(message);
      return true;
    } catch (error) {
      note.className = "problem";
      note.textContent = `보내지 못했어요: ${error.message}`;
      return false;
    }
  }

  async function sendCorrection() {
    const picked = selectionIn(paragraph) || lastSelections.get(paragraph);
    const context = data.context;
    if (!picked || picked.end <= picked.start) {
      note.className = "problem";
      note.textContent = "먼저 문단에서 올바른 답을 드래그해 선택하세요.";
      return;
    }
    let { start, end } = picked;
    // A drag often takes a space along; the answer is the text without it.
    while (start < end && /\s/.test(context[start])) start += 1;
    while (end > start && /\s/.test(context[end - 1])) end -= 1;
    if (end <= start) {
      note.className = "problem";
      note.textContent = "공백만 선택되었어요.";
      return;
    }
    const correctedStart = codePointIndex(context, start);
    const correctedAnswer = context.slice(start, end);
    const sent = await send(
      { verdict: "wrong", corrected_answer: correctedAnswer, corrected_start: correctedStart },
      "고마워요! 정답을 배웠어요.",
    );
    if (sent) {
      renderContext(paragraph, context, correctedStart,
        correctedStart + Array.from(correctedAnswer).length, "corrected-span");
    }
  }

  const correct = button("정답으로 보내기", sendCorrection);
  correct.className = "send-correction";
  const noCorrection = button("정답 없이 보내기", () => send({ verdict: "wrong" }, "알려 줘서 고마워요."));
  noCorrection.className = "send-wrong";

  if (data.known) {
    const right = button("맞아요 👍", () => send(
      { verdict: "correct", answer_start: data.start }, "고마워요!"));
    right.className = "verdict-correct";
    const wrong = button("틀렸어요 👎", () => {
      if (!canSelect) {
        send({ verdict: "wrong" }, "알려 줘서 고마워요.");
        return;
      }
      wrong.disabled = true;
      note.className = "hint";
      note.textContent = "문단에서 올바른 답을 드래그해 선택한 뒤 '정답으로 보내기'를 누르세요.";
      box.append(correct, noCorrection);
      buttons.push(correct, noCorrection);
    });
    wrong.className = "verdict-wrong";
    buttons.push(right, wrong);
    box.append(right, wrong);
  } else if (canSelect) {
    note.textContent = "문단에 답이 있다면 드래그해 선택한 뒤 '정답으로 보내기'를 누르세요.";
    buttons.push(correct);
    box.append(correct);
  } else {
    return null;
  }
  box.append(note);
  return box;
}

// ---- answers ---------------------------------------------------------------------------------

function renderAnswer(bot, data) {
  bot.textContent = "";
  bot.className = "bot";
  bot.dataset.state = data.known ? "answered" : "unknown";
  bot.dataset.paragraphId = data.paragraph_id || "";
  if (data.known) {
    const line = el("div", "answer-line");
    line.append("답: ", el("span", "answer-text", data.answer));
    bot.append(line);
    const source = data.source === "faq" ? " · 자주 묻는 질문" : "";
    const label = data.source === "faq" ? "유사도" : "확신도";
    bot.append(el("div", "meta", `${data.title} · ${label} ${formatScore(data.score)}${source}`));
  } else {
    bot.append(el("div", "unknown-line", "잘 모르겠어요."));
    // The don't-know's own score: under every answer given, whatever the guess's rank.
    const guess = data.candidates.length
      ? ` · 추측 "${data.candidates[0].answer}" (확신도 ${formatScore(data.score)})` : "";
    if (data.context) bot.append(el("div", "meta", `가장 가까운 문단: ${data.title}${guess}`));
  }
  let paragraph = null;
  if (data.context) {
    paragraph = el("p", "context");
    renderContext(paragraph, data.context, data.known ? data.start : null,
      data.known ? data.end : null, "answer-span");
    bot.append(paragraph);
  }
  const others = data.known ? data.candidates.slice(1) : data.candidates;
  if (others.length) {
    const details = el("details", "candidates");
    details.append(el("summary", "", data.known ? `다른 후보 ${others.length}개` : `추측 ${others.length}개`));
    const list = el("ol");
    for (const c of others) {
      list.append(el("li", "", `${c.answer} — ${c.title} (확신도 ${formatScore(c.score)})`));
    }
    details.append(list);
    bot.append(details);
  }
  const box = feedbackBox(data, paragraph);
  if (box) bot.append(box);
}

function showError(bot, message) {
  bot.className = "bot error";
  bot.dataset.state = "error";
  bot.textContent = message;
}

async function ask() {
  const question = input.value.trim();
  if (!question) return;
  input.value = "";
  const turn = el("section", "turn");
  const bot = el("div", "bot pending", "답을 찾는 중…");
  bot.dataset.state = "pending";
  turn.append(el("div", "user", question), bot);
  historyBox.append(turn);
  turn.scrollIntoView({ block: "end" });
  try {
    const response = await fetch("/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question }),
    });
    const data = await readJson(response);
    if (!response.ok) {
      showError(bot, data.error || `오류 ${response.status}`);
      return;
    }
    renderAnswer(bot, data);
  } catch {
    showError(bot, "서버에 연결할 수 없어요.");
  }
  turn.scrollIntoView({ block: "end" });
}

// ---- input: Enter sends, but never in the middle of a Hangul composition ----------------------

// While an IME composes a syllable, Enter first commits it; sending on that keydown would lose
// the last syllable or send twice. Chrome marks it isComposing, Safari only keyCode 229 (after
// compositionend), so all three signals are checked.
let composing = false;
input.addEventListener("compositionstart", () => { composing = true; });
input.addEventListener("compositionend", () => { composing = false; });
input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey) return;
  if (event.isComposing || composing || event.keyCode === 229) return;
  event.preventDefault();
  ask();
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  ask();
});

function refreshStatus() {
  fetch("/health")
    .then(readJson)
    .then((health) => {
      statusLine.textContent = health.status === "ok"
        ? `문단 ${health.paragraphs}개 · 모델 ${health.model_loaded ? "준비됨" : "없음"}`
        : "서버 준비 중";
    })
    .catch(() => { statusLine.textContent = "서버에 연결할 수 없어요"; });
}

refreshStatus();
// documents.js announces every document added or removed: the paragraph count changed.
document.addEventListener("korqa:documents-changed", refreshStatus);
