// The fleet-optimization dashboard: a zone map coloured by supply minus
// target with the latest plan's moves, the newest solved run's Pareto front
// and the seed's metrics, live. Vanilla JS and SVG, served by the service
// itself under a Content-Security-Policy that allows this origin only, so
// everything is built with DOM calls (no inline code, no innerHTML).
'use strict';

(() => {
  const BASE = '/api/v1/fleet-optimization';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  // sessionStorage, not localStorage: the key lives as long as the tab.
  const KEY_STORE = 'fleet-optimization.api-key';
  const METRICS = [
    'optimization_success',
    'optimization_execution_time_ms',
    'cost_reduction_pct',
    'fleet_efficiency_improvement_pct',
    'recommendation_adoption_rate_pct',
  ];
  const POLL_MS = 5000; // fallback when the event stream is unavailable
  const STREAM_RETRY_MS = 30000;
  const SLOW_REFRESH_MS = 10000; // Pareto front and metrics change slowly

  const $ = (id) => document.getElementById(id);
  let apiKey = sessionStorage.getItem(KEY_STORE);
  let fleet = new URLSearchParams(location.search).get('fleet') || $('fleet').value;
  let stream = null; // AbortController of the open event stream
  let pollTimer = null;
  let refreshQueued = false;
  let lastSlowRefresh = 0;
  let paretoRunId = null;

  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(tag, attrs, content, parent) {
    const node = el(tag, attrs, parent);
    node.textContent = content;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function setStatus(message, kind) {
    const status = $('status');
    status.textContent = message;
    status.className = kind || '';
  }

  class Unauthorized extends Error {}

  async function api(path) {
    const res = await fetch(BASE + path, { headers: { 'x-api-key': apiKey }, cache: 'no-store' });
    if (res.status === 401) throw new Unauthorized('the key was refused');
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${res.status}: ${detail}`);
    }
    return res.json();
  }

  // ---- colours: a diverging scale, red (deficit) - white - blue (surplus)
  const DEFICIT = [178, 24, 43];
  const NEUTRAL = [247, 247, 247];
  const SURPLUS = [33, 102, 172];

  function balanceColour(balance, extent) {
    const t = Math.max(-1, Math.min(1, balance / extent));
    const end = t < 0 ? DEFICIT : SURPLUS;
    const a = Math.abs(t);
    const c = NEUTRAL.map((n, i) => Math.round(n + (end[i] - n) * a));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // ---- the map: an equirectangular projection, x scaled by cos(latitude)
  function projection(zones, width, height, pad) {
    const lats = zones.map((z) => z.lat);
    const lons = zones.map((z) => z.lon);
    const [minLat, maxLat] = [Math.min(...lats), Math.max(...lats)];
    const [minLon, maxLon] = [Math.min(...lons), Math.max(...lons)];
    const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = Math.max((maxLon - minLon) * k, 1e-9);
    const spanY = Math.max(maxLat - minLat, 1e-9);
    const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
    const offX = (width - spanX * scale) / 2;
    const offY = (height - spanY * scale) / 2;
    return (lat, lon) => [offX + (lon - minLon) * k * scale, height - offY - (lat - minLat) * scale];
  }

  function drawMap(view) {
    const map = $('map');
    clear(map);
    const [W, H] = [800, 640];
    if (!view.zones.length) {
      text('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' },
        'No pipeline window stored for this fleet yet.', map);
      return;
    }
    const defs = el('defs', {}, map);
    const marker = el('marker', {
      id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
      markerWidth: 4, markerHeight: 4, orient: 'auto-start-reverse',
    }, defs);
    el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }, marker);

    const project = projection(view.zones, W, H - 60, 24);
    const extent = Math.max(1, ...view.zones.map((z) => Math.abs(z.balance)));
    const where = new Map();
    const zoneLayer = el('g', { id: 'zones' }, map);
    for (const z of view.zones) {
      const [x, y] = project(z.lat, z.lon);
      where.set(z.id, [x, y]);
      const dot = el('circle', {
        cx: x.toFixed(1), cy: y.toFixed(1), r: 6,
        class: 'zone', fill: balanceColour(z.balance, extent), 'data-zone': z.id,
      }, zoneLayer);
      text('title', {}, `${z.name || z.id} (${z.id}): ${z.supply} idle, target ${z.target}, balance ${z.balance}`, dot);
    }
    const moveLayer = el('g', { id: 'moves-layer' }, map);
    for (const m of view.moves) {
      const a = where.get(m.from_zone);
      const b = where.get(m.to_zone);
      if (!a || !b) continue;
      // Stop short of the destination circle so the head stays visible.
      const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
      const len = Math.hypot(dx, dy) || 1;
      const shrink = Math.min(6, len / 3);
      const line = el('line', {
        x1: a[0].toFixed(1), y1: a[1].toFixed(1),
        x2: (b[0] - dx / len * shrink).toFixed(1), y2: (b[1] - dy / len * shrink).toFixed(1),
        class: 'move', 'stroke-width': Math.min(2 + m.vehicles, 8), 'marker-end': 'url(#arrow)',
      }, moveLayer);
      text('title', {}, `${m.vehicles} vehicle(s) ${m.from_zone} -> ${m.to_zone}, ${m.km.toFixed(1)} km: ${m.explanation}`, line);
    }
    drawLegend(map, extent, W, H);
  }

  function drawLegend(map, extent, W, H) {
    const g = el('g', { id: 'legend', transform: `translate(${W - 290},${H - 44})` }, map);
    const steps = 9;
    for (let i = 0; i < steps; i += 1) {
      const v = -extent + (2 * extent * i) / (steps - 1);
      el('rect', { x: i * 28, y: 0, width: 28, height: 12, fill: balanceColour(v, extent), class: 'zone' }, g);
    }
    text('text', { x: 0, y: 26, class: 'label' }, `-${extent} deficit`, g);
    text('text', { x: (steps * 28) / 2, y: 26, class: 'label', 'text-anchor': 'middle' }, '0', g);
    text('text', { x: steps * 28, y: 26, class: 'label', 'text-anchor': 'end' }, `+${extent} surplus`, g);
  }

  function listMoves(view) {
    const list = $('moves');
    clear(list);
    $('move-count').textContent = `(${view.moves.length})`;
    const names = new Map(view.zones.map((z) => [z.id, z.name || z.id]));
    for (const m of view.moves.slice(0, 200)) {
      const item = document.createElement('li');
      item.textContent = `${m.vehicles} x ${names.get(m.from_zone) || m.from_zone} -> ${names.get(m.to_zone) || m.to_zone} (${m.km.toFixed(1)} km)`;
      item.title = m.explanation;
      list.appendChild(item);
    }
  }

  // ---- charts
  function scale(values, lo, hi) {
    let min = Math.min(...values);
    let max = Math.max(...values);
    if (min === max) { min -= 1; max += 1; }
    return (v) => lo + ((v - min) / (max - min)) * (hi - lo);
  }

  function drawPareto(result) {
    const chart = $('pareto');
    clear(chart);
    const [W, H, L, B] = [380, 230, 44, 34];
    const front = (result && result.report && result.report.pareto) || [];
    if (!front.length) {
      text('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' },
        result ? 'The run has no Pareto front.' : 'No solved run yet.', chart);
      return;
    }
    // A point's objectives sit next to its `km_weight` (flattened).
    const pts = front.map((p) => [p.empty_km, p.unmet]);
    const sx = scale(pts.map((p) => p[0]), L, W - 10);
    const sy = scale(pts.map((p) => p[1]), H - B, 10);
    el('line', { x1: L, y1: H - B, x2: W - 10, y2: H - B, class: 'axis' }, chart);
    el('line', { x1: L, y1: 10, x2: L, y2: H - B, class: 'axis' }, chart);
    text('text', { x: (L + W) / 2, y: H - 6, 'text-anchor': 'middle', class: 'label' }, 'empty km', chart);
    text('text', { x: 12, y: (H - B) / 2, 'text-anchor': 'middle', class: 'label', transform: `rotate(-90 12 ${(H - B) / 2})` }, 'unmet demand', chart);
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    for (const [v, anchor] of [[Math.min(...xs), 'start'], [Math.max(...xs), 'end']]) {
      text('text', { x: sx(v), y: H - B + 14, 'text-anchor': anchor, class: 'label' }, v.toFixed(1), chart);
    }
    for (const v of [Math.min(...ys), Math.max(...ys)]) {
      text('text', { x: L - 4, y: sy(v) + 4, 'text-anchor': 'end', class: 'label' }, String(v), chart);
    }
    const sorted = pts.slice().sort((a, b) => a[0] - b[0]);
    el('polyline', { points: sorted.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' '), class: 'front' }, chart);
    front.forEach((p, i) => {
      const dot = el('circle', { cx: sx(pts[i][0]).toFixed(1), cy: sy(pts[i][1]).toFixed(1), r: 4, class: 'pareto-point' }, chart);
      const weight = p.km_weight == null ? 'any above' : p.km_weight.toFixed(2);
      text('title', {}, `${p.empty_km.toFixed(1)} km, ${p.unmet} unmet, served ${(100 * p.served_ratio).toFixed(0)}% (km weight ${weight})`, dot);
    });
    const chosen = result.report.objectives;
    if (chosen) {
      const ring = el('circle', { cx: sx(chosen.empty_km).toFixed(1), cy: sy(chosen.unmet).toFixed(1), r: 7, class: 'chosen' }, chart);
      text('title', {}, 'the run\'s optimal plan', ring);
    }
  }

  function drawMetrics(answer) {
    const box = $('metrics');
    clear(box);
    const byName = new Map(METRICS.map((n) => [n, []]));
    for (const b of answer.buckets || []) {
      if (byName.has(b.name)) byName.get(b.name).push(b);
    }
    for (const [name, buckets] of byName) {
      const row = document.createElement('div');
      row.className = 'metric';
      const label = document.createElement('span');
      label.className = 'metric-name';
      label.textContent = name;
      row.appendChild(label);
      const spark = el('svg', { viewBox: '0 0 160 28', preserveAspectRatio: 'none', class: 'sparkline', 'data-metric': name }, row);
      const value = document.createElement('span');
      value.className = 'metric-value';
      if (buckets.length) {
        buckets.sort((a, b) => a.start - b.start);
        const sx = scale(buckets.map((b) => b.start), 3, 157);
        const sy = scale(buckets.map((b) => b.avg), 25, 3);
        const points = buckets.map((b) => `${sx(b.start).toFixed(1)},${sy(b.avg).toFixed(1)}`);
        if (buckets.length > 1) el('polyline', { points: points.join(' ') }, spark);
        const last = buckets[buckets.length - 1];
        el('circle', { cx: sx(last.start).toFixed(1), cy: sy(last.avg).toFixed(1), r: 2.5 }, spark);
        text('title', {}, `${buckets.length} buckets; latest average ${last.avg}`, spark);
        value.textContent = Number.isInteger(last.avg) ? String(last.avg) : last.avg.toFixed(2);
      } else {
        value.textContent = 'no data';
        value.title = 'no points in the last hour';
      }
      row.appendChild(value);
      box.appendChild(row);
    }
  }

  // ---- data
  async function refresh() {
    const q = `?fleet_id=${encodeURIComponent(fleet)}`;
    const view = await api(`/dashboard${q}`);
    drawMap(view);
    listMoves(view);
    $('window-time').textContent = view.window ? `window ${view.window.start} - ${view.window.end}` : '';
    const slowDue = Date.now() - lastSlowRefresh >= SLOW_REFRESH_MS;
    if (slowDue || view.latest_solved_run_id !== paretoRunId) {
      lastSlowRefresh = Date.now();
      paretoRunId = view.latest_solved_run_id;
      const result = paretoRunId ? await api(`/runs/${encodeURIComponent(paretoRunId)}/results`) : null;
      drawPareto(result);
      $('pareto-run').textContent = paretoRunId ? `(run ${paretoRunId})` : '';
      const from = Date.now() - 3600 * 1000;
      drawMetrics(await api(`/metrics${q}&bucket=10s&from=${from}`));
    }
  }

  // Coalesces bursts of events (the replay closes several windows a second)
  // into at most one refresh in flight plus one queued.
  let refreshing = null;
  function scheduleRefresh() {
    if (refreshing) { refreshQueued = true; return; }
    refreshing = refresh()
      .catch(onError)
      .finally(() => {
        refreshing = null;
        if (refreshQueued) { refreshQueued = false; setTimeout(scheduleRefresh, 500); }
      });
  }

  function onError(e) {
    if (e instanceof Unauthorized) { forgetKey('The key was refused: enter a valid API key.'); return; }
    setStatus(`error: ${e.message}`, 'error');
  }

  // ---- live updates: server-sent events read with fetch (EventSource
  // cannot send the X-API-Key header, and a key in the URL would end up in
  // logs and history), polling while the stream is down.
  async function openStream() {
    closeStream();
    const controller = new AbortController();
    stream = controller;
    try {
      const res = await fetch(`${BASE}/dashboard/events?fleet_id=${encodeURIComponent(fleet)}`, {
        headers: { 'x-api-key': apiKey, accept: 'text/event-stream' },
        cache: 'no-store',
        signal: controller.signal,
      });
      if (res.status === 401) throw new Unauthorized('the key was refused');
      if (!res.ok || !res.body) throw new Error(`event stream: ${res.status}`);
      stopPolling();
      setStatus('live (server-sent events)', 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: ?window$/m.test(frame)) scheduleRefresh();
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
      if (e instanceof Unauthorized) { onError(e); return; }
    }
    if (controller.signal.aborted) return;
    // The stream ended or failed: poll, and try the stream again later.
    startPolling();
    setTimeout(() => { if (stream === controller) openStream(); }, STREAM_RETRY_MS);
  }

  function closeStream() {
    if (stream) stream.abort();
    stream = null;
  }

  function startPolling() {
    if (pollTimer) return;
    setStatus(`polling every ${POLL_MS / 1000} s`, '');
    pollTimer = setInterval(scheduleRefresh, POLL_MS);
    scheduleRefresh();
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  // ---- the key
  function forgetKey(message) {
    closeStream();
    stopPolling();
    apiKey = null;
    sessionStorage.removeItem(KEY_STORE);
    $('board').hidden = true;
    $('forget-key').hidden = true;
    $('key-panel').hidden = false;
    $('key-error').textContent = message || '';
    setStatus('not connected', '');
    $('api-key').focus();
  }

  function start() {
    $('key-panel').hidden = true;
    $('board').hidden = false;
    $('forget-key').hidden = false;
    $('fleet').value = fleet;
    setStatus('connecting', '');
    lastSlowRefresh = 0;
    scheduleRefresh();
    openStream();
  }

  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    apiKey = $('api-key').value.trim();
    $('api-key').value = '';
    if (!apiKey) return;
    sessionStorage.setItem(KEY_STORE, apiKey);
    start();
  });
  $('fleet-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const next = $('fleet').value.trim();
    if (next && next !== fleet) {
      fleet = next;
      paretoRunId = null;
      if (apiKey) start();
    }
  });
  $('forget-key').addEventListener('click', () => forgetKey(''));

  if (apiKey) start(); else forgetKey('');
})();
