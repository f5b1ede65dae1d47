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

// An arrow that skips columns passes each column it crosses through a
// waypoint that takes a slot of this height, so it runs between boxes
// rather than behind one (where it would seem to point at that box).
const WAYPOINT_H = 8;

/**
 * Columns (layers) and rows of every step. A step's layer is the length of
 * the longest chain of dependencies below it; a dependency on an unknown
 * step is ignored, and a cycle (which a valid workflow never has) is cut
 * where it is found rather than looping. Returns each step's box position
 * and each arrow's points: its source, one waypoint per crossed column, its
 * target.
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

  // Slots: the steps, then one waypoint per arrow per crossed column. Each
  // slot knows the slots just before it on its arrows, for ordering.
  const slotLayer = [...layer];
  const before = deps.map(() => []);
  const arrows = [];
  steps.forEach((_, i) => {
    for (const p of deps[i]) {
      const chain = [p];
      for (let l = layer[p] + 1; l < layer[i]; l++) {
        slotLayer.push(l);
        before.push([chain[chain.length - 1]]);
        chain.push(slotLayer.length - 1);
      }
      before[i].push(chain[chain.length - 1]);
      chain.push(i);
      arrows.push({ from: p, to: i, chain });
    }
  });
  const isStep = (slot) => slot < steps.length;
  const slotH = (slot) => (isStep(slot) ? BOX_H : WAYPOINT_H);

  const columns = [];
  slotLayer.forEach((l, slot) => {
    (columns[l] ||= []).push(slot);
  });
  // Order each column by the mean row of the slots before it (declaration
  // order breaks ties), which keeps most arrows short and uncrossed.
  const row = new Array(slotLayer.length).fill(0);
  columns.forEach((col, c) => {
    if (c > 0) {
      const key = (slot) => (before[slot].length ? before[slot].reduce((a, p) => a + row[p], 0) / before[slot].length : Infinity);
      col.sort((a, b) => key(a) - key(b) || a - b);
    }
    col.forEach((slot, r) => (row[slot] = r));
  });

  const columnHeight = (col) => col.reduce((a, slot) => a + slotH(slot), 0) + Math.max(0, col.length - 1) * GAP_Y;
  const height = PAD * 2 + Math.max(BOX_H, ...columns.map(columnHeight));
  const width = PAD * 2 + columns.length * BOX_W + Math.max(0, columns.length - 1) * GAP_X;
  const pos = new Array(slotLayer.length);
  columns.forEach((col, c) => {
    let y = (height - columnHeight(col)) / 2;
    for (const slot of col) {
      pos[slot] = { x: PAD + c * (BOX_W + GAP_X), y, h: slotH(slot) };
      y += slotH(slot) + GAP_Y;
    }
  });
  return { pos: pos.slice(0, steps.length), arrows: arrows.map((a) => ({ ...a, points: a.chain.map((slot) => pos[slot]) })), layer, width, height };
}

/** An arrow's SVG path: curves between columns, straight through waypoints. */
function arrowPath(points) {
  const [first, ...rest] = points;
  let x = first.x + BOX_W;
  let y = first.y + first.h / 2;
  let d = `M${x},${y}`;
  rest.forEach((p, k) => {
    const last = k === rest.length - 1;
    const x2 = last ? p.x - 3 : p.x;
    const y2 = p.y + p.h / 2;
    const mid = (x + x2) / 2;
    d += ` C${mid},${y} ${mid},${y2} ${x2},${y2}`;
    if (!last) d += ` L${p.x + BOX_W},${y2}`;
    x = p.x + BOX_W;
    y = y2;
  });
  return d;
}

function fit(text, px) {
  const max = Math.floor(px / CHAR_W);
  return text.length > max ? text.slice(0, Math.max(1, max - 1)) + "…" : text;
}

/** The SVG of a workflow's steps (`workflow.steps` of /api/work/{id}). */
export function renderDag(steps) {
  const { pos, arrows, width, height } = layout(steps);
  const edges = arrows.map(({ from, to, points }) => s("path", {
    class: `dag-edge edge-${steps[from].state}`,
    "data-test": "dag-edge", "data-from": steps[from].name, "data-to": steps[to].name,
    d: arrowPath(points),
    "marker-end": "url(#dag-arrow)",
  }));

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
