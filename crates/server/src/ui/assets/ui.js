// Switchboard dashboard: progressive enhancement only (every page works without it).
// - live updates from GET /ui/live (Server-Sent Events): new rows in lists marked
//   data-live="events" / "deliveries", fresh statuses in [data-delivery-status], the overview feed;
// - payload view tabs, copy buttons, confirmations.
// Text from the server is only ever placed with textContent, never as HTML.
"use strict";

(function () {
  var BADGE = {
    succeeded: "ok", active: "ok", closed: "ok", delivering: "ok", receiving: "ok",
    failed: "bad", open: "bad", needs_reauth: "bad", failing: "bad", disabled: "bad",
    pending: "warn", in_flight: "warn", half_open: "warn"
  };

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (attrs) for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }

  function badge(status) {
    return el("span", status, { "class": "badge " + (BADGE[status] || "neutral") });
  }

  function link(href, text) {
    var a = el("a", null, { href: href });
    a.appendChild(el("code", text));
    return a;
  }

  function cell(row, content, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
    return td;
  }

  function prepend(tbody, row) {
    row.className = "fresh";
    tbody.insertBefore(row, tbody.firstChild);
    while (tbody.rows.length > 200) tbody.deleteRow(-1);
    var empty = tbody.closest("table").parentNode.querySelector(".empty");
    if (empty) empty.remove();
  }

  function feed(text, href) {
    document.querySelectorAll('[data-live="feed"]').forEach(function (list) {
      var li = document.createElement("li");
      li.appendChild(link(href, text));
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 50) list.removeChild(list.lastChild);
    });
  }

  var seenEvents = {};

  function onEvent(item) {
    if (seenEvents[item.id]) return;
    seenEvents[item.id] = true;
    var href = "/ui/events/" + encodeURIComponent(item.id);
    document.querySelectorAll('tbody[data-live="events"]').forEach(function (tbody) {
      var shown = Array.prototype.some.call(tbody.querySelectorAll("a"), function (a) {
        return a.textContent === item.id;
      });
      if (shown) return;
      if (tbody.dataset.source && tbody.dataset.source !== item.source) return;
      if (tbody.dataset.type && tbody.dataset.type !== item.type) return;
      var row = document.createElement("tr");
      cell(row, el("time", item.received_at, { datetime: item.received_at }));
      cell(row, link(href, item.id));
      cell(row, item.source);
      cell(row, item.type || "—");
      cell(row, item.body_bytes + " B", "num");
      prepend(tbody, row);
    });
    feed("event " + item.id + " from " + item.source + (item.type ? " (" + item.type + ")" : ""), href);
  }

  function onDelivery(item) {
    var href = "/ui/deliveries/" + encodeURIComponent(item.id);
    var known = false;
    document.querySelectorAll("[data-delivery-status]").forEach(function (node) {
      if (node.getAttribute("data-delivery-status") !== item.id) return;
      known = true;
      node.replaceChildren(badge(item.status));
    });
    if (!known) {
      document.querySelectorAll('tbody[data-live="deliveries"]').forEach(function (tbody) {
        if (tbody.dataset.destination && tbody.dataset.destination !== item.destination) return;
        var row = document.createElement("tr");
        cell(row, el("time", item.updated_at, { datetime: item.updated_at }));
        cell(row, link(href, item.id));
        cell(row, link("/ui/events/" + encodeURIComponent(item.event_id), item.event_id));
        cell(row, item.destination);
        cell(row, badge(item.status)).setAttribute("data-delivery-status", item.id);
        cell(row, String(item.attempts), "num");
        cell(row, item.last_error || "");
        prepend(tbody, row);
      });
    }
    feed("delivery " + item.id + " to " + item.destination + ": " + item.status, href);
  }

  function live() {
    if (!window.EventSource) return;
    // From the live feed's cursor at the page's render time: nothing that happens between
    // rendering and connecting is missed; a reconnect resumes from the last item's id.
    var after = document.body.dataset.liveCursor;
    var source = new EventSource("/ui/live" + (after ? "?after=" + encodeURIComponent(after) : ""));
    source.addEventListener("open", function () { document.body.dataset.live = "open"; });
    source.addEventListener("error", function () { document.body.dataset.live = "reconnecting"; });
    source.addEventListener("event", function (e) { onEvent(JSON.parse(e.data)); });
    source.addEventListener("delivery", function (e) { onDelivery(JSON.parse(e.data)); });
  }

  function tabs() {
    document.querySelectorAll('[role="tablist"]').forEach(function (list) {
      var buttons = list.querySelectorAll('[role="tab"]');
      function select(chosen) {
        buttons.forEach(function (b) {
          var on = b === chosen;
          b.setAttribute("aria-selected", on ? "true" : "false");
          var panel = document.getElementById(b.getAttribute("aria-controls"));
          if (panel) panel.hidden = !on;
        });
      }
      buttons.forEach(function (b) { b.addEventListener("click", function () { select(b); }); });
      if (buttons.length) select(buttons[0]);
    });
  }

  function copies() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = button.getAttribute("data-copy");
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () {});
        } else {
          var area = el("textarea", text);
          document.body.appendChild(area);
          area.select();
          try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
          area.remove();
        }
      });
    });
  }

  function confirmations() {
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.form.addEventListener("submit", function (e) {
        if (!window.confirm(button.getAttribute("data-confirm"))) e.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tabs();
    copies();
    confirmations();
    live();
  });
})();
