// The demo page's phone: the inbox of a number on the built-in SMSC, a reply box that sends a
// mobile-originated SMS over SMPP, and the payment links of the SMS opened inside the phone.
// It follows the TV: the number the TV orders for is shown ("tvpay:order"), and Tab from the
// TV goes to the reply box. It speaks the service's SMS language and shows times in the
// service's TIMEZONE, as the SMS and the TV do.

const phone = document.querySelector(".phone");
const select = document.getElementById("phone-number");
const inbox = document.getElementById("inbox");
const browser = document.getElementById("browser");
const frame = document.getElementById("phone-browser");
const replyForm = document.getElementById("reply-form");
const replyText = document.getElementById("reply-text");
const replyError = document.getElementById("reply-error");
const tv = document.getElementById("tv");
const publicBase = new URL(phone.dataset.publicBase);
// gateway/domain/texts' "datetime" format of each language
const DATETIME = {
  "zh-CN": (p) => `${p.year}年${p.month}月${p.day}日 ${p.hour}:${p.minute}`,
  en: (p) => `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`,
};
const timeFormat = new Intl.DateTimeFormat("en-US", {
  timeZone: phone.dataset.timeZone || undefined, hourCycle: "h23",
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
});
const showTime = (iso) => (DATETIME[phone.lang] || DATETIME.en)(Object.fromEntries(
  timeFormat.formatToParts(new Date(iso)).map((p) => [p.type, p.value])));
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
  const time = showTime(message.at);
  meta.textContent = `${mine ? phone.dataset.me : message.from} · ${time}`;
  item.append(meta, ...withLinks(message.text));
  return item;
}

async function refresh() {
  const asked = number();
  let data;
  try {
    const response = await fetch(path("messages"));
    if (!response.ok) return;
    data = await response.json();
  } catch {
    return; // the service restarts: the next round tries again
  }
  if (number() !== asked) return; // another number was chosen meanwhile
  const received = data.messages.map((m) => ({ ...m, at: m.received_at }));
  const mine = sent.get(asked) || [];
  const key = JSON.stringify([asked, received.length, mine.length]);
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

function showNumber(phoneNumber) {
  if (![...select.options].some((option) => option.value === phoneNumber)) {
    select.append(new Option(phoneNumber, phoneNumber)); // a number of no wallet, typed on the TV
  }
  select.value = phoneNumber;
  shown = "";
  refresh();
}

select.addEventListener("change", () => showNumber(select.value));
// The TV ordered: its SMS go to this number.
tv.addEventListener("tvpay:order", (event) => showNumber(event.detail.phone));
// Tab from the TV goes to the reply box, to type the code; Shift+Tab from there goes back
// through the inbox and the number.
tv.addEventListener("keydown", (event) => {
  if (event.key !== "Tab" || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  replyText.focus();
});
refresh();
setInterval(refresh, 1000);
