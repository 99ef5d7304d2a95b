// The reference TV app: a 10-foot UI driven like a remote, with the arrow keys, Enter (OK),
// Backspace (back: on the phone number screen it deletes a digit, and goes back on an empty
// number) and the digit keys. It uses only the public API under /api/v1, so operators'
// TV developers can read it as an example: list packages, order with a phone number, show the
// QR code, follow the order on its event stream, show the package active with its expiry.
//
// Mount it on any element with the attribute data-tv-app (data-device-id, data-language,
// data-api-key, data-time-zone: the service's TIMEZONE, in which it shows dates as its SMS do).
// Every call carries the TV app's key (Authorization: Bearer); the stand-alone page takes it
// once as ?key=… and keeps it in localStorage, like the device id. When it has placed an order
// it dispatches the DOM event "tvpay:order" (bubbling) on that element, detail { orderId,
// phone }, so a page around it can follow, as the demo's phone does.

const TEXTS = {
  "zh-CN": {
    choose: "选择套餐", days: (n) => `${n}天`, active: "已开通", none: "暂无已开通的套餐",
    until: (d) => `有效期至 ${d}`, enterPhone: "输入手机号", phoneHint: "验证码或支付链接将发送到此号码",
    date: (p) => `${p.year}年${p.month}月${p.day}日`, // as the SMS: gateway/domain/texts' "date"
    ok: "确定", del: "删除", ordering: "正在下单…", scan: "也可用手机扫码支付",
    waiting: "等待支付…", retry: "重试", home: "返回首页", cancel: "取消订单",
    keys: "方向键选择 · 确定键确认 · 返回键后退", device: "设备",
    badPhone: "请输入11位手机号", busy: (s) => `操作太频繁，请 ${s} 秒后再试`,
    failed: "下单失败", offline: "网络异常，请稍后再试", noKey: "缺少应用密钥：请以 /tv?key=… 打开",
  },
  en: {
    choose: "Choose a package", days: (n) => `${n} days`, active: "Active", none: "No active packages",
    until: (d) => `active until ${d}`, enterPhone: "Enter your phone number",
    date: (p) => `${p.year}-${p.month}-${p.day}`,
    phoneHint: "A code or a payment link goes to this number", ok: "OK", del: "Delete",
    ordering: "Placing the order…", scan: "Or scan to pay on your phone", waiting: "Waiting for payment…",
    retry: "Try again", home: "Home", cancel: "Cancel order",
    keys: "Arrows to move · OK to choose · Back to go back", device: "Device",
    badPhone: "Enter an 11-digit phone number", busy: (s) => `Too many tries: wait ${s} s`,
    failed: "The order failed", offline: "The network is down; try again later",
    noKey: "This TV app has no key: open it as /tv?key=…",
  },
};
const FINAL = new Set(["activated", "failed", "expired", "cancelled"]);
const KEYPAD = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "ok"];
const PHONE_DIGITS = 11;

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== false && value != null) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c != null));
  return node;
}

function money(amount, currency, language) {
  const format = new Intl.NumberFormat(language, { style: "currency", currency });
  return format.format(amount / 10 ** format.resolvedOptions().maximumFractionDigits);
}

// A moment's year, month and day (two digits each) in a time zone, as the service's texts show
// dates (gateway/domain/texts: 2027年01月06日, 2027-01-06) whatever the browser's own zone.
function dateParts(iso, timeZone) {
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit",
  });
  return Object.fromEntries(format.formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
}

function deviceId(root) {
  const given = root.dataset.deviceId || new URLSearchParams(location.search).get("device_id");
  if (given) return given;
  let stored = localStorage.getItem("tvpay.device_id");
  if (!stored) {
    stored = `tv-${crypto.randomUUID().slice(0, 8)}`;
    localStorage.setItem("tvpay.device_id", stored);
  }
  return stored;
}

function apiKey(root) {
  const params = new URLSearchParams(location.search);
  if (params.has("key")) { // keep it, and out of the address bar and the history
    localStorage.setItem("tvpay.api_key", params.get("key"));
    params.delete("key");
    history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
  }
  return root.dataset.apiKey || localStorage.getItem("tvpay.api_key");
}

let authorization = {};

