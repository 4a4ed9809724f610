// Tiny inline-SVG charts (no library): grouped horizontal bars and a sparkline.
// Each chart carries a text alternative (role="img" + aria-label) and a
// <title> per bar for hover.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

/**
 * Horizontal bars, one row per item, with up to a few series per row.
 * rows: [{label, values: [number|null...]}]; series: [{name, class}];
 * format: value → text.
 */
export function barChart({ rows, series, format = String, label, max, width = 520 }) {
  const rowH = 12 * series.length + 10;
  width = Math.max(260, Math.round(width));
  const labelW = Math.min(150, Math.round(width * 0.36));
  const valueW = 62;
  const barW = width - labelW - valueW;
  const top = maxOf(rows, max);
  const height = rows.length * rowH + 4;
  const svg = s('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': label, preserveAspectRatio: 'xMinYMin meet',
  });
  rows.forEach((row, i) => {
    const y = i * rowH + 4;
    svg.append(s('text', { x: labelW - 8, y: y + rowH / 2, class: 'chart-label', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, truncate(row.label, Math.floor(labelW / 6.3))));
    series.forEach((ser, j) => {
      const v = row.values[j];
      const by = y + j * 12;
      const w = !v || !top ? 0 : Math.max(1, (v / top) * barW);
      svg.append(s('rect', { x: labelW, y: by, width: barW, height: 10, class: 'chart-track', rx: 2 }));
      const bar = s('rect', { x: labelW, y: by, width: w, height: 10, class: `chart-bar ${ser.class || ''}`, rx: 2 },
        s('title', {}, `${row.label} ${ser.name}: ${v === null || v === undefined ? 'n/a' : format(v)}`));
      svg.append(bar);
      svg.append(s('text', { x: labelW + barW + 6, y: by + 5, class: 'chart-value', 'dominant-baseline': 'middle' },
        v === null || v === undefined ? '—' : format(v)));
    });
  });
  return svg;
}

function maxOf(rows, max) {
  if (max) return max;
  let m = 0;
  for (const r of rows) for (const v of r.values) if (typeof v === 'number' && v > m) m = v;
  return m;
}

function truncate(t, n) {
  t = String(t);
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

/** A sparkline over the last values (oldest first). */
export function sparkline(values, { label, width = 160, height = 36 } = {}) {
  const svg = s('svg', { class: 'spark', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
  if (values.length < 2) return svg;
  const max = Math.max(1, ...values);
  const step = width / (values.length - 1);
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  svg.append(s('polyline', { points: `0,${height} ${pts.join(' ')} ${width},${height}`, class: 'spark-fill' }));
  svg.append(s('polyline', { points: pts.join(' '), class: 'spark-line', fill: 'none' }));
  return svg;
}
