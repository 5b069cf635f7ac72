"use strict";
// chainreplay report: timeline paging and filters, graph details. Reads the embedded JSON only;
// every string is inserted with textContent, never as HTML.
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 100;
  const events = DATA.events; // [seq, stageIndex, kindIndex, virtualMs, text]
  const state = { page: 0, rows: events, hit: null };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function vtime(us) {
    const ms = Math.floor(us / 1000);
    const days = Math.floor(ms / 86400000);
    let rest = ms - days * 86400000;
    const h = Math.floor(rest / 3600000); rest -= h * 3600000;
    const m = Math.floor(rest / 60000); rest -= m * 60000;
    const s = Math.floor(rest / 1000); const milli = rest - s * 1000;
    const pad = (n, w) => String(n).padStart(w, "0");
    return "+" + (days ? days + "d " : "") + pad(h, 2) + ":" + pad(m, 2) + ":" + pad(s, 2) + "." + pad(milli, 3) +
      pad(us % 1000, 3);
  }

  // ---- timeline ----
  const tbody = document.querySelector("#timeline tbody");
  const info = document.getElementById("tl-info");
  const search = document.getElementById("tl-search");

  function checked(name) {
    return new Set(Array.from(document.querySelectorAll("input[name=" + name + "]:checked")).map((i) => Number(i.value)));
  }

  function applyFilters() {
    const stages = checked("tl-stage");
    const kinds = checked("tl-kind");
    const text = search.value.trim().toLowerCase();
    state.rows = events.filter(
      (e) => stages.has(e[1]) && kinds.has(e[2]) && (!text || e[4].toLowerCase().includes(text))
    );
    state.page = 0;
    render();
  }

  function render() {
    const pages = Math.max(1, Math.ceil(state.rows.length / PAGE));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const start = state.page * PAGE;
    const frag = document.createDocumentFragment();
    for (const e of state.rows.slice(start, start + PAGE)) {
      const tr = el("tr", { id: "ev-" + e[0], "data-seq": e[0], "data-kind": DATA.kinds[e[2]] });
      if (state.hit === e[0]) tr.className = "hit";
      tr.appendChild(el("td", { class: "mono" }, e[0]));
      tr.appendChild(el("td", { class: "mono nowrap" }, vtime(e[3])));
      const stage = e[1] >= 0 ? DATA.stages[e[1]] : null;
      tr.appendChild(el("td", {}, stage ? stage.id + " " + stage.name : ""));
      const kind = el("td");
      kind.appendChild(el("span", { class: "kind k-" + DATA.kinds[e[2]] }, DATA.kinds[e[2]]));
      tr.appendChild(kind);
      tr.appendChild(el("td", { class: "mono" }, e[4]));
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    info.textContent =
      "showing " + (state.rows.length ? start + 1 : 0) + "-" + Math.min(start + PAGE, state.rows.length) +
      " of " + state.rows.length + " events (" + events.length + " in all), page " + (state.page + 1) + " of " + pages;
  }

  function goToEvent(seq) {
    let index = state.rows.findIndex((e) => e[0] === seq);
    if (index < 0) {
      document.querySelectorAll("input[name=tl-stage], input[name=tl-kind]").forEach((i) => { i.checked = true; });
      search.value = "";
      applyFilters();
      index = state.rows.findIndex((e) => e[0] === seq);
    }
    if (index < 0) return;
    state.page = Math.floor(index / PAGE);
    state.hit = seq;
    render();
    const row = document.getElementById("ev-" + seq);
    if (row) row.scrollIntoView({ block: "center" });
  }

  document.querySelectorAll("input[name=tl-stage], input[name=tl-kind]").forEach((i) => i.addEventListener("change", applyFilters));
  search.addEventListener("input", applyFilters);
  document.getElementById("tl-prev").addEventListener("click", () => { state.page -= 1; render(); });
  document.getElementById("tl-next").addEventListener("click", () => { state.page += 1; render(); });
  document.getElementById("tl-all").addEventListener("click", () => {
    document.querySelectorAll("input[name=tl-stage], input[name=tl-kind]").forEach((i) => { i.checked = true; });
    search.value = ""; applyFilters();
  });

  // ---- graph details ----
  const details = document.getElementById("details");
  let byseq = null;

  function evidenceLinks(parent, seqs) {
    if (!seqs || !seqs.length) return;
    const p = el("p", {}, "Evidence: ");
    for (const seq of seqs.slice(0, 60)) {
      p.appendChild(el("a", { href: "#ev-" + seq, class: "ev", "data-seq": seq }, "[" + seq + "]"));
    }
    if (seqs.length > 60) p.appendChild(el("span", { class: "muted" }, "... " + (seqs.length - 60) + " more"));
    parent.appendChild(p);
    if (!byseq) byseq = new Map(events.map((e) => [e[0], e]));
    const ul = el("ul");
    for (const seq of seqs.slice(0, 12)) {
      const e = byseq.get(seq);
      if (e) ul.appendChild(el("li", { class: "mono" }, "[" + seq + "] " + e[4]));
    }
    parent.appendChild(ul);
  }

  function select(kind, index) {
    document.querySelectorAll(".stage-graph .selected").forEach((n) => n.classList.remove("selected"));
    const item = kind === "node" ? DATA.nodes[index] : DATA.edges[index];
    if (!item) return;
    const target = document.getElementById((kind === "node" ? "n" : "e") + index);
    if (target) target.classList.add("selected");
    details.replaceChildren();
    details.appendChild(el("h3", {}, item.title));
    details.appendChild(el("p", { class: "muted" }, (kind === "node" ? "node, kind " : "edge, type ") + item.kind));
    details.appendChild(el("pre", {}, item.tip));
    evidenceLinks(details, item.evidence);
    details.setAttribute("data-selected", kind + index);
  }

  document.querySelectorAll(".stage-graph .node").forEach((g) =>
    g.addEventListener("click", (ev) => { ev.preventDefault(); select("node", Number(g.dataset.node)); })
  );
  document.querySelectorAll(".stage-graph .edge").forEach((g) =>
    g.addEventListener("click", (ev) => { ev.preventDefault(); select("edge", Number(g.dataset.edge)); })
  );
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest ? ev.target.closest("a.ev") : null;
    if (a) { ev.preventDefault(); goToEvent(Number(a.dataset.seq)); }
  });

  const zoom = document.getElementById("graph-zoom");
  zoom.addEventListener("change", () => {
    document.querySelector(".graph-scroll").classList.toggle("zoom", zoom.checked);
  });

  function fromHash() {
    const m = /^#(n|e|ev-)(\d+)$/.exec(location.hash);
    if (!m) return;
    if (m[1] === "ev-") goToEvent(Number(m[2]));
    else select(m[1] === "n" ? "node" : "edge", Number(m[2]));
  }

  applyFilters();
  fromHash();
  window.addEventListener("hashchange", fromHash);
  document.body.setAttribute("data-ready", "1");
})();
