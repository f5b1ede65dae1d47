// A workflow's DAG as an SVG graph: steps in columns by their longest path
// from a step with no dependencies (so every arrow points right), arrows from
// each dependency to the step that waits for it, each box coloured by its
// state and labelled with its name and the node that ran it.

import { s } from "./dom.js";

const BOX_W = 184;
const BOX_H = 50;
const GAP_X = 64;
const GAP_Y = 16;
const PAD = 12;
// About the width of one character of the 13px label font; names longer than
// the box are cut with an ellipsis and shown whole in the tooltip.
const CHAR_W = 7.2;

/**
 * Columns (layers) and rows of every step. A step's layer is the length of
 * the longest chain of dependencies below it; a dependency on an unknown
 * step is ignored, and a cycle (which a valid workflow never has) is cut
 * where it is found rather than looping.
 */
export function layout(steps) {
  const index = new Map(steps.map((st, i) => [st.name, i]));
  const deps = steps.map((st) => (st.depends_on || []).filter((d) => index.has(d) && d !== st.name).map((d) => index.get(d)));
  const layer = new Array(steps.length).fill(-1);
  const visiting = new Array(steps.length).fill(false);
  const depth = (i) => {
    if (layer[i] >= 0) return layer[i];
    if (visiting[i]) return 0;
    visiting[i] = true;
    let d = 0;
    for (const p of deps[i]) d = Math.max(d, depth(p) + 1);
    visiting[i] = false;
    layer[i] = d;
    return d;
  };
  steps.forEach((_, i) => depth(i));

  const columns = [];
  steps.forEach((_, i) => {
    (columns[layer[i]] ||= []).push(i);
  });
  // Order each column by the mean row of its dependencies (declaration order
  // breaks ties), which keeps most arrows short and uncrossed.
  const row = new Array(steps.length).fill(0);
  columns.forEach((col, c) => {
    if (c > 0) {
      const key = (i) => (deps[i].length ? deps[i].reduce((a, p) => a + row[p], 0) / deps[i].length : Infinity);
      col.sort((a, b) => key(a) - key(b) || a - b);
    }
    col.forEach((i, r) => (row[i] = r));
  });

  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + columns.length * BOX_W + Math.max(0, columns.length - 1) * GAP_X;
  const pos = steps.map((_, i) => {
    const col = columns[layer[i]];
    const colHeight = col.length * BOX_H + (col.length - 1) * GAP_Y;
    const top = (height - colHeight) / 2;
    return { x: PAD + layer[i] * (BOX_W + GAP_X), y: top + row[i] * (BOX_H + GAP_Y) };
  });
  return { pos, deps, layer, width, height };
}

function fit(text, px) {
  const max = Math.floor(px / CHAR_W);
  return text.length > max ? text.slice(0, Math.max(1, max - 1)) + "…" : text;
}

/** The SVG of a workflow's steps (`workflow.steps` of /api/work/{id}). */
export function renderDag(steps) {
  const { pos, deps, width, height } = layout(steps);
  const edges = [];
  steps.forEach((st, i) => {
    for (const p of deps[i]) {
      const a = pos[p];
      const b = pos[i];
      const x1 = a.x + BOX_W;
      const y1 = a.y + BOX_H / 2;
      const x2 = b.x - 3;
      const y2 = b.y + BOX_H / 2;
      const mid = (x1 + x2) / 2;
      edges.push(s("path", {
        class: `dag-edge edge-${steps[p].state}`,
        "data-test": "dag-edge", "data-from": steps[p].name, "data-to": st.name,
        d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
        "marker-end": "url(#dag-arrow)",
      }));
    }
  });

  const boxes = steps.map((st, i) => {
    const { x, y } = pos[i];
    const node = st.node || "";
    const attempts = st.attempts > 1 ? ` ×${st.attempts}` : "";
    const sub = (node ? `${st.state.replace(/_/g, " ")} · ${node}` : st.state.replace(/_/g, " ")) + attempts;
    const tip = [
      `step ${st.name} (${st.run})`,
      `state: ${st.state}`,
      `node: ${node || "not run yet"}`,
      `attempts: ${st.attempts}`,
      st.depends_on && st.depends_on.length ? `after: ${st.depends_on.join(", ")}` : "first step",
    ].join("\n");
    return s("g", {
      class: `dag-step state-${st.state}`, transform: `translate(${x},${y})`,
      "data-test": "dag-step", "data-step": st.name, "data-state": st.state, "data-node": node,
    },
    s("title", null, tip),
    s("rect", { class: "dag-box", width: BOX_W, height: BOX_H, rx: 6 }),
    s("rect", { class: "dag-stripe", width: 5, height: BOX_H, rx: 2 }),
    s("text", { class: "dag-name", x: 14, y: 21 }, fit(st.name, BOX_W - 22)),
    s("text", { class: "dag-sub", x: 14, y: 39, "data-test": "dag-step-node" }, fit(sub, BOX_W - 22)));
  });

  return s("svg", {
    class: "dag", "data-test": "dag", viewBox: `0 0 ${width} ${height}`,
    width, height, role: "img", "aria-label": "workflow steps",
  },
  s("defs", null,
    s("marker", { id: "dag-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrowhead" }))),
  s("g", { class: "dag-edges" }, edges),
  s("g", { class: "dag-steps" }, boxes));
}
