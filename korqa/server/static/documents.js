// korqa page, "문서 추가": files (dropped anywhere on the page, or picked) go to
// POST /documents/files one by one with their upload progress, pasted text to POST /documents;
// the documents added are listed from GET /documents and removed with DELETE /documents/{id}.
// A server started with an API key answers 401: the page asks for the key once and keeps it in
// sessionStorage (this tab only). It shares with app.js (loaded before it) only its helper
// el() and the event "korqa:documents-changed", after which app.js refreshes the paragraph
// count.
"use strict";

(() => {
  const KEY_STORAGE = "korqa.apiKey";
  const panel = document.getElementById("documents");
  const toggle = document.getElementById("documents-toggle");
  const fileInput = document.getElementById("file-input");
  const dropZone = document.getElementById("drop-zone");
  const pasteForm = document.getElementById("paste-form");
  const pasteTitle = document.getElementById("paste-title");
  const pasteText = document.getElementById("paste-text");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("api-key");
  const keyReason = document.getElementById("key-reason");
  const uploads = document.getElementById("uploads");
  const list = document.getElementById("document-list");
  const empty = document.getElementById("documents-empty");

  // ---- the API key ---------------------------------------------------------------------------

  let keyWaiters = [];

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE);
    } catch {
      return null; // storage disabled: the key is asked for each time
    }
  }

  // Resolves with a key once the user gives one; `reason` says why it is asked for.
  function askForKey(reason) {
    keyReason.textContent = reason;
    keyForm.hidden = false;
    openPanel();
    keyInput.focus();
    return new Promise((resolve) => { keyWaiters.push(resolve); });
  }

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return;
    if (/[^\x21-\x7e]/.test(key)) {
      // An HTTP header carries no Hangul: such a key can never have been the server's.
      keyReason.textContent = "API 키에는 영문, 숫자, 기호만 들어가요. 다시 넣어 주세요.";
      return;
    }
    try {
      sessionStorage.setItem(KEY_STORAGE, key);
    } catch {
      // kept for the requests waiting on it only
    }
    keyInput.value = "";
    keyForm.hidden = true;
    const waiting = keyWaiters;
    keyWaiters = [];
    waiting.forEach((resolve) => resolve(key));
  });

  // ---- requests --------------------------------------------------------------------------------

  // One request through XMLHttpRequest (fetch reports no upload progress), with the key when
  // there is one: {status, data}. `progress(fraction)` follows the upload; `sent()` is called
  // once the body is out and the server reads and indexes it.
  function request(method, url, body, key, progress, sent) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.responseType = "json";
      if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
      if (typeof body === "string") xhr.setRequestHeader("Content-Type", "application/json");
      if (progress) {
        xhr.upload.addEventListener("progress", (event) => {
          if (event.lengthComputable) progress(event.loaded / event.total);
        });
      }
      if (sent) xhr.upload.addEventListener("load", sent);
      xhr.addEventListener("load", () => resolve({ status: xhr.status, data: xhr.response || {} }));
      xhr.addEventListener("error", () => resolve({ status: 0, data: {} }));
      xhr.send(body === undefined ? null : body);
    });
  }

  // `request`, asking for the API key when the server wants one (again, if it was wrong).
  async function authorized(method, url, makeBody, progress, sent) {
    let key = storedKey();
    for (;;) {
      const answer = await request(method, url, makeBody(), key, progress, sent);
      if (answer.status !== 401) return answer;
      key = await askForKey(key
        ? "API 키가 맞지 않아요. 서버를 시작할 때 준 키를 넣어 주세요."
        : "이 서버는 문서를 추가하거나 지우려면 API 키가 필요해요.");
    }
  }

  function problem(answer) {
    if (answer.status === 0) return "서버에 연결할 수 없어요.";
    const reason = answer.data.error || `오류 ${answer.status}`;
    const kind = {
      413: "너무 커요", 415: "읽을 수 없는 종류예요", 422: "읽을 수 없어요",
      409: "이 서버에는 문서를 더할 색인이 없어요", 503: "서버가 바빠요",
    }[answer.status];
    return kind ? `${kind}: ${reason}` : reason;
  }

  // ---- adding --------------------------------------------------------------------------------

  function uploadRow(name) {
    const row = el("li", "upload");
    row.dataset.state = "sending";
    const bar = el("progress");
    bar.max = 1;
    bar.value = 0;
    const note = el("span", "upload-note", "보내는 중…");
    row.append(el("span", "upload-name", name), bar, note);
    uploads.prepend(row);
    return {
      progress(fraction) { bar.value = fraction; },
      reading() {
        bar.removeAttribute("value"); // indeterminate while the server reads and indexes
        note.textContent = "읽고 색인하는 중…";
      },
      done(answer) {
        bar.remove();
        if (answer.status === 200) {
          const added = answer.data.documents || [];
          const paragraphs = added.reduce((n, d) => n + d.paragraph_ids.length, 0);
          row.dataset.state = "done";
          row.dataset.documentId = added.length ? added[0].id : "";
          const title = added.length ? ` · ${added[0].title}` : "";
          note.textContent = `문단 ${paragraphs}개 추가${title}`;
        } else {
          row.dataset.state = "error";
          note.className = "upload-note problem";
          note.textContent = problem(answer);
        }
      },
    };
  }

  let queue = Promise.resolve();
  // What the server takes (GET /documents): a file over it is refused here, before it is sent.
  let limits = null;

  function megabytes(bytes) {
    return `${(bytes / 1048576).toFixed(1)} MB`;
  }

  // Files go one request each, one after another: each has its own progress and its own error.
  function addFiles(files) {
    openPanel();
    for (const file of files) {
      const row = uploadRow(file.name);
      queue = queue.then(async () => {
        if (limits === null) await refreshList();
        if (limits && file.size > limits.max_upload_bytes) {
          row.done({ status: 413, data: { error: `${file.name}: ${megabytes(file.size)}; the `
            + `server takes at most ${megabytes(limits.max_upload_bytes)} in one upload` } });
          return;
        }
        const answer = await authorized("POST", "/documents/files", () => {
          const form = new FormData();
          form.append("files", file, file.name);
          return form;
        }, row.progress, row.reading);
        row.done(answer);
        if (answer.status === 200) changed();
      });
    }
  }

  function addText(title, text) {
    const row = uploadRow(title);
    row.reading();
    queue = queue.then(async () => {
      const body = JSON.stringify({ documents: [{ title, text }] });
      const answer = await authorized("POST", "/documents", () => body);
      row.done(answer);
      if (answer.status === 200) {
        pasteForm.reset();
        changed();
      }
    });
  }

  fileInput.addEventListener("change", () => {
    addFiles(Array.from(fileInput.files));
    fileInput.value = ""; // the same file may be picked again after an edit
  });

  pasteForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const title = pasteTitle.value.trim();
    const text = pasteText.value.trim();
    if (title && text) addText(title, text);
  });

  // Files dropped anywhere on the page are added; the browser must not open them instead.
  const carriesFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    dropZone.classList.remove("dragging");
    if (!event.dataTransfer || event.dataTransfer.files.length === 0) return;
    event.preventDefault();
    addFiles(Array.from(event.dataTransfer.files));
  });

  // ---- the list ------------------------------------------------------------------------------

  async function refreshList() {
    const answer = await request("GET", "/documents");
    if (answer.status !== 200) return;
    limits = answer.data;
    list.textContent = "";
    const documents = answer.data.documents || [];
    empty.hidden = documents.length > 0;
    for (const doc of documents) {
      const item = el("li", "document");
      item.dataset.documentId = doc.id;
      const remove = el("button", "remove-document", "삭제");
      remove.type = "button";
      remove.addEventListener("click", () => removeDocument(doc, item, remove));
      item.append(el("span", "document-title", doc.title),
        el("span", "hint", ` 문단 ${doc.paragraphs}개 · ${doc.id} `), remove);
      list.append(item);
    }
  }

  async function removeDocument(doc, item, remove) {
    remove.disabled = true;
    const answer = await authorized("DELETE", `/documents/${encodeURIComponent(doc.id)}`,
      () => undefined);
    if (answer.status === 200 || answer.status === 404) {
      item.remove();
      changed();
    } else {
      remove.disabled = false;
      item.append(el("span", "problem", ` ${problem(answer)}`));
    }
  }

  function changed() {
    refreshList();
    document.dispatchEvent(new CustomEvent("korqa:documents-changed"));
  }

  // ---- the panel -----------------------------------------------------------------------------

  function openPanel() {
    if (!panel.hidden) return;
    panel.hidden = false;
    toggle.setAttribute("aria-expanded", "true");
    refreshList();
  }

  toggle.addEventListener("click", () => {
    if (panel.hidden) {
      openPanel();
    } else {
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
    }
  });
})();
