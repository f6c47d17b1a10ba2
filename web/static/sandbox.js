// The sandbox page: polls the sandbox's state, renders what changed, and posts what the shop,
// the customer's phone and the clock do. The Setup panel and the merchant's view use the real
// admin API with the demo shop's key. No framework: the page's own HTML is the skeleton, this
// fills it in.
"use strict";

(() => {
  const STATE_URL = "/sandbox/api/state";
  const ADMIN_URL = "/api/v1";
  const EVENTS_URL = "/sandbox/api/events";
  const POLL_MS = 1000;
  // While the event stream is up it says when something changed; polling then only keeps
  // the clock moving.
  const STREAM_POLL_MS = 3000;
  const HIDDEN_POLL_MS = 5000;
  const MAX_BACKOFF_MS = 5000;
  // The merchant's view follows the state's changes, and also re-reads now and then: its
  // default range (the last 7 days) moves with the sandbox's clock.
  const MERCHANT_REFRESH_MS = 15000;
  const MERCHANT_LIMIT = 100;
  // The channels whose account the Setup panel lets the merchant pick.
  const SETUP_CHANNELS = ["voice", "sms"];
  const PROVIDER_NAMES = { twilio: "Twilio", exotel: "Exotel", gupshup: "Gupshup", ringcentral: "RingCentral" };

  const root = document.querySelector('[data-testid="sandbox"]');
  const STATUS_LABELS = JSON.parse(root.dataset.statusLabels || "{}");
  const NORMAL_CUSTOMER = root.dataset.normalCustomer || "";

  const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

  let state = null;
  // Action keys whose request is in flight: their buttons stay disabled across re-renders.
  const busy = new Set();
  // The last rendered value per region, so that an unchanged state renders nothing.
  const rendered = new Map();
  let pickedPhone = "";
  let openLink = null; // {number, url}

  // ---------------------------------------------------------------- helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "testid") node.dataset.testid = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // A button that calls `act` on click. `busyKey` groups the buttons one request disables;
  // `off` disables it whatever is in flight.
  function actionButton(text, { testid, act, busyKey, focusKey, off = false, data = {}, label }) {
    const attrs = {
      type: "button",
      testid,
      "data-act": act,
      "data-busy-key": busyKey,
      "data-focus-key": focusKey,
      "data-off": off ? "1" : "",
      "aria-label": label,
    };
    for (const [name, value] of Object.entries(data)) attrs[`data-${name}`] = value;
    const button = h("button", attrs, text);
    button.disabled = off || busy.has(busyKey);
    return button;
  }

  // Writes only what differs, so that an unchanged state changes nothing in the page.
  function setDisabled(button) {
    const inFlight = busy.has(button.dataset.busyKey);
    const disabled = button.dataset.off === "1" || inFlight;
    if (button.disabled !== disabled) button.disabled = disabled;
    if (inFlight !== button.hasAttribute("aria-busy")) {
      if (inFlight) button.setAttribute("aria-busy", "true");
      else button.removeAttribute("aria-busy");
    }
  }

  function setOff(button, off) {
    const value = off ? "1" : "";
    if (button.dataset.off !== value) button.dataset.off = value;
    setDisabled(button);
  }

  function applyBusy() {
    for (const button of document.querySelectorAll("[data-busy-key]")) setDisabled(button);
  }

  function byFocusKey(key) {
    return key ? document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`) : null;
  }

  function changed(region, value) {
    const text = JSON.stringify(value);
    if (rendered.get(region) === text) return false;
    rendered.set(region, text);
    return true;
  }

  function replaceKeepingFocus(old, fresh) {
    const active = document.activeElement;
    const key = active && old.contains(active) ? active.dataset.focusKey : null;
    old.replaceWith(fresh);
    const twin = key ? fresh.querySelector(`[data-focus-key="${CSS.escape(key)}"]`) : null;
    if (twin && !twin.disabled) twin.focus();
  }

  // Keyed reconciliation: items whose data did not change keep their DOM node (and focus).
  function syncList(list, items, keyOf, build) {
    const old = new Map();
    for (const child of list.children) old.set(child.dataset.key, child);
    let previous = null;
    for (const item of items) {
      const key = String(keyOf(item));
      const signature = JSON.stringify(item);
      let node = old.get(key);
      old.delete(key);
      if (!node || node.dataset.signature !== signature) {
        const fresh = build(item);
        fresh.dataset.key = key;
        fresh.dataset.signature = signature;
        if (node) replaceKeepingFocus(node, fresh);
        node = fresh;
      }
      const wanted = previous ? previous.nextSibling : list.firstChild;
      if (node !== wanted) list.insertBefore(node, wanted);
      previous = node;
    }
    for (const node of old.values()) node.remove();
  }

  function setText(testid, text) {
    const node = $(testid);
    if (node.textContent !== text) node.textContent = text;
  }

  function showEmpty(testid, empty) {
    $(testid).hidden = !empty;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function parseTime(iso) {
    const moment = iso ? new Date(iso) : null;
    return moment && !Number.isNaN(moment.getTime()) ? moment : null;
  }

  // Times are shown in UTC: the sandbox's clock is not the viewer's.
  function formatTime(iso) {
    const t = parseTime(iso);
    if (!t) return iso || "—";
    return (
      `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())} ` +
      `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())} UTC`
    );
  }

  function formatClock(iso) {
    const t = parseTime(iso);
    return t ? `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}` : "";
  }

  function formatMinutes(total) {
    const minutes = Math.round(Math.abs(total));
    const days = Math.floor(minutes / 1440);
    const hours = Math.floor((minutes % 1440) / 60);
    const parts = [];
    if (days) parts.push(`${days} d`);
    if (hours) parts.push(`${hours} h`);
    if (minutes % 60 || !parts.length) parts.push(`${minutes % 60} min`);
    return parts.join(" ");
  }

  function timeElement(iso, text) {
    return h("time", { datetime: iso || null }, text === undefined ? formatTime(iso) : text);
  }

  function statusBadge(status, testid) {
    const value = status || "none";
    return h(
      "span",
      { class: `badge status-${value}`, testid, "data-status": value },
      STATUS_LABELS[value] || value.replace(/_/g, " "),
    );
  }

  function humanize(text) {
    return text ? String(text).replace(/_/g, " ") : "";
  }

  function providerName(provider) {
    return PROVIDER_NAMES[provider] || provider || "";
  }

  // ---------------------------------------------------------------- requests

  async function request(method, url, body, headers) {
    const init = {
      method,
      cache: "no-store",
      headers: { Accept: "application/json", ...(headers || {}) },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    return { ok: response.ok, status: response.status, data };
  }

  function problemOf(result) {
    const error = result.data && result.data.error;
    const message =
      error && error.message ? error.message : `The request failed (HTTP ${result.status}).`;
    return { message, fields: (error && Array.isArray(error.fields) && error.fields) || [] };
  }

  function showError(testid, text) {
    setText(testid, text || "");
  }

  function clearFieldErrors(form) {
    for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  // Puts each field's message next to its input; returns the messages with no place.
  function showFieldErrors(form, prefix, fields) {
    const homeless = [];
    for (const { field, message } of fields) {
      const name = String(field || "").split(".").pop();
      const slot = name ? form.querySelector(`[data-testid="${prefix}-error-${CSS.escape(name)}"]`) : null;
      if (!slot) {
        homeless.push(field ? `${field}: ${message}` : message);
        continue;
      }
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      for (const input of form.querySelectorAll(`[name="${CSS.escape(name)}"]`)) {
        input.setAttribute("aria-invalid", "true");
      }
    }
    return homeless;
  }

  // Runs one action: its buttons are disabled while it is in flight, its errors shown in
  // `errorTestid`, and the state is read again as soon as it is done.
  async function run(busyKey, errorTestid, send) {
    if (busy.has(busyKey)) return null;
    const focusKey = document.activeElement ? document.activeElement.dataset.focusKey : null;
    busy.add(busyKey);
    applyBusy();
    if (errorTestid) showError(errorTestid, "");
    let result = null;
    try {
      result = await send();
      if (!result.ok && errorTestid) showError(errorTestid, problemOf(result).message);
    } catch (err) {
      if (errorTestid) showError(errorTestid, `The sandbox did not answer (${err.message}).`);
    } finally {
      busy.delete(busyKey);
      applyBusy();
      const active = document.activeElement;
      if (!active || active === document.body) {
        const again = byFocusKey(focusKey);
        if (again && !again.disabled) again.focus();
      }
      pollSoon();
    }
    return result;
  }

  const post = (url, body) => request("POST", url, body === undefined ? {} : body);
  const phoneUrl = (number, action) =>
    `/sandbox/api/phones/${encodeURIComponent(number)}/${action}`;

  // ---------------------------------------------------------------- polling

  let polling = false;
  let pollAgain = false;
  let pollTimer = null;
  let failures = 0;
  let streaming = false;

  async function poll() {
    clearTimeout(pollTimer);
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    try {
      const result = await request("GET", STATE_URL);
      if (!result.ok || !result.data) throw new Error(`HTTP ${result.status}`);
      failures = 0;
      setConnection("live", "Live");
      render(result.data);
    } catch (err) {
      failures += 1;
      setConnection("down", `Cannot read the sandbox's state (${err.message}); retrying…`);
    } finally {
      polling = false;
      let delay = document.hidden ? HIDDEN_POLL_MS : streaming ? STREAM_POLL_MS : POLL_MS;
      if (failures) delay = Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** Math.min(failures, 3));
      if (pollAgain) delay = 0;
      pollAgain = false;
      pollTimer = setTimeout(poll, delay);
    }
  }

  function pollSoon() {
    if (polling) pollAgain = true;
    else {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(poll, 0);
    }
  }

  // Server-sent events, when the back end offers them: any event means "read the state again".
  // A stream that never opens (no such route) is closed for good and polling carries on.
  function listen() {
    if (!window.EventSource) return;
    const source = new EventSource(EVENTS_URL);
    let opened = false;
    source.addEventListener("open", () => {
      opened = true;
      streaming = true;
    });
    source.addEventListener("changed", pollSoon);
    source.addEventListener("message", pollSoon);
    source.addEventListener("error", () => {
      streaming = false;
      if (!opened) source.close();
    });
  }

  function setConnection(kind, text) {
    const node = $("connection-status");
    node.dataset.state = kind;
    if (node.textContent !== text) node.textContent = text;
  }

  function render(data) {
    state = data;
    renderShop();
    renderTime();
    renderPresets();
    renderOrders();
    renderCustomers();
    renderPhones();
    renderRequests();
    renderThreads();
    applyBusy();
    setupFollowState();
    merchantFollowState();
    notifyFollowState();
    chatFollowState();
  }

  // ---------------------------------------------------------------- shop

  function renderShop() {
    const shop = state.shop || {};
    if (!changed("shop", shop)) return;
    setText("shop-name", shop.name ? `${shop.name} · ${shop.domain || ""}` : shop.domain || "");
  }

  function renderPresets() {
    const special = state.special_numbers || {};
    if (!changed("presets", special)) return;
    const select = $("order-phone-preset");
    const names = { dnd: "DND number", never_answers: "Never answers" };
    for (const option of select.options) {
      if (!(option.value in names)) continue;
      const number = special[option.value] || "";
      option.dataset.number = number;
      option.disabled = !number;
      option.textContent = number ? `${names[option.value]} (${number})` : `${names[option.value]} (not offered)`;
    }
    matchPreset();
  }

  // The preset select follows the phone input: a typed number that is a preset's selects it.
  function matchPreset() {
    const select = $("order-phone-preset");
    const phone = $("order-phone").value.trim();
    const preset = [...select.options].find((o) => o.dataset.number && o.dataset.number === phone);
    select.value = preset ? preset.value : "other";
  }

  function orderKey(order) {
    return String(order.id);
  }

  function sortedOrders() {
    const orders = [...(state.orders || [])];
    // Newest first: ids grow with creation.
    if (orders.every((o) => /^[0-9]+$/.test(String(o.id)))) {
      orders.sort((a, b) => Number(b.id) - Number(a.id));
    }
    return orders;
  }

  function orderState(order) {
    if (order.cancelled) return "Cancelled";
    if (order.fulfillment_status) return humanize(order.fulfillment_status).replace(/^./, (c) => c.toUpperCase());
    return "Not fulfilled";
  }

  function buildOrder(order) {
    const id = orderKey(order);
    const name = order.name || `Order ${id}`;
    const cancelled = Boolean(order.cancelled);
    const tags = order.tags || [];
    const common = { busyKey: `order:${id}`, data: { "order-id": id } };
    return h(
      "li",
      {
        class: `order${cancelled ? " is-cancelled" : ""}`,
        testid: "order-row",
        "data-order-id": id,
        "data-order-name": order.name || "",
        "data-status": order.verification_status || "none",
        "data-cancelled": cancelled ? "true" : "false",
        "data-fulfillment": order.fulfillment_status || "",
      },
      h(
        "div",
        { class: "order-head" },
        h("strong", { testid: "order-row-name" }, name),
        statusBadge(order.verification_status, "order-row-status"),
      ),
      h(
        "dl",
        { class: "facts" },
        h("div", {}, h("dt", {}, "Phone"), h("dd", { testid: "order-row-phone" }, order.phone || "—")),
        h(
          "div",
          {},
          h("dt", {}, "Amount"),
          h("dd", { testid: "order-row-amount" }, `${order.amount ?? ""} ${order.currency || ""}`.trim()),
        ),
        h(
          "div",
          {},
          h("dt", {}, "Payment"),
          h("dd", { testid: "order-row-payment" }, order.payment === "cod" ? "COD" : humanize(order.payment)),
        ),
        h("div", {}, h("dt", {}, "Shipping"), h("dd", { testid: "order-row-shipping" }, orderState(order))),
      ),
      tags.length
        ? h(
            "ul",
            { class: "tags", testid: "order-row-tags", "aria-label": `Tags of ${name}` },
            tags.map((tag) => h("li", { class: "tag", testid: "order-row-tag" }, tag)),
          )
        : h("p", { class: "tags none", testid: "order-row-tags" }, "No tags"),
      journeyControls(order),
      h(
        "div",
        { class: "actions" },
        actionButton("Cancel", {
          ...common,
          testid: "order-row-cancel",
          act: "order-cancel",
          focusKey: `order-cancel:${id}`,
          off: cancelled,
          label: `Cancel ${name}`,
        }),
      ),
      journeyLines(order),
    );
  }

  function renderOrders() {
    const orders = sortedOrders();
    if (!changed("orders", orders)) return;
    showEmpty("order-list-empty", orders.length === 0);
    syncList($("order-list"), orders, orderKey, buildOrder);
  }

  const SMS_CONSENT_LABELS = {
    subscribed: "Subscribed",
    unsubscribed: "Unsubscribed",
    not_subscribed: "Not subscribed",
    pending: "Pending",
    redacted: "Redacted",
  };

  function buildCustomer(customer) {
    const subscribed = customer.sms_consent === "subscribed";
    const who = customer.name || customer.phone;
    return h(
      "li",
      { class: "customer", testid: "customer-row", "data-phone": customer.phone, "data-sms-consent": customer.sms_consent },
      h("strong", {}, who),
      h("span", { class: "meta" }, ` ${customer.phone} · SMS marketing: `),
      h("span", { testid: "customer-sms-consent" }, SMS_CONSENT_LABELS[customer.sms_consent] || humanize(customer.sms_consent)),
      actionButton(subscribed ? "Unsubscribe in Shopify" : "Subscribe in Shopify", {
        testid: "customer-sms-consent-toggle",
        act: "sms-consent",
        busyKey: `consent:${customer.phone}`,
        focusKey: `consent:${customer.phone}`,
        data: { number: customer.phone, subscribed: subscribed ? "false" : "true" },
        label: `${subscribed ? "Unsubscribe" : "Subscribe"} ${who} to SMS marketing in Shopify`,
      }),
      whatsappConsentButton(customer, who),
    );
  }

  function renderCustomers() {
    const customers = (state.customers || []).map(withWhatsAppConsent);
    if (!changed("customers", customers)) return;
    showEmpty("customer-list-empty", customers.length === 0);
    syncList($("customer-list"), customers, (c) => String(c.id), buildCustomer);
  }

  function setSmsConsent(button) {
    const number = button.dataset.number;
    run(`consent:${number}`, "shop-error", () =>
      post(`/sandbox/api/customers/${encodeURIComponent(number)}/sms-consent`, {
        subscribed: button.dataset.subscribed === "true",
      }),
    );
  }

  async function createOrder(event) {
    event.preventDefault();
    const form = $("order-form");
    const body = {
      phone: $("order-phone").value.trim(),
      amount: $("order-amount").value.trim(),
      payment: form.querySelector('input[name="payment"]:checked')?.value || "cod",
    };
    const customer = $("order-customer").value.trim();
    if (customer) body.customer = customer;
    clearFieldErrors(form);
    setText("order-form-status", "");
    const result = await run("order-create", "order-form-error", () =>
      post("/sandbox/api/orders", body),
    );
    if (!result) return;
    if (result.ok) {
      const order = (result.data && result.data.order) || {};
      const name = order.name || "The order";
      setText("order-form-status", `${name} was created for ${order.phone || body.phone}.`);
      if (order.phone || body.phone) pickPhone(order.phone || body.phone);
      return;
    }
    const { message, fields } = problemOf(result);
    const homeless = showFieldErrors(form, "order", fields);
    const summary = fields.length ? "The order was not created: see the fields marked." : message;
    showError("order-form-error", [summary, ...homeless].join(" "));
  }

  function orderAction(button, action) {
    const id = button.dataset.orderId;
    run(`order:${id}`, "shop-error", () =>
      post(`/sandbox/api/orders/${encodeURIComponent(id)}/${action}`),
    );
  }

  // ---------------------------------------------------------------- time

  function renderTime() {
    const view = {
      now: state.now,
      offset: state.offset_minutes,
      next: state.next_job_at,
    };
    if (!changed("time", view)) return;
    setText("sandbox-time", formatTime(view.now));
    if (view.now) $("sandbox-time").setAttribute("datetime", view.now);
    const offset = Number(view.offset) || 0;
    setText("sandbox-offset", offset ? `${offset < 0 ? "−" : "+"}${formatMinutes(offset)}` : "Not moved");
    const next = parseTime(view.next);
    const now = parseTime(view.now);
    let text = "No job waiting";
    if (next) {
      const minutes = now ? (next - now) / 60000 : 0;
      text = `${formatTime(view.next)} (${minutes > 0 ? `in ${formatMinutes(minutes)}` : "due now"})`;
    }
    setText("next-job-at", text);
    const nextNode = $("next-job-at");
    if (nextNode.dataset.at !== (view.next || "")) nextNode.dataset.at = view.next || "";
    setOff($("advance-10"), false);
    setOff($("advance-next-job"), !next);
  }

  function advance(body) {
    run("time", "time-error", () => post("/sandbox/api/time", body));
  }

  // ---------------------------------------------------------------- phone

  function phoneNumbers() {
    const numbers = (state.phones || []).map((p) => p.number);
    if (pickedPhone && !numbers.includes(pickedPhone)) numbers.push(pickedPhone);
    return numbers;
  }

  function phoneState(number) {
    return (state.phones || []).find((p) => p.number === number) || null;
  }

  function phoneLabel(number) {
    const special = state.special_numbers || {};
    let label = number;
    if (number === special.dnd) label += " (DND)";
    else if (number === special.never_answers) label += " (never answers)";
    else if (number === NORMAL_CUSTOMER) label += " (normal customer)";
    const phone = phoneState(number);
    if (phone && phone.ringing) label += " — ringing";
    return label;
  }

  function pickPhone(number) {
    if (number === pickedPhone) return;
    pickedPhone = number;
    closeLink();
    if (state) renderPhones();
    applyBusy();
  }

  function renderPhones() {
    if (!pickedPhone) {
      // Nothing picked yet: a ringing phone, else the normal customer's (the form's default).
      const ringing = (state.phones || []).find((p) => p.ringing);
      pickedPhone = ringing ? ringing.number : NORMAL_CUSTOMER;
    }
    renderPicker();
    renderRingingElsewhere();
    renderPhone();
  }

  function renderPicker() {
    const options = phoneNumbers().map((number) => ({ number, label: phoneLabel(number) }));
    if (!changed("picker", { options, pickedPhone })) return;
    const select = $("phone-picker");
    const focused = document.activeElement === select;
    select.replaceChildren(
      ...(options.length
        ? options.map((o) => h("option", { value: o.number }, o.label))
        : [h("option", { value: "" }, "No phones yet")]),
    );
    select.value = pickedPhone;
    if (focused) select.focus();
  }

  function renderRingingElsewhere() {
    const others = (state.phones || []).filter((p) => p.ringing && p.number !== pickedPhone);
    if (!changed("ringing-elsewhere", others.map((p) => p.number))) return;
    $("ringing-elsewhere").replaceChildren(
      ...others.map((p) =>
        h(
          "p",
          { class: "notice", testid: "ringing-notice", "data-number": p.number },
          `${p.number} is ringing. `,
          actionButton("Show this phone", {
            testid: "ringing-show",
            act: "pick-phone",
            focusKey: `ringing-show:${p.number}`,
            data: { number: p.number },
          }),
        ),
      ),
    );
  }

  function renderPhone() {
    const number = pickedPhone;
    const phone = phoneState(number) || { number, threads: {}, ringing: null, calls: [] };
    const threads = phone.threads || {};
    const fresh = changed("phone-number", number);
    if (fresh) {
      setText("phone-number", number || "No phone picked");
      $("phone-frame").dataset.number = number;
      for (const testid of ["sms-thread", "whatsapp-thread", "call-history"]) $(testid).replaceChildren();
      for (const button of $("keypad").querySelectorAll("button")) button.dataset.busyKey = `call:${number}`;
      $("ring-out").dataset.busyKey = `call:${number}`;
      $("missed-call").dataset.busyKey = `missed:${number}`;
      $("reply-send").dataset.busyKey = `reply:${number}`;
      $("reply-error-text").textContent = "";
      showError("phone-error", "");
    }
    renderCall(phone, fresh);
    renderThread("sms", threads.sms || [], number, fresh);
    renderThread("whatsapp", threads.whatsapp || [], number, fresh);
    renderConsent(phone);
    setOff($("missed-call"), !number);
    setOff($("reply-send"), !number);
    renderLink();
  }

  function renderCall(phone, fresh) {
    const ringing = phone.ringing || null;
    if (changed("call", { number: phone.number, ringing }) || fresh) {
      const panel = $("call-panel");
      panel.dataset.ringing = ringing ? "true" : "false";
      panel.dataset.callId = ringing ? String(ringing.call_id) : "";
      const since = ringing ? formatClock(ringing.since) : "";
      const caller = ringing && ringing.from ? ` from ${ringing.from}` : "";
      const through = ringing && ringing.provider ? ` through ${providerName(ringing.provider)}` : "";
      setText(
        "call-status",
        ringing
          ? `Incoming call${caller}${through}…${since ? ` (since ${since} UTC)` : ""}`
          : "No incoming call",
      );
      for (const button of $("keypad").querySelectorAll("button")) setOff(button, !ringing);
      setOff($("ring-out"), !ringing);
    }
    const calls = [...(phone.calls || [])].reverse();
    if (changed("calls", { number: phone.number, calls }) || fresh) {
      syncList(
        $("call-history"),
        calls,
        (c) => c.call_id,
        (c) =>
          h(
            "li",
            {
              testid: "call-item",
              "data-call-id": c.call_id,
              "data-status": c.status || "",
              "data-provider": c.provider || "",
            },
            timeElement(c.at, formatClock(c.at)),
            ` Call ${humanize(c.status)}`,
            c.provider ? ` · ${providerName(c.provider)}` : "",
            c.from ? ` from ${c.from}` : "",
            transcript(c.transcript || []),
          ),
      );
    }
  }

  // What our IVR said on the call and what the customer pressed (Twilio calls: an Exotel call
  // plays the merchant's own flow, which the sandbox does not hear).
  function transcript(lines) {
    if (!lines.length) return null;
    return h(
      "ol",
      { class: "transcript", testid: "call-transcript", "aria-label": "What was said on the call" },
      lines.map((line) =>
        h(
          "li",
          { class: `said said-${line.speaker}`, testid: "call-said", "data-speaker": line.speaker },
          line.speaker === "ivr" ? `IVR: “${line.text}”` : `You: ${line.text}`,
        ),
      ),
    );
  }

  function safeLink(link) {
    let url;
    try {
      url = new URL(link, window.location.href);
    } catch (_) {
      return null;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    // The customer's page is ours: open it on this origin, whatever public URL the SMS names,
    // so that it loads (and its forms post) inside the phone's frame.
    if (url.pathname.startsWith("/v/")) return `${url.pathname}${url.search}${url.hash}`;
    return url.href;
  }

  // Directions are the shop's: "out" reached this phone, "in" is what the customer sent.
  function buildBubble(channel, message, index, number) {
    const direction = message.direction === "in" ? "in" : "out";
    const children = [
      h("span", { class: "visually-hidden" }, direction === "out" ? "Received: " : "Sent: "),
      h("p", { class: "body", testid: `${channel}-body` }, message.body || ""),
    ];
    const link = message.link ? safeLink(message.link) : null;
    if (link) {
      children.push(
        actionButton("Open link", {
          testid: "sms-open-link",
          act: "open-link",
          focusKey: `open-link:${number}:${index}`,
          data: { url: link },
          label: "Open link in the phone's browser",
        }),
      );
    }
    const buttons = message.buttons || [];
    if (buttons.length) {
      children.push(
        h(
          "div",
          { class: "wa-buttons", role: "group", "aria-label": "Reply buttons" },
          buttons.map((b, i) =>
            actionButton(b.title, {
              testid: "whatsapp-button",
              act: "wa-button",
              busyKey: `wa:${number}`,
              focusKey: `wa-button:${number}:${index}:${i}`,
              data: { title: b.title },
            }),
          ),
        ),
      );
    }
    const links = (message.links || []).map((l) => ({ title: l.title, url: safeLink(l.url) })).filter((l) => l.url);
    if (links.length) {
      children.push(
        h(
          "div",
          { class: "wa-buttons", role: "group", "aria-label": "Link buttons" },
          links.map((l) =>
            h("a", { class: "wa-link", testid: "whatsapp-link", href: l.url, target: "_blank", rel: "noopener" }, l.title),
          ),
        ),
      );
    }
    const other = message.number ? `${direction === "out" ? "from" : "to"} ${message.number} · ` : "";
    children.push(
      h("span", { class: "meta" }, other, timeElement(message.at, formatClock(message.at))),
    );
    return h(
      "li",
      {
        class: `bubble ${direction === "out" ? "received" : "sent"}`,
        testid: `${channel}-bubble`,
        "data-direction": direction,
      },
      children,
    );
  }

  // Our app's consent for the phone, and the messages its send gate kept from it.
  function renderConsent(phone) {
    const consent = phone.consent || {};
    const suppressed = phone.suppressed || [];
    if (!changed("phone-consent", { number: phone.number, consent, suppressed })) return;
    const names = (wanted) =>
      Object.keys(consent)
        .filter((channel) => consent[channel] === wanted)
        .sort()
        .map((c) => (c === "sms" ? "SMS" : "WhatsApp"))
        .join(" and ");
    const opted = [
      names("opted_in") && `Opted in to ${names("opted_in")}`,
      names("opted_out") && `Opted out of ${names("opted_out")}`,
    ].filter(Boolean);
    setText("phone-consent", opted.join(" · "));
    $("phone-consent").dataset.optedOut = names("opted_out") ? "true" : "false";
    $("suppressed-panel").hidden = suppressed.length === 0;
    $("suppressed-list").replaceChildren(
      ...suppressed.map((message) =>
        h(
          "li",
          { class: "bubble suppressed", testid: "suppressed-bubble", "data-channel": message.channel },
          h("p", { class: "body" }, message.body || ""),
          h(
            "span",
            { class: "meta" },
            `${message.channel === "sms" ? "SMS" : "WhatsApp"} not sent: ${message.reason || "suppressed"} · `,
            timeElement(message.at, formatClock(message.at)),
          ),
        ),
      ),
    );
  }

  function renderThread(channel, messages, number, fresh) {
    if (!changed(`thread-${channel}`, { number, messages }) && !fresh) return;
    const list = $(`${channel}-thread`);
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    const indexed = messages.map((message, index) => ({ index, message }));
    syncList(
      list,
      indexed,
      (item) => item.index,
      (item) => buildBubble(channel, item.message, item.index, number),
    );
    showEmpty(`${channel}-empty`, messages.length === 0);
    if (atBottom || fresh) list.scrollTop = list.scrollHeight;
  }

  function openLinkInFrame(url) {
    openLink = { number: pickedPhone, url };
    const frame = $("link-frame");
    frame.dataset.url = url;
    setText("link-blocked", "");
    frame.src = url;
    renderLink();
    $("link-panel").scrollIntoView({ block: "nearest" });
  }

  function closeLink() {
    openLink = null;
    const frame = $("link-frame");
    if (frame.dataset.url) {
      frame.dataset.url = "";
      frame.src = "about:blank";
    }
    renderLink();
  }

  function renderLink() {
    const show = Boolean(openLink && openLink.number === pickedPhone);
    const panel = $("link-panel");
    if (panel.hidden === show) panel.hidden = !show;
    const tab = $("link-new-tab");
    const href = show ? openLink.url : "about:blank";
    if (tab.getAttribute("href") !== href) tab.setAttribute("href", href);
  }

  function frameLoaded() {
    const frame = $("link-frame");
    if (!frame.dataset.url) return;
    // The page failed to load in the frame when its document is not readable (a browser error
    // page, or a page that forbids framing).
    let readable = false;
    try {
      readable = Boolean(frame.contentDocument && frame.contentDocument.body);
    } catch (_) {
      readable = false;
    }
    setText(
      "link-blocked",
      readable ? "" : "The page did not open inside the phone: open it in a new tab instead.",
    );
  }

  function answer(button) {
    const number = pickedPhone;
    run(`call:${number}`, "phone-error", () =>
      post(phoneUrl(number, "answer"), { digits: button.dataset.digit }),
    );
  }

  function phoneAction(prefix, action) {
    const number = pickedPhone;
    if (number) run(`${prefix}:${number}`, "phone-error", () => post(phoneUrl(number, action)));
  }

  function pressWhatsAppButton(button) {
    const number = pickedPhone;
    run(`wa:${number}`, "phone-error", () =>
      post(phoneUrl(number, "button"), { title: button.dataset.title }),
    );
  }

  async function sendReply(event) {
    event.preventDefault();
    const number = pickedPhone;
    if (!number) return;
    const form = $("reply-form");
    const input = $("reply-text");
    const text = input.value;
    clearFieldErrors(form);
    const result = await run(`reply:${number}`, "phone-error", () =>
      post(phoneUrl(number, "reply"), { channel: $("reply-channel").value, text }),
    );
    if (!result) return;
    if (result.ok) {
      if (input.value === text) input.value = "";
      return;
    }
    const { message, fields } = problemOf(result);
    const homeless = showFieldErrors(form, "reply", fields);
    showError("phone-error", [message, ...homeless].join(" "));
  }

  // ---------------------------------------------------------------- requests log

  function renderRequests() {
    const items = (state.requests || []).map((r, index) => ({ ...r, index }));
    // Newest first; requests at the same moment keep the log's order, later ones first.
    items.sort((a, b) => {
      const ta = parseTime(a.at);
      const tb = parseTime(b.at);
      const diff = (tb ? tb.getTime() : 0) - (ta ? ta.getTime() : 0);
      return diff || b.index - a.index;
    });
    if (!changed("requests", items)) return;
    showEmpty("request-log-empty", items.length === 0);
    $("request-log")
      .querySelector("tbody")
      .replaceChildren(
        ...items.map((r) =>
          h(
            "tr",
            { testid: "request-row", "data-party": r.party || "" },
            h("td", { testid: "request-at" }, timeElement(r.at)),
            h("td", { testid: "request-party" }, h("span", { class: `party party-${r.party}` }, r.party || "")),
            h("td", { testid: "request-method" }, r.method || ""),
            h("td", { testid: "request-path", class: "path" }, r.path || ""),
            h("td", { testid: "request-summary" }, r.summary || ""),
          ),
        ),
      );
  }

  // ---------------------------------------------------------------- setup

  let setupRun = null;
  let setupQueued = null;
  let setupRead = 0;
  // What the panel's controls showed after the last read: a control still showing it is
  // untouched (a read may update it); one the merchant changed keeps the change until saved.
  let setupShown = {};

  function admin(method, path, body) {
    const key = state && state.shop ? state.shop.api_key : "";
    return request(method, `${ADMIN_URL}/${path}`, body, { Authorization: `Bearer ${key}` });
  }

  function setupFollowState() {
    const key = (state.shop || {}).api_key || "";
    if (changed("setup-source", key) || Date.now() - setupRead > MERCHANT_REFRESH_MS) {
      refreshSetup();
    }
  }

  function refreshSetup() {
    if (setupRun) {
      if (!setupQueued) {
        setupQueued = setupRun.then(() => {
          setupQueued = null;
          return refreshSetup();
        });
      }
      return setupQueued;
    }
    setupRun = loadSetup().finally(() => {
      setupRun = null;
    });
    return setupRun;
  }

  async function loadSetup() {
    if (!(state && state.shop && state.shop.api_key)) return;
    setupRead = Date.now();
    try {
      const [settings, accounts, setup] = await Promise.all([
        admin("GET", "shop/settings"),
        admin("GET", "shop/accounts"),
        admin("GET", "shop/setup"),
      ]);
      const failed = [settings, accounts, setup].find((r) => !r.ok);
      if (failed) {
        showError("setup-error", `The setup was not read: ${problemOf(failed).message}`);
        return;
      }
      renderSetupForm(settings.data || {}, accounts.data || {});
      renderSetupList(setup.data || {});
    } catch (err) {
      showError("setup-error", `The admin API did not answer (${err.message}).`);
    }
  }

  function presetChanges(option) {
    try {
      return option && option.dataset.changes ? JSON.parse(option.dataset.changes) : null;
    } catch (_) {
      return null;
    }
  }

  // Whether the settings document already has every field a preset sets.
  function hasChanges(document, changes) {
    return Object.entries(changes).every(([section, fields]) =>
      Object.entries(fields).every(
        ([name, value]) => JSON.stringify((document[section] || {})[name]) === JSON.stringify(value),
      ),
    );
  }

  function withChanges(document, changes) {
    const next = { ...document };
    for (const [section, fields] of Object.entries(changes)) {
      next[section] = { ...(document[section] || {}), ...fields };
    }
    return next;
  }

  function accountLabel(account) {
    const numbers = ((account.details || {}).numbers || []).map((n) => n.number).filter(Boolean);
    const owner = account.owner === "platform" ? "the platform's" : "the shop's own";
    const rejected = account.status === "rejected" ? ", refused by the provider" : "";
    return `Simulated ${providerName(account.provider)}${numbers.length ? ` (${numbers.join(", ")})` : ""} — ${owner}${rejected}`;
  }

  function showSelect(select, key, options, value) {
    const untouched = !(key in setupShown) || select.value === setupShown[key];
    if (changed(`setup-options-${key}`, options)) {
      const current = select.value;
      select.replaceChildren(...options.map((o) => h("option", { value: o.value }, o.label)));
      select.value = untouched ? value : current;
    } else if (untouched && select.value !== value) {
      select.value = value;
    }
    setupShown[key] = value;
  }

  function renderSetupForm(document, listing) {
    const method = $("setup-method");
    const preset = [...method.options].find((o) => {
      const changes = presetChanges(o);
      return changes && hasChanges(document, changes);
    });
    const custom = $("setup-method-custom");
    custom.hidden = Boolean(preset);
    const methodValue = preset ? preset.value : custom.value;
    if (!("method" in setupShown) || method.value === setupShown.method) method.value = methodValue;
    setupShown.method = methodValue;

    const accounts = listing.accounts || [];
    const channels = listing.channels || {};
    for (const channel of SETUP_CHANNELS) {
      const offering = accounts.filter((a) => (a.channels || []).includes(channel));
      const options = offering.length
        ? offering.map((a) => ({ value: String(a.id), label: accountLabel(a) }))
        : [{ value: "", label: "No account offers this: connect one" }];
      const route = channels[channel];
      showSelect($(`setup-${channel}`), channel, options, route ? String(route.account_id) : "");
    }
  }

  function routeText(route) {
    if (!route) return "no account";
    const owner = route.owner === "platform" ? "the platform's" : "the shop's own";
    return `${providerName(route.provider)} (${owner}, account ${route.account_id})`;
  }

  function renderSetupList(setup) {
    if (!changed("setup-list", setup)) return;
    const status = setup.status || "";
    const badge = $("setup-status");
    badge.dataset.status = status;
    setText("setup-status", humanize(status) || "—");
    for (const channel of ["voice", "sms", "whatsapp"]) {
      setText(`setup-channel-${channel}`, routeText((setup.channels || {})[channel]));
    }
    const missing = setup.missing || [];
    showEmpty("setup-missing-empty", missing.length === 0);
    $("setup-missing").replaceChildren(
      ...missing.map((m) =>
        h(
          "li",
          { testid: "setup-missing-item", "data-field": m.field },
          h("code", {}, m.field),
          `: ${m.message}`,
        ),
      ),
    );
    $("setup-paste").replaceChildren(
      ...(setup.accounts || []).map((account) =>
        h(
          "li",
          { testid: "setup-account", "data-provider": account.provider, "data-account-id": account.id },
          h("strong", {}, accountLabel(account)),
          (account.paste || []).length
            ? h(
                "ul",
                {},
                account.paste.map((item) =>
                  h(
                    "li",
                    { testid: "setup-paste-item" },
                    `${item.where}: `,
                    item.value ? h("code", { class: "paste-value" }, item.value) : "nothing",
                  ),
                ),
              )
            : h("p", { class: "hint" }, "Nothing to paste: its callbacks are the platform's."),
        ),
      ),
    );
  }

  async function saveSetup(event) {
    event.preventDefault();
    const form = $("setup-form");
    clearFieldErrors(form);
    setText("setup-status-message", "");
    const result = await run("setup", "setup-error", async () => {
      const saved = [];
      const method = $("setup-method");
      const changes = presetChanges(method.selectedOptions[0]);
      if (changes && method.value !== setupShown.method) {
        // The whole document goes back, as PUT /shop/settings asks; only the method changes.
        const read = await admin("GET", "shop/settings");
        if (!read.ok) return read;
        const put = await admin("PUT", "shop/settings", withChanges(read.data || {}, changes));
        if (!put.ok) return put;
        saved.push("the verification method");
      }
      const choices = {};
      for (const channel of SETUP_CHANNELS) {
        const value = $(`setup-${channel}`).value;
        if (value && value !== setupShown[channel]) choices[channel] = Number(value);
      }
      if (Object.keys(choices).length) {
        const put = await admin("PUT", "shop/channels", choices);
        if (!put.ok) return put;
        saved.push(Object.keys(choices).length > 1 ? "the accounts" : "the account");
      }
      return { ok: true, saved };
    });
    await refreshSetup();
    if (!result) return;
    if (result.ok) {
      const saved = result.saved || [];
      setText("setup-status-message", saved.length ? `Saved ${saved.join(" and ")}.` : "Nothing to save.");
      return;
    }
    const { message, fields } = problemOf(result);
    const homeless = showFieldErrors(form, "setup", fields);
    const summary = fields.length ? "Not saved: the admin API refused it." : message;
    showError("setup-error", [summary, ...homeless].join(" "));
  }

  // ---------------------------------------------------------------- merchant's view

  let filters = {};
  let merchantRun = null;
  let merchantQueued = null;
  let merchantRead = 0;

  function readFilters() {
    const values = {};
    for (const name of ["customer", "order", "status", "from", "to"]) {
      const value = $(`filter-${name}`).value.trim();
      if (value) values[name] = value;
    }
    return values;
  }

  function query(names, extra) {
    const params = new URLSearchParams();
    for (const name of names) if (filters[name]) params.set(name, filters[name]);
    for (const [name, value] of Object.entries(extra || {})) params.set(name, value);
    return params.toString();
  }

  function merchantFollowState() {
    const fingerprint = {
      key: (state.shop || {}).api_key || "",
      orders: state.orders,
      phones: state.phones,
      offset: state.offset_minutes,
    };
    if (changed("merchant-source", fingerprint) || Date.now() - merchantRead > MERCHANT_REFRESH_MS) {
      refreshMerchant();
    }
  }

  // One read at a time; a read asked for meanwhile runs once after it (and can be awaited).
  function refreshMerchant() {
    if (merchantRun) {
      if (!merchantQueued) {
        merchantQueued = merchantRun.then(() => {
          merchantQueued = null;
          return refreshMerchant();
        });
      }
      return merchantQueued;
    }
    merchantRun = loadMerchant().finally(() => {
      merchantRun = null;
    });
    return merchantRun;
  }

  async function loadMerchant() {
    const key = state && state.shop ? state.shop.api_key : "";
    if (!key) return false;
    merchantRead = Date.now();
    const headers = { Authorization: `Bearer ${key}` };
    const get = (path, names, extra) =>
      request("GET", `${ADMIN_URL}/${path}?${query(names, extra)}`, undefined, headers);
    const logFilters = ["customer", "order", "from", "to"];
    const limit = { limit: String(MERCHANT_LIMIT) };
    let ok = false;
    try {
      const [orders, calls, messages, missed] = await Promise.all([
        get("orders", ["customer", "order", "status", "from", "to"], limit),
        get("calls", logFilters, limit),
        get("messages", logFilters, limit),
        get("missed-calls", logFilters, limit),
      ]);
      const form = $("merchant-filters");
      clearFieldErrors(form);
      const failed = [orders, calls, messages, missed].find((r) => !r.ok);
      if (failed) {
        const { message, fields } = problemOf(failed);
        const homeless = showFieldErrors(form, "filter", fields);
        let summary = fields.length ? "The records were not read: see the filters marked." : message;
        if (failed.status === 401) summary += " (the demo shop's API key was refused)";
        showError("merchant-error", [summary, ...homeless].join(" "));
      } else {
        showError("merchant-error", "");
        ok = true;
      }
      if (orders.ok) renderMerchantOrders(orders.data || {});
      if (calls.ok) renderCallLog(calls.data || {});
      if (messages.ok) renderMessageLog(messages.data || {});
      if (missed.ok) renderMissedLog(missed.data || {});
    } catch (err) {
      showError("merchant-error", `The admin API did not answer (${err.message}).`);
    }
    return ok;
  }

  function fillTable(testid, rows, build, nextCursor) {
    if (!changed(`table-${testid}`, { rows, nextCursor })) return;
    $(testid).querySelector("tbody").replaceChildren(...rows.map(build));
    showEmpty(`${testid}-empty`, rows.length === 0);
    setText(
      `${testid}-more`,
      nextCursor ? `Showing the newest ${rows.length}; narrow the filters to see older ones.` : "",
    );
  }

  function orderRef(ref) {
    return ref && ref.name ? ref.name : "—";
  }

  function renderMerchantOrders(data) {
    const totals = data.totals || {};
    for (const key of ["total", "confirmed", "cancelled", "callback_requested", "pending"]) {
      setText(`totals-${key}`, key in totals ? String(totals[key]) : "—");
    }
    fillTable(
      "merchant-orders",
      data.orders || [],
      (o) =>
        h(
          "tr",
          { testid: "merchant-order-row", "data-order-name": o.name || "", "data-status": o.verification_status || "" },
          h("th", { scope: "row" }, o.name || ""),
          h("td", {}, timeElement(o.placed_at)),
          h("td", {}, o.phone || "—"),
          h("td", { class: "num" }, `${o.total_amount ?? ""} ${o.currency || ""}`.trim()),
          h("td", {}, o.payment_method === "cod" ? "COD" : humanize(o.payment_method) || "—"),
          h("td", {}, statusBadge(o.verification_status, "merchant-order-status")),
          h("td", {}, (o.tags || []).join(", ") || "—"),
        ),
      data.next_cursor,
    );
  }

  function renderCallLog(data) {
    fillTable(
      "merchant-calls",
      data.calls || [],
      (c) =>
        h(
          "tr",
          { testid: "call-log-row", "data-status": c.status || "" },
          h("td", {}, timeElement(c.created_at)),
          h("td", {}, orderRef(c.order)),
          h("td", {}, c.to_phone || "—"),
          h("td", { class: "num" }, c.attempt ?? "—"),
          h("td", {}, humanize(c.status) || "—"),
          h("td", {}, c.input_digits || "—"),
          h("td", { class: "num" }, c.duration_seconds == null ? "—" : `${c.duration_seconds} s`),
          h("td", {}, c.provider || "—"),
        ),
      data.next_cursor,
    );
  }

  function renderMessageLog(data) {
    fillTable(
      "merchant-messages",
      data.messages || [],
      (m) =>
        h(
          "tr",
          { testid: "message-log-row", "data-channel": m.channel || "", "data-status": m.status || "" },
          h("td", {}, timeElement(m.created_at)),
          h("td", {}, m.channel === "sms" ? "SMS" : m.channel === "whatsapp" ? "WhatsApp" : m.channel || ""),
          h("td", {}, humanize(m.direction)),
          h("td", {}, orderRef(m.order)),
          h("td", {}, (m.direction === "inbound" ? m.from_phone : m.to_phone) || "—"),
          h("td", { class: "text" }, m.body || ""),
          h(
            "td",
            {},
            humanize(m.status) || "—",
            m.error_code ? h("span", { class: "meta" }, ` (${m.error_code})`) : null,
          ),
        ),
      data.next_cursor,
    );
  }

  function renderMissedLog(data) {
    fillTable(
      "merchant-missed",
      data.missed_calls || [],
      (m) =>
        h(
          "tr",
          { testid: "missed-log-row" },
          h("td", {}, timeElement(m.received_at)),
          h("td", {}, m.from_phone || "—"),
          h("td", {}, m.to_phone || "—"),
          h("td", {}, (m.orders || []).map(orderRef).join(", ") || "—"),
        ),
      data.next_cursor,
    );
  }

  function applyFilters(event) {
    if (event) event.preventDefault();
    filters = readFilters();
    run("merchant-apply", null, async () => {
      await refreshMerchant();
      return { ok: true };
    });
  }

  function clearFilters() {
    $("merchant-filters").reset();
    applyFilters();
  }

  function selectTab(tab, focus) {
    for (const other of $("merchant-tabs").querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", selected ? "true" : "false");
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
  }

  function tabKeys(event) {
    const tabs = [...$("merchant-tabs").querySelectorAll('[role="tab"]')];
    const index = tabs.indexOf(event.target);
    if (index < 0) return;
    const moves = {
      ArrowRight: index + 1,
      ArrowLeft: index - 1,
      Home: 0,
      End: tabs.length - 1,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    selectTab(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
  }

  // ---------------------------------------------------------------- merchant's threads

  // What the merchant typed and the refusals, per thread: a thread's card is built again
  // whenever its messages change, and keeps both.
  const drafts = new Map();
  const threadErrors = new Map();

  function channelName(channel) {
    return { sms: "SMS", whatsapp: "WhatsApp" }[channel] || channel || "";
  }

  function renderThreads() {
    const threads = state.threads || [];
    showEmpty("threads-empty", threads.length === 0);
    syncList($("thread-list"), threads, (t) => t.id, buildThread);
  }

  function buildThreadMessage(message) {
    const inbound = message.direction === "in";
    let status = inbound ? "" : ` · ${humanize(message.status)}`;
    if (!inbound && message.error) status += `: ${message.error}`;
    return h(
      "li",
      {
        class: `bubble ${inbound ? "received" : "sent"}`,
        testid: "thread-message",
        "data-direction": message.direction,
        "data-status": message.status,
      },
      h("p", { class: "body" }, message.body),
      h("span", { class: "meta" }, inbound ? "Customer · " : "You · ", timeElement(message.at, formatClock(message.at)), status),
    );
  }

  function buildThread(thread) {
    const id = String(thread.id);
    const channel = channelName(thread.channel);
    const inputId = `thread-text-${id}`;
    const errorId = `thread-error-${id}`;
    const input = h("input", {
      id: inputId,
      name: "text",
      type: "text",
      autocomplete: "off",
      testid: "thread-reply-text",
      "data-focus-key": `thread-text:${id}`,
      "aria-describedby": errorId,
      "aria-invalid": threadErrors.get(id) ? "true" : null,
    });
    input.value = drafts.get(id) || "";
    return h(
      "li",
      {
        class: `merchant-thread is-${thread.status}`,
        testid: "thread-item",
        "data-thread-id": id,
        "data-phone": thread.phone,
        "data-channel": thread.channel,
        "data-status": thread.status,
      },
      h(
        "p",
        { class: "thread-head" },
        h("strong", { testid: "thread-phone" }, thread.phone),
        ` · ${channel} `,
        h(
          "span",
          { class: `badge thread-${thread.status}`, testid: "thread-status" },
          thread.status === "unanswered" ? "Unanswered" : "Answered",
        ),
      ),
      thread.handed_over
        ? h("p", { class: "hint", testid: "thread-handed-over" }, `Handed over by a flow: ${humanize(thread.handed_over)}`)
        : null,
      h(
        "ol",
        { class: "thread", testid: "thread-messages", "aria-label": `Messages with ${thread.phone} by ${channel}` },
        (thread.messages || []).map(buildThreadMessage),
      ),
      h(
        "form",
        { class: "thread-reply", testid: "thread-reply-form", "data-thread-id": id, novalidate: true },
        h("label", { for: inputId }, `Answer by ${channel}`),
        h(
          "div",
          { class: "thread-reply-row" },
          input,
          h(
            "button",
            {
              type: "submit",
              class: "primary",
              testid: "thread-reply-send",
              "data-busy-key": `thread:${id}`,
              "data-focus-key": `thread-send:${id}`,
            },
            "Send",
          ),
        ),
        h("p", { class: "field-error", id: errorId, testid: "thread-reply-error" }, threadErrors.get(id) || ""),
      ),
    );
  }

  function showThreadError(form, text) {
    const id = form.dataset.threadId;
    if (text) threadErrors.set(id, text);
    else threadErrors.delete(id);
    // The card on the page now, which may have been built again meanwhile.
    const card = $("thread-list").querySelector(`form[data-thread-id="${CSS.escape(id)}"]`);
    if (!card) return;
    card.querySelector(".field-error").textContent = text;
    const input = card.querySelector('[name="text"]');
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  async function answerThread(event) {
    const form = event.target.closest("form[data-thread-id]");
    if (!form) return;
    event.preventDefault();
    const id = form.dataset.threadId;
    const text = drafts.get(id) || "";
    showThreadError(form, "");
    const result = await run(`thread:${id}`, "threads-error", () =>
      post(`/sandbox/api/threads/${encodeURIComponent(id)}/reply`, { text }),
    );
    if (!result) return;
    if (result.ok) {
      if (drafts.get(id) === text) {
        drafts.delete(id);
        const input = $("thread-list").querySelector(`#thread-text-${CSS.escape(id)}`);
        if (input) input.value = "";
      }
      return;
    }
    const { message, fields } = problemOf(result);
    const own = fields.filter((f) => f.field === "text").map((f) => f.message);
    showThreadError(form, own.join(" "));
    const others = fields.filter((f) => f.field !== "text").map((f) => `${f.field}: ${f.message}`);
    showError("threads-error", own.length && !others.length ? "" : [message, ...others].join(" "));
  }

  // ---------------------------------------------------------------- order journey and notifications

  // The markings the shop offers: the action posted, its label, and whether the order must be
  // shipped first (Shopify updates the fulfillment; a carrier fails only what it carries).
  const MARKINGS = [
    { action: "pack", status: "packed", label: "Packed", shipped: false },
    { action: "fulfil", status: "shipped", label: "Shipped", shipped: false },
    { action: "out-for-delivery", status: "out_for_delivery", label: "Out for delivery", shipped: true },
    { action: "deliver", status: "delivered", label: "Delivered", shipped: true },
    { action: "fail", status: "failed_delivery", label: "Failed delivery", shipped: true },
  ];
  const REPORTERS = { shopify: "Shopify's webhook", carrier: "the carrier's shipment webhook" };
  const CHANNEL_NAMES = { sms: "SMS", whatsapp: "WhatsApp" };
  // What the merchant typed in an order's shipment and failure fields, kept across rebuilds.
  const journeyDrafts = new Map();

  function eventLabel(event) {
    const text = humanize(event);
    return text ? text.replace(/^./, (c) => c.toUpperCase()) : "";
  }

  function draftInput(order, name, label, fallback) {
    const id = orderKey(order);
    const key = `${id}:${name}`;
    const input = h("input", {
      id: `journey-${name}-${id}`,
      name,
      type: "text",
      autocomplete: "off",
      testid: `order-row-${name.replace(/_/g, "-")}`,
      "data-draft-key": key,
      "data-focus-key": `journey-${name}:${id}`,
    });
    input.value = journeyDrafts.has(key) ? journeyDrafts.get(key) : fallback;
    return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  }

  function journeyControls(order) {
    const id = orderKey(order);
    const name = order.name || `Order ${id}`;
    const journey = order.journey || [];
    const last = journey.length ? journey[journey.length - 1].status : "";
    const shipped = Boolean(order.fulfillment_status);
    const sample = order.shipment_sample || {};
    const button = (m) =>
      actionButton(m.label, {
        testid: `order-row-${m.action}`,
        act: "order-mark",
        busyKey: `order:${id}`,
        focusKey: `order-${m.action}:${id}`,
        off: order.cancelled || last === m.status || (m.shipped && !shipped) || (m.action === "fulfil" && shipped),
        data: { "order-id": id, action: m.action },
        label: `${m.label}: ${name}`,
      });
    return h(
      "div",
      { class: "journey-controls", testid: "order-row-journey-controls" },
      h("div", { class: "actions" }, MARKINGS.map(button)),
      h(
        "details",
        { class: "journey-details" },
        h("summary", {}, "Shipment and failure details"),
        draftInput(order, "carrier", "Carrier", sample.carrier || ""),
        draftInput(order, "tracking_number", "Tracking number (AWB)", sample.tracking_number || ""),
        draftInput(order, "tracking_url", "Tracking URL", sample.tracking_url || ""),
        draftInput(order, "reason", "Failed delivery reason (empty: Shopify reports it)", "Customer not available"),
      ),
    );
  }

  function notificationText(line) {
    const channel = CHANNEL_NAMES[line.channel] || line.channel;
    if (line.kind === "message") {
      const why = line.reason ? `: ${line.reason}` : "";
      return `${channel} ${humanize(line.status)}${why}`;
    }
    if (line.kind === "skipped") return `${channel} not sent: ${line.reason}`;
    if (line.kind === "stale") return "nothing sent: the order is further along its journey";
    if (line.kind === "fallback") return `WhatsApp template not usable (${line.reason})`;
    if (line.kind === "waiting") return `waiting until ${formatTime(line.at)}: ${line.reason}`;
    return "";
  }

  function journeyLines(order) {
    const journey = order.journey || [];
    const lines = (order.notifications || []).filter((line) => line.kind !== "event");
    return h(
      "div",
      { class: "journey" },
      journey.length
        ? h(
            "ol",
            { class: "journey-markings", testid: "order-row-journey", "aria-label": "Marked in the shop" },
            journey.map((m) =>
              h(
                "li",
                { testid: "order-row-marking", "data-status": m.status, "data-reported-by": m.reported_by },
                `${eventLabel(m.status)} · reported by ${REPORTERS[m.reported_by] || m.reported_by} · `,
                timeElement(m.at, formatClock(m.at)),
              ),
            ),
          )
        : null,
      h(
        "ul",
        { class: "journey-notifications", testid: "order-row-notifications", "aria-label": "Notifications" },
        lines.length
          ? lines.map((line) =>
              h(
                "li",
                {
                  testid: "order-row-notification",
                  "data-kind": line.kind,
                  "data-event": line.event,
                  "data-channel": line.channel || "",
                },
                h("strong", {}, `${eventLabel(line.event)}: `),
                notificationText(line),
              ),
            )
          : h("li", { class: "hint" }, "No notification recorded for this order."),
      ),
    );
  }

  function keepJourneyDraft(event) {
    const key = event.target.dataset.draftKey;
    if (key) journeyDrafts.set(key, event.target.value);
  }

  function journeyValue(id, name) {
    const input = $("order-list").querySelector(`[data-draft-key="${CSS.escape(`${id}:${name}`)}"]`);
    return input ? input.value.trim() : "";
  }

  function markOrder(button) {
    const id = button.dataset.orderId;
    const action = button.dataset.action;
    let body;
    if (action === "fulfil") {
      body = {
        carrier: journeyValue(id, "carrier"),
        tracking_number: journeyValue(id, "tracking_number"),
        tracking_url: journeyValue(id, "tracking_url"),
      };
    } else if (action === "fail") {
      body = { reason: journeyValue(id, "reason") };
    }
    run(`order:${id}`, "shop-error", async () => {
      const result = await post(`/sandbox/api/orders/${encodeURIComponent(id)}/${action}`, body);
      if (!result.ok) {
        const { message, fields } = problemOf(result);
        const named = fields.map((f) => `${f.field}: ${f.message}`);
        return { ...result, data: { error: { message: [message, ...named].join(" ") } } };
      }
      return result;
    });
  }

  function phoneConsent(number) {
    const phone = (state.phones || []).find((p) => p.number === number);
    return (phone && phone.consent) || {};
  }

  function withWhatsAppConsent(customer) {
    return { ...customer, whatsapp_consent: phoneConsent(customer.phone).whatsapp || "unknown" };
  }

  function whatsappConsentButton(customer, who) {
    const opted = customer.whatsapp_consent === "opted_in";
    return actionButton(opted ? "Opt out of WhatsApp" : "WhatsApp opt-in at checkout", {
      testid: "customer-whatsapp-consent-toggle",
      act: "whatsapp-consent",
      busyKey: `wa-consent:${customer.phone}`,
      focusKey: `wa-consent:${customer.phone}`,
      data: { number: customer.phone, state: opted ? "opted_out" : "opted_in" },
      label: `${opted ? "Opt" : "Record"} ${who} ${opted ? "out of" : "opting in to"} WhatsApp updates`,
    });
  }

  // As a checkout extension or the merchant records it: PUT /customers/{phone}/consent.
  function setWhatsAppConsent(button) {
    const number = button.dataset.number;
    const opting = button.dataset.state === "opted_in";
    run(`wa-consent:${number}`, "shop-error", () =>
      admin("PUT", `customers/${encodeURIComponent(number)}/consent`, {
        channel: "whatsapp",
        state: button.dataset.state,
        source: opting ? "checkout" : "merchant",
      }),
    );
  }

  let notifyRead = 0;
  let notifySaving = false;
  // Bumped by every read and every save: a read that comes back after a later read or a
  // click is stale and must not undo the box the merchant just ticked.
  let notifyTurn = 0;

  function notifyFollowState() {
    const key = (state.shop || {}).api_key || "";
    if (changed("notify-source", key) || Date.now() - notifyRead > MERCHANT_REFRESH_MS) loadNotify();
  }

  function whatsappEvents(document) {
    const events = ((document.notifications || {}).events) || {};
    return (state.notification_templates || []).map((t) => ({ template: t, notice: (events[t.event] || {}).whatsapp || {} }));
  }

  async function loadNotify() {
    if (!(state && state.shop && state.shop.api_key) || notifySaving) return;
    notifyRead = Date.now();
    const turn = ++notifyTurn;
    const read = await admin("GET", "shop/settings");
    if (turn !== notifyTurn) return;
    if (!read.ok) {
      showError("notify-error", `The notification settings were not read: ${problemOf(read).message}`);
      return;
    }
    showNotify(read.data || {});
  }

  function showNotify(document) {
    const notifications = document.notifications || {};
    const whatsapp = whatsappEvents(document).filter((e) => e.notice.active);
    $("notify-sms").checked = Boolean(notifications.sms_active);
    $("notify-whatsapp").checked = whatsapp.length > 0;
    const sms = notifications.sms_active ? "SMS active" : "SMS off";
    const wa = whatsapp.length ? `WhatsApp on for ${whatsapp.map((e) => humanize(e.template.event)).join(", ")}` : "WhatsApp off";
    setText("notify-summary", `${sms} · ${wa}.`);
    $("notify-form").dataset.sms = notifications.sms_active ? "on" : "off";
    $("notify-form").dataset.whatsapp = whatsapp.length ? "on" : "off";
  }

  async function saveNotify(event) {
    const input = event.target;
    if (notifySaving) return;
    notifySaving = true;
    notifyTurn += 1;
    showError("notify-error", "");
    const wanted = input.checked;
    for (const box of [$("notify-sms"), $("notify-whatsapp")]) box.disabled = true;
    try {
      let result;
      if (input.name === "sms_active") {
        // The whole document goes back, as PUT /shop/settings asks; only the switch changes.
        const read = await admin("GET", "shop/settings");
        result = read;
        if (read.ok) {
          const document = read.data || {};
          document.notifications = { ...(document.notifications || {}), sms_active: wanted };
          result = await admin("PUT", "shop/settings", document);
        }
      } else {
        for (const { event: name, template_id: id, params } of state.notification_templates || []) {
          const body = wanted ? { active: true, template_id: id, params, accept_charge: true } : { active: false };
          result = await admin("PUT", `notifications/whatsapp/${encodeURIComponent(name)}`, body);
          if (!result.ok) break;
        }
      }
      if (result && !result.ok) showError("notify-error", `Not saved: ${problemOf(result).message}`);
    } catch (err) {
      showError("notify-error", `The admin API did not answer (${err.message}).`);
    } finally {
      for (const box of [$("notify-sms"), $("notify-whatsapp")]) box.disabled = false;
      notifySaving = false;
    }
    await loadNotify();
  }

  // ---------------------------------------------------------------- merchant's chat

  // The merchant's Telegram chat with the bot (/sandbox/api/chat): read again whenever the
  // state is, and drawn again only when it changed. One message or button press at a time,
  // as the bot answers each before the next.
  const CHAT_URL = "/sandbox/api/chat";
  let chatRun = null;
  let chatQueued = false;
  let chatReplyTo = null; // {id, text}: the message the next one answers
  let chatNoticeCount = 0;

  function chatFollowState() {
    refreshChat();
  }

  async function refreshChat() {
    if (chatRun) {
      chatQueued = true;
      return;
    }
    chatRun = true;
    try {
      do {
        chatQueued = false;
        const result = await request("GET", CHAT_URL);
        if (result.ok && result.data) renderChat(result.data);
      } while (chatQueued);
    } catch (err) {
      showError("chat-error", `The sandbox did not answer (${err.message}).`);
    } finally {
      chatRun = null;
    }
  }

  function renderChat(chat) {
    if (!changed("chat", chat)) return;
    const box = $("chat-link");
    const linked = chat.linked;
    box.dataset.linked = linked ? "true" : "false";
    setText(
      "chat-link-status",
      linked
        ? `This chat is linked to ${linked.shop} as ${linked.role}.`
        : "Not linked yet: send the bot /start and the demo shop's code.",
    );
    setText("chat-link-code", chat.link_code || "");
    $("chat-code-line").hidden = Boolean(linked);
    setText("chat-bot-name", `@${chat.bot.username}`);
    renderChatCommands(chat.commands || []);
    const list = $("chat-messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const before = list.children.length;
    showEmpty("chat-empty", chat.messages.length === 0);
    const shown = new Map(chat.messages.map((m) => [m.id, m]));
    syncList(list, chat.messages, (m) => m.id, (m) => buildChatMessage(m, shown));
    if (atBottom || list.children.length > before) list.scrollTop = list.scrollHeight;
    if (chatReplyTo && !shown.has(chatReplyTo.id)) setChatReply(null);
    const notice = chat.notice;
    if (notice && notice.count !== chatNoticeCount) {
      chatNoticeCount = notice.count;
      setText("chat-notice", notice.text);
    }
    applyBusy();
  }

  function renderChatCommands(commands) {
    if (!changed("chat-commands", commands)) return;
    $("chat-commands").replaceChildren(
      ...commands.map((c) =>
        actionButton(`/${c.command}`, {
          testid: "chat-command",
          act: "chat-command",
          label: `/${c.command}: ${c.description}`,
          data: { command: c.command },
        }),
      ),
    );
  }

  function chatPreview(text) {
    const line = String(text || "").split("\n")[0];
    return line.length > 60 ? `${line.slice(0, 59)}…` : line;
  }

  function buildChatFile(message) {
    const file = message.file;
    if (!file) return null;
    if (file.kind === "photo") {
      return h("img", { src: file.url, alt: message.text || "A photo from the bot", testid: "chat-photo" });
    }
    const size = file.size < 1024 ? `${file.size} B` : `${(file.size / 1024).toFixed(1)} KB`;
    return h("p", {}, h("a", { href: file.url, download: file.name, testid: "chat-document" }, `${file.name} (${size})`));
  }

  function buildChatMessage(message, shown) {
    const fromBot = message.from === "bot";
    const answered = message.reply_to ? shown.get(message.reply_to) : null;
    const keyboard = message.buttons.length
      ? h(
          "div",
          { class: "tg-keyboard", role: "group", "aria-label": "The message's buttons" },
          message.buttons.map((row) =>
            h(
              "div",
              { class: "tg-row" },
              row.map((button) =>
                actionButton(button.text, {
                  testid: "chat-button",
                  act: "chat-press",
                  busyKey: "chat",
                  focusKey: `chat-button:${message.id}:${button.data}`,
                  data: { message: message.id, callback: button.data },
                }),
              ),
            ),
          ),
        )
      : null;
    return h(
      "li",
      {
        class: `tg-message from-${message.from}`,
        testid: "chat-message",
        "data-from": message.from,
        "data-message-id": message.id,
      },
      answered ? h("p", { class: "tg-quote", testid: "chat-quote" }, chatPreview(answered.text)) : null,
      buildChatFile(message),
      message.text ? h("p", { class: "body", testid: "chat-message-text" }, message.text) : null,
      keyboard,
      h(
        "span",
        { class: "meta" },
        message.edited ? h("span", { testid: "chat-edited" }, "edited") : null,
        fromBot
          ? actionButton("↩", {
              testid: "chat-reply",
              act: "chat-reply",
              focusKey: `chat-reply:${message.id}`,
              label: `Reply to: ${chatPreview(message.text)}`,
              data: { message: message.id },
            })
          : null,
      ),
    );
  }

  function setChatReply(target) {
    chatReplyTo = target;
    $("chat-replying").hidden = !target;
    setText("chat-replying-text", target ? `Replying to: ${chatPreview(target.text)}` : "");
  }

  function chatReply(button) {
    const item = button.closest("[data-message-id]");
    const text = item.querySelector('[data-testid="chat-message-text"]');
    setChatReply({ id: Number(button.dataset.message), text: text ? text.textContent : "" });
    $("chat-text").focus();
  }

  function chatCommand(button) {
    const input = $("chat-text");
    input.value = `/${button.dataset.command} `;
    input.focus();
  }

  function chatUseCode() {
    const input = $("chat-text");
    input.value = `/start ${$("chat-link-code").textContent}`;
    input.focus();
  }

  function showChatFieldError(text) {
    setText("chat-error-text", text);
    const input = $("chat-text");
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  async function chatSend(event) {
    event.preventDefault();
    const input = $("chat-text");
    const text = input.value;
    const body = { text };
    if (chatReplyTo) body.reply_to = chatReplyTo.id;
    showChatFieldError("");
    const result = await run("chat", "chat-error", () => post("/sandbox/api/chat/messages", body));
    if (!result) return;
    if (result.ok) {
      if (input.value === text) input.value = "";
      setChatReply(null);
      renderChat(result.data.chat);
      input.focus();
      return;
    }
    const { fields } = problemOf(result);
    const own = fields.filter((f) => f.field === "text").map((f) => f.message);
    if (own.length) {
      showChatFieldError(own.join(" "));
      showError("chat-error", "");
    }
  }

  async function chatPress(button) {
    const id = encodeURIComponent(button.dataset.message);
    const result = await run("chat", "chat-error", () =>
      post(`/sandbox/api/chat/messages/${id}/press`, { data: button.dataset.callback }),
    );
    if (result && result.ok) renderChat(result.data.chat);
  }

  // ---------------------------------------------------------------- wiring

  const actions = {
    "order-cancel": (b) => orderAction(b, "cancel"),
    "order-mark": markOrder,
    "whatsapp-consent": setWhatsAppConsent,
    "sms-consent": setSmsConsent,
    "advance-10": () => advance({ minutes: 10 }),
    "advance-next-job": () => advance({ to: "next_job" }),
    answer,
    "ring-out": () => phoneAction("call", "ring-out"),
    "missed-call": () => phoneAction("missed", "missed-call"),
    "wa-button": pressWhatsAppButton,
    "open-link": (b) => openLinkInFrame(b.dataset.url),
    "link-close": closeLink,
    "pick-phone": (b) => pickPhone(b.dataset.number),
    "filter-clear": clearFilters,
    "chat-press": chatPress,
    "chat-reply": chatReply,
    "chat-reply-cancel": () => setChatReply(null),
    "chat-command": chatCommand,
    "chat-use-code": chatUseCode,
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-act]");
    if (!button || button.disabled || !root.contains(button)) return;
    const action = actions[button.dataset.act];
    if (action) action(button);
  });

  $("order-form").addEventListener("submit", createOrder);
  $("order-phone-preset").addEventListener("change", (event) => {
    const option = event.target.selectedOptions[0];
    const input = $("order-phone");
    if (option && option.dataset.number) input.value = option.dataset.number;
    else input.focus();
  });
  $("order-phone").addEventListener("input", matchPreset);
  $("phone-picker").addEventListener("change", (event) => pickPhone(event.target.value));
  $("reply-form").addEventListener("submit", sendReply);
  $("link-frame").addEventListener("load", frameLoaded);
  $("setup-form").addEventListener("submit", saveSetup);
  $("notify-form").addEventListener("change", saveNotify);
  $("order-list").addEventListener("input", keepJourneyDraft);
  $("merchant-filters").addEventListener("submit", applyFilters);
  $("thread-list").addEventListener("submit", answerThread);
  $("thread-list").addEventListener("input", (event) => {
    const form = event.target.closest("form[data-thread-id]");
    if (form) drafts.set(form.dataset.threadId, event.target.value);
  });
  $("merchant-tabs").addEventListener("click", (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) selectTab(tab, false);
  });
  $("merchant-tabs").addEventListener("keydown", tabKeys);
  $("chat-form").addEventListener("submit", chatSend);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollSoon();
  });

  poll();
  listen();
})();
