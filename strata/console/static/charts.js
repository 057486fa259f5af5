// Small SVG charts drawn by hand: a line chart of samples over time and horizontal bars.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const node = el("text", { x, y, ...(attrs || {}) }, parent);
    node.textContent = content;
    return node;
  }

  function human(value, unit) {
    if (unit === "B") {
      const steps = ["B", "kB", "MB", "GB", "TB"];
      let i = 0;
      while (Math.abs(value) >= 1000 && i < steps.length - 1) { value /= 1000; i++; }
      return `${value.toFixed(i ? 1 : 0)} ${steps[i]}`;
    }
    if (unit === "B/s") return `${human(value, "B")}/s`;
    if (unit === "ms") return `${value.toFixed(2)} ms`;
    const rounded = Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1);
    return unit ? `${rounded} ${unit}` : rounded;
  }

  // samples: [[time_ms, value], ...]; draws the last of them as a polyline.
  function line(container, title, samples, unit) {
    const width = 340, height = 150, left = 8, top = 22, bottom = 18;
    container.replaceChildren();
    const figure = document.createElement("div");
    figure.className = "chart";
    const heading = document.createElement("h4");
    const last = samples.length ? samples[samples.length - 1][1] : null;
    heading.textContent = `${title}: ${last === null ? "-" : human(last, unit)}`;
    figure.appendChild(heading);
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                            role: "img", "aria-label": title }, figure);
    container.appendChild(figure);
    if (samples.length < 2) {
      text(svg, left, height / 2, "collecting samples…", { class: "hint" });
      return;
    }
    const t0 = samples[0][0], t1 = samples[samples.length - 1][0];
    const values = samples.map((s) => s[1]);
    const top_value = Math.max(...values, 0) || 1;
    const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1)) * (width - 2 * left);
    const y = (v) => height - bottom - (v / top_value) * (height - top - bottom);
    el("polyline", { points: samples.map(([t, v]) => `${x(t)},${y(v)}`).join(" "),
                     fill: "none", stroke: "#3b6fd6", "stroke-width": 2 }, svg);
    text(svg, left, top - 8, `max ${human(top_value, unit)}`);
    text(svg, left, height - 4, `${Math.round((t1 - t0) / 1000)} s`);
  }

  // series: [{label, samples: [[time_ms, value], ...]}], one polyline each on a shared
  // scale, colours from palette, with a legend.
  function lines(container, title, series, unit, palette) {
    const width = 520, height = 190, left = 8, top = 22, bottom = 18;
    container.replaceChildren();
    const figure = document.createElement("div");
    figure.className = "chart";
    const heading = document.createElement("h4");
    heading.textContent = title;
    figure.appendChild(heading);
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                            role: "img", "aria-label": title }, figure);
    container.appendChild(figure);
    const all = series.flatMap((s) => s.samples);
    if (all.length < 2) {
      text(svg, left, height / 2, "no samples yet", { class: "hint" });
      return;
    }
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const top_value = Math.max(...all.map((p) => p[1]), 0) || 1;
    const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1)) * (width - 2 * left);
    const y = (v) => height - bottom - (v / top_value) * (height - top - bottom);
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, i) => {
      const colour = palette[i % palette.length];
      if (s.samples.length) {
        el("polyline", { points: s.samples.map(([t, v]) => `${x(t)},${y(v)}`).join(" "),
                         fill: "none", stroke: colour, "stroke-width": 2,
                         "data-series": s.label }, svg);
      }
      const item = document.createElement("span");
      item.style.color = colour;
      const last = s.samples.length ? s.samples[s.samples.length - 1][1] : null;
      item.textContent = `■ ${s.label}: ${last === null ? "-" : human(last, unit)}`;
      legend.appendChild(item);
    });
    figure.appendChild(legend);
    text(svg, left, top - 8, `max ${human(top_value, unit)}`);
    text(svg, left, height - 4, `${new Date(t0).toLocaleString()} – ${new Date(t1).toLocaleString()}`);
  }

  // rows: [{label, value, extra}], value and extra in bytes; extra drawn after value.
  function bars(container, rows) {
    const width = 640, row = 22, label = 140;
    container.replaceChildren();
    const height = rows.length * row + 8;
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}` }, container);
    const top_value = Math.max(...rows.map((r) => r.value + (r.extra || 0)), 1);
    const scale = (v) => (v / top_value) * (width - label - 90);
    rows.forEach((r, i) => {
      const y = 4 + i * row;
      text(svg, 0, y + 14, r.label);
      el("rect", { x: label, y, width: Math.max(scale(r.value), 1), height: row - 6,
                   class: "bar" }, svg);
      text(svg, label + scale(r.value) + 6, y + 14, human(r.value, "B"));
    });
  }

  return { el, text, human, line, lines, bars };
})();
