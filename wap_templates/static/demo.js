// The demo page's phone: the inbox of a number on the built-in SMSC, a reply box that sends a
// mobile-originated SMS over SMPP, and the payment links of the SMS opened inside the phone.

const phone = document.querySelector(".phone");
const select = document.getElementById("phone-number");
const inbox = document.getElementById("inbox");
const browser = document.getElementById("browser");
const frame = document.getElementById("phone-browser");
const replyForm = document.getElementById("reply-form");
const replyText = document.getElementById("reply-text");
const replyError = document.getElementById("reply-error");
const publicBase = new URL(phone.dataset.publicBase);
const sent = new Map(); // number → [{text, at}]: what this page texted, the SMSC keeps no copy
let shown = "";

const number = () => select.value;
const path = (suffix) => `/demo/phones/${encodeURIComponent(number())}/${suffix}`;

// A payment link of this service opens on this page's own origin, so the phone can frame it.
function linkFor(url) {
  const target = new URL(url);
  return target.origin === publicBase.origin ? target.pathname + target.search : url;
}

function withLinks(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/https?:\/\/\S+/g)) {
    parts.push(text.slice(last, match.index));
    const link = document.createElement("a");
    link.href = linkFor(match[0]);
    link.target = "phone-browser";
    link.textContent = match[0];
    link.addEventListener("click", () => openBrowser());
    parts.push(link);
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

function bubble(message, mine) {
  const item = document.createElement("li");
  item.className = mine ? "sent" : "received";
  const meta = document.createElement("span");
  meta.className = "meta";
  const time = new Date(message.at).toLocaleTimeString();
  meta.textContent = mine ? `me · ${time}` : `${message.from} · ${time}`;
  item.append(meta, ...withLinks(message.text));
  return item;
}

async function refresh() {
  let data;
  try {
    const response = await fetch(path("messages"));
    if (!response.ok) return;
    data = await response.json();
  } catch {
    return; // the service restarts: the next round tries again
  }
  const received = data.messages.map((m) => ({ ...m, at: m.received_at }));
  const mine = sent.get(number()) || [];
  const key = JSON.stringify([number(), received.length, mine.length]);
  if (key === shown) return;
  shown = key;
  const all = [...received.map((m) => [m, false]), ...mine.map((m) => [m, true])]
    .sort((a, b) => new Date(a[0].at) - new Date(b[0].at));
  inbox.replaceChildren(...all.map(([m, isMine]) => bubble(m, isMine)));
  inbox.scrollTop = inbox.scrollHeight;
}

function openBrowser() {
  inbox.hidden = true;
  browser.hidden = false;
}

document.getElementById("back-to-inbox").addEventListener("click", () => {
  browser.hidden = true;
  inbox.hidden = false;
  frame.src = "about:blank";
});

replyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = replyText.value.trim();
  if (!text) return;
  replyError.textContent = "";
  const response = await fetch(path("reply"), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }),
  });
  if (!response.ok) {
    replyError.textContent = (await response.json()).detail;
    return;
  }
  sent.set(number(), [...(sent.get(number()) || []), { text, at: new Date().toISOString() }]);
  replyText.value = "";
  refresh();
});

select.addEventListener("change", () => {
  shown = "";
  refresh();
});
refresh();
setInterval(refresh, 1000);