async function api(method, path, body) {
  const response = await fetch(`/api/v1${path}`, {
    method, headers: body ? { ...authorization, "Content-Type": "application/json" } : authorization,
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw Object.assign(new Error(data.detail), { problem: data, response });
  return data;
}

// An event stream read with fetch, since EventSource cannot send the key: it calls onEvent for
// each event and, like EventSource, reconnects after 2 s with the Last-Event-ID it has seen.
function follow(path, onEvent) {
  const stop = new AbortController();
  let lastId = null;
  const dispatch = (block) => {
    const fields = {};
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).replace(/^ /, "");
    }
    if (fields.id) lastId = fields.id;
    if (fields.data) onEvent(fields.event, JSON.parse(fields.data));
  };
  (async () => {
    while (!stop.signal.aborted) {
      try {
        const headers = { ...authorization, Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(`/api/v1${path}`, { headers, signal: stop.signal });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (let read = await reader.read(); !read.done; read = await reader.read()) {
          buffer += read.value;
          for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch {
        if (stop.signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();
  return { close: () => stop.abort() };
}

// Move the focus to the nearest button in the direction of an arrow key, as a remote does.
function moveFocus(root, key) {
  const buttons = [...root.querySelectorAll("button:not([disabled])")];
  const current = document.activeElement;
  if (!buttons.includes(current)) return buttons[0]?.focus();
  const from = current.getBoundingClientRect();
  const [dx, dy] = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
  let best = null;
  let bestScore = Infinity;
  for (const button of buttons) {
    if (button === current) continue;
    const to = button.getBoundingClientRect();
    const along = dx * (to.x + to.width / 2 - from.x - from.width / 2)
      + dy * (to.y + to.height / 2 - from.y - from.height / 2);
    const across = Math.abs(dy * (to.x + to.width / 2 - from.x - from.width / 2))
      + Math.abs(dx * (to.y + to.height / 2 - from.y - from.height / 2));
    if (along <= 1) continue;
    const score = along + 2 * across;
    if (score < bestScore) [best, bestScore] = [button, score];
  }
  best?.focus();
}

export function mountTv(root) {
  const language = root.dataset.language in TEXTS ? root.dataset.language : "zh-CN";
  const t = TEXTS[language];
  const device = deviceId(root);
  const key = apiKey(root);
  authorization = key ? { Authorization: `Bearer ${key}` } : {};
  const timeZone = root.dataset.timeZone || undefined; // undefined: the browser's
  const state = {
    packages: [], entitlements: [], package: null, digits: "", phone: null, order: null,
  };
  let stream = null;
  let onBack = () => {};
  let typeDigit = null; // the digit keys of the remote, on the phone number screen

  const screen = h("div", { class: "tv-screen" });
  root.replaceChildren(
    h("div", { class: "tv-bar" }, h("span", { class: "tv-brand" }, "TV Pay"),
      h("span", { class: "tv-device" }, `${t.device} ${device}`)),
    screen,
    h("div", { class: "tv-keys" }, t.keys),
  );

  function show(children, back, focus) {
    screen.replaceChildren(...children);
    onBack = back;
    typeDigit = null;
    if (root.contains(document.activeElement) || document.activeElement === document.body) {
      (focus || screen.querySelector("button"))?.focus();
    }
  }

  function date(iso) {
    return t.date(dateParts(iso, timeZone));
  }

  async function home() {
    closeStream();
    if (!key) return show([h("h1", {}, t.noKey)], () => {});
    try {
      const [packages, entitlements] = await Promise.all([
        api("GET", "/packages"), api("GET", `/devices/${encodeURIComponent(device)}/entitlements`)]);
      state.packages = packages.packages;
      state.entitlements = entitlements.entitlements;
    } catch {
      return show([h("h1", {}, t.offline), h("button", { onclick: home }, t.retry)], () => {});
    }
    const names = Object.fromEntries(state.packages.map((p) => [p.id, p.name]));
    const tiles = state.packages.map((p) => h("button", {
      class: "tile", "data-package": p.id, onclick: () => phoneScreen(p, "", ""),
    }, h("span", { class: "tile-name" }, p.name),
    h("span", { class: "tile-price" }, money(p.price, p.currency, language)),
    h("span", { class: "tile-period" }, t.days(p.period_days))));
    const active = state.entitlements.length
      ? state.entitlements.map((e) => h("li", {}, `${names[e.package_id] || e.package_id} · ${t.until(date(e.active_until))}`))
      : [h("li", { class: "muted" }, t.none)];
    show([h("h1", {}, t.choose), h("div", { class: "tiles" }, tiles),
      h("section", { class: "entitlements", "aria-label": t.active },
        h("h2", {}, t.active), h("ul", {}, active))], () => {});
  }

  // The phone number screen; digits: a new number ("") or, after a failed order, the one kept.
  function phoneScreen(pkg, error, digits = state.digits) {
    state.package = pkg;
    state.digits = digits;
    const display = h("output", { class: "phone-digits", "aria-live": "polite" });
    const message = h("p", { class: "tv-error", role: "alert" }, error || "");
    const render = () => {
      const d = state.digits;
      display.textContent = [d.slice(0, 3), d.slice(3, 7), d.slice(7)].filter(Boolean).join(" ") || "—";
    };
    const press = (key) => {
      message.textContent = "";
      if (key === "del") state.digits = state.digits.slice(0, -1);
      else if (key === "ok") return submit();
      else if (state.digits.length < PHONE_DIGITS) {
        state.digits += key;
        // complete: OK is next, so the remote's OK (Enter) submits rather than press a digit
        const complete = state.digits.length === PHONE_DIGITS;
        if (complete && root.contains(document.activeElement)) ok.focus();
      }
      render();
    };
    const submit = () => {
      if (!/^1\d{10}$/.test(state.digits)) {
        message.textContent = t.badPhone;
        return;
      }
      placeOrder();
    };
    const keys = KEYPAD.map((key) => h("button", {
      class: `key key-${key}`, "data-key": key, onclick: () => press(key),
    }, key === "del" ? t.del : key === "ok" ? t.ok : key));
    const ok = keys[KEYPAD.indexOf("ok")];
    render();
    show([
      h("h1", {}, `${pkg.name} · ${money(pkg.price, pkg.currency, language)}`),
      h("label", { class: "phone-label" }, t.enterPhone), display, message,
      h("div", { class: "keypad" }, keys),
      h("p", { class: "muted" }, t.phoneHint),
    ], () => { // back: delete a digit; on an empty number, leave
      if (state.digits) press("del");
      else home();
    }, state.digits.length === PHONE_DIGITS ? ok : keys[0]);
    typeDigit = press;
  }

  async function placeOrder(retryOf) {
    show([h("h1", {}, t.ordering)], () => {});
    try {
      const phone = retryOf ? state.phone : state.digits;
      const order = retryOf
        ? await api("POST", `/orders/${retryOf}/retry`)
        : await api("POST", "/orders", { device_id: device, package_id: state.package.id, phone });
      state.phone = phone;
      root.dispatchEvent(new CustomEvent("tvpay:order", {
        bubbles: true, detail: { orderId: order.id, phone },
      }));
      orderScreen(order);
    } catch (error) {
      const problem = error.problem;
      const wait = error.response?.headers.get("Retry-After");
      const text = !problem ? t.offline
        : problem.code === "invalid_phone" || problem.code === "phone_country_not_allowed" ? t.badPhone
          : wait ? t.busy(wait) : `${t.failed}: ${problem.detail}`;
      if (retryOf) show([h("h1", {}, text), h("button", { onclick: home }, t.home)], home);
      else phoneScreen(state.package, text);
    }
  }

  function orderScreen(order) {
    state.order = order;
    const status = h("p", { class: "order-message", role: "status", "aria-live": "polite" }, t.waiting);
    const image = h("img", { alt: t.scan, width: 240, height: 240 });
    const qr = h("figure", { class: "qr" }, image, h("figcaption", {}, t.scan));
    // An <img> cannot send the key: fetch the QR code, show it from memory.
    fetch(order.qr_url, { headers: authorization })
      .then((response) => (response.ok ? response.blob() : Promise.reject()))
      .then((png) => { image.src = URL.createObjectURL(png); })
      .catch(() => qr.remove());
    const actions = h("div", { class: "actions" });
    const cancel = h("button", { onclick: () => leave(true) }, t.cancel);
    actions.append(cancel);
    const amount = money(order.amount, order.currency, language);
    show([h("h1", {}, `${state.package?.name || order.package_id || order.kind} · ${amount}`),
      h("div", { class: "order" }, status, qr), actions],
    () => leave(true));

    const update = (event) => {
      if (event.message) status.textContent = event.message;
      if (event.status) state.order = { ...state.order, status: event.status };
      if (!event.status || !FINAL.has(event.status)) return;
      closeStream();
      qr.remove();
      root.classList.toggle("tv-success", event.status === "activated");
      const buttons = event.status === "activated" ? [h("button", { onclick: home }, t.home)]
        : [h("button", { onclick: () => placeOrder(order.id) }, t.retry), h("button", { onclick: home }, t.home)];
      actions.replaceChildren(...buttons);
      onBack = home;
      if (root.contains(document.activeElement) || document.activeElement === document.body) buttons[0].focus();
    };
    closeStream();
    stream = follow(`/orders/${encodeURIComponent(order.id)}/events`, (type, event) => {
      if (type === "order.status" || type === "order.wrong_code") update(event);
    });
  }

  async function leave(cancelPending) {
    const order = state.order;
    closeStream();
    if (cancelPending && order && !FINAL.has(order.status)) {
      try { await api("POST", `/orders/${encodeURIComponent(order.id)}/cancel`); } catch { /* it ended anyway */ }
    }
    home();
  }

  function closeStream() {
    stream?.close();
    stream = null;
    root.classList.remove("tv-success");
  }

  root.addEventListener("keydown", (event) => {
    if (event.key.startsWith("Arrow")) {
      moveFocus(root, event.key);
    } else if (event.key === "Backspace" || event.key === "Escape") {
      onBack();
    } else if (/^\d$/.test(event.key) && typeDigit) {
      typeDigit(event.key);
    } else {
      return;
    }
    event.preventDefault();
  });
  root.addEventListener("focus", () => screen.querySelector("button")?.focus());
  home();
}

for (const root of document.querySelectorAll("[data-tv-app]")) mountTv(root);
