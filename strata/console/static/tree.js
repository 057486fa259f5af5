// The branch tree as an SVG graph: one row per branch in depth-first order, each a line
// from its fork to now; a child's fork is a curve from its parent's line at the fork's
// time. Times are placed in order (equal steps between events), labelled with the time.
"use strict";

const Tree = (() => {
  const ROW = 46, LEFT = 12, LABEL = 440, STEP_MIN = 28;

  function order(branches) {
    const byName = new Map(branches.map((b) => [b.name, b]));
    const roots = branches.filter((b) => !b.parent || !byName.has(b.parent));
    const rows = [];
    const visit = (branch, depth) => {
      rows.push({ branch, depth });
      branch.children.map((name) => byName.get(name)).filter(Boolean)
        .sort((a, b) => a.created_at_us - b.created_at_us)
        .forEach((child) => visit(child, depth + 1));
    };
    roots.sort((a, b) => a.created_at_us - b.created_at_us).forEach((r) => visit(r, 0));
    return rows;
  }

  // The time of the point a branch was cut at, when it shows: a checkpoint of its parent
  // at the same LSN taken before the branch was made (else: null, cut when it was made).
  function cutAt(branch, byName) {
    const parent = byName.get(branch.parent);
    const marks = (parent?.checkpoints || []).filter(
      (c) => c.lsn === branch.branch_lsn && c.created_at_us <= branch.created_at_us);
    return marks.length ? Math.max(...marks.map((c) => c.created_at_us)) : null;
  }

  function timeScale(branches, nowUs) {
    const times = new Set([nowUs]);
    for (const b of branches) {
      times.add(b.created_at_us);
      for (const c of b.checkpoints) times.add(c.created_at_us);
    }
    const sorted = [...times].sort((a, b) => a - b);
    const index = new Map(sorted.map((t, i) => [t, i]));
    return { count: sorted.length, at: (t) => index.get(t) ?? sorted.length - 1 };
  }

  function ttlLeft(branch, nowUs) {
    if (!branch.expires_at_us) return branch.protected ? "protected" : "no TTL";
    const seconds = Math.round((branch.expires_at_us - nowUs) / 1e6);
    const what = branch.lease_s ? "lease ends" : "expires";
    if (seconds < 3600) return `${what} in ${Math.max(seconds, 0) >= 60 ? Math.round(seconds / 60) + " min" : Math.max(seconds, 0) + " s"}`;
    return `${what} in ${(seconds / 3600).toFixed(1)} h`;
  }

  function draw(container, data, selected, onSelect) {
    const { el, text, human } = Charts;
    const rows = order(data.branches);
    const scale = timeScale(data.branches, data.now_us);
    const step = Math.max(STEP_MIN, 320 / Math.max(scale.count - 1, 1));
    const graphWidth = step * (scale.count - 1);
    const width = LEFT + graphWidth + 24 + LABEL;
    const height = rows.length * ROW + 20;
    const x = (t) => LEFT + step * scale.at(t);
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                            id: "tree-svg", role: "img", "aria-label": "branch tree" });
    const rowOf = new Map(rows.map((r, i) => [r.branch.name, i]));
    const byName = new Map(data.branches.map((b) => [b.name, b]));
    const yOf = (i) => 24 + i * ROW;
    el("line", { x1: x(data.now_us), y1: 4, x2: x(data.now_us), y2: height - 4,
                 class: "now" }, svg);
    rows.forEach(({ branch }, i) => {
      const y = yOf(i);
      const g = el("g", { class: "branch" + (branch.name === selected ? " selected" : ""),
                          "data-branch": branch.name }, svg);
      el("rect", { x: 0, y: y - ROW / 2, width, height: ROW, fill: "transparent" }, g);
      const x0 = x(branch.created_at_us), x1 = x(data.now_us);
      const cut = cutAt(branch, byName);
      const xc = cut === null ? x0 : x(cut);
      if (branch.parent && rowOf.has(branch.parent)) {
        const py = yOf(rowOf.get(branch.parent));
        el("path", { d: `M ${xc} ${py} C ${xc} ${(py + y) / 2}, ${xc} ${y}, ${xc + 10} ${y}`,
                     class: "fork" }, g);
        if (xc < x0) el("line", { x1: xc + 10, y1: y, x2: x0, y2: y, class: "fork cut" }, g);
      }
      const kind = branch.protected ? " protected"
        : branch.expires_at_us && branch.expires_at_us - data.now_us < 3600e6 ? " expiring" : "";
      el("line", { x1: x0, y1: y, x2: Math.max(x1, x0 + 4), y2: y, class: "line" + kind }, g);
      const fork = el("title", {}, g);
      fork.textContent = `${branch.name}: made ${new Date(branch.created_at_us / 1000).toLocaleString()}, cut at LSN ${branch.branch_lsn}${branch.parent ? ` of ${branch.parent}` : ""}`;
      for (const c of branch.checkpoints) {
        const cx = x(c.created_at_us);
        const mark = el("path", { d: `M ${cx} ${y - 7} l 6 7 l -6 7 l -6 -7 z`,
                                  class: "checkpoint", "data-checkpoint": c.name }, g);
        const tip = el("title", {}, mark);
        tip.textContent = `checkpoint ${c.name}: LSN ${c.lsn}, ${new Date(c.created_at_us / 1000).toLocaleString()}`;
      }
      const lx = LEFT + graphWidth + 24;
      if (branch.compute) {
        el("circle", { cx: lx - 10, cy: y, r: 5, class: `state-${branch.compute}` }, g);
      }
      text(g, lx, y - 4, branch.name, { class: "name" });
      text(g, lx, y + 12,
           `LSN ${branch.branch_lsn}→${branch.last_lsn} · ${human(branch.logical_size, "B")}` +
           ` · owns ${human(branch.owned_bytes, "B")} · ${ttlLeft(branch, data.now_us)}` +
           (branch.compute ? ` · ${branch.compute}` : ""),
           { class: "hint", "font-size": "11" });
      g.addEventListener("click", () => onSelect(branch.name));
    });
    container.replaceChildren(svg);
  }

  return { draw, order };
})();
