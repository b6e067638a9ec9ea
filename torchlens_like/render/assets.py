"""The stylesheet and script of the HTML explorer, kept as strings so they ship inside the package.

The script has no dependencies: pan and zoom rewrite the SVG ``viewBox``;
search matches a lowercase text per node (layer labels and module
addresses); a click on a node (``<g class="node" id="nK">``, ids written by
:mod:`.dot`) fills the side panel from the embedded JSON.
"""

CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 13px Helvetica, Arial, sans-serif; display: flex; height: 100vh; }
#graph { flex: 1; overflow: hidden; position: relative; background: #fafafa; cursor: grab; }
#graph.dragging { cursor: grabbing; }
#graph svg { width: 100%; height: 100%; display: block; }
#side { width: 380px; border-left: 1px solid #ccc; display: flex; flex-direction: column; }
#side header { padding: 8px; border-bottom: 1px solid #ddd; }
#side h1 { font-size: 15px; margin: 0 0 4px 0; }
#search { width: 100%; padding: 5px; font-size: 13px; }
#results { max-height: 30vh; overflow-y: auto; margin: 0; padding: 0; list-style: none;
           border-bottom: 1px solid #ddd; }
#results li { padding: 3px 8px; cursor: pointer; white-space: nowrap; overflow: hidden;
              text-overflow: ellipsis; }
#results li:hover { background: #eef; }
#count { color: #666; font-size: 12px; margin-top: 4px; }
#meta { flex: 1; overflow-y: auto; padding: 8px; }
#meta table { border-collapse: collapse; width: 100%; }
#meta td { border-bottom: 1px solid #eee; padding: 2px 4px; vertical-align: top;
           word-break: break-word; }
#meta td.key { color: #555; white-space: nowrap; }
#meta h2 { font-size: 14px; margin: 10px 0 4px 0; }
#controls { position: absolute; top: 8px; left: 8px; z-index: 1; }
#controls button { font-size: 14px; min-width: 28px; }
g.node.hit > *:not(text) { stroke: #0060ff; stroke-width: 3px; }
g.node.selected > *:not(text) { stroke: #ff00aa; stroke-width: 4px; }
g.node { cursor: pointer; }
"""

JS = r"""
(function () {
  const data = JSON.parse(document.getElementById('graph-data').textContent);
  const host = document.getElementById('graph');
  const svg = host.querySelector('svg');
  svg.removeAttribute('width');
  svg.removeAttribute('height');
  const full = svg.viewBox.baseVal;
  let box = {x: full.x, y: full.y, w: full.width, h: full.height};
  const home = Object.assign({}, box);
  function apply() { svg.setAttribute('viewBox', [box.x, box.y, box.w, box.h].join(' ')); }
  function zoomAt(factor, cx, cy) {
    box.x = cx - (cx - box.x) * factor; box.y = cy - (cy - box.y) * factor;
    box.w *= factor; box.h *= factor; apply();
  }
  function toGraph(evt) {
    const r = svg.getBoundingClientRect();
    const s = Math.max(box.w / r.width, box.h / r.height);
    const ox = box.x + box.w / 2 - (r.width * s) / 2, oy = box.y + box.h / 2 - (r.height * s) / 2;
    return [ox + (evt.clientX - r.left) * s, oy + (evt.clientY - r.top) * s, s];
  }
  host.addEventListener('wheel', function (evt) {
    evt.preventDefault();
    const p = toGraph(evt);
    zoomAt(evt.deltaY > 0 ? 1.15 : 1 / 1.15, p[0], p[1]);
  }, {passive: false});
  let drag = null;
  host.addEventListener('mousedown', function (evt) {
    drag = {x: evt.clientX, y: evt.clientY, moved: false, active: true};
    host.classList.add('dragging');
  });
  window.addEventListener('mousemove', function (evt) {
    if (!drag || !drag.active) return;
    const s = toGraph(evt)[2];
    const dx = evt.clientX - drag.x, dy = evt.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
    box.x -= dx * s; box.y -= dy * s; drag.x = evt.clientX; drag.y = evt.clientY; apply();
  });
  window.addEventListener('mouseup', function () {
    if (drag) drag.active = false;
    host.classList.remove('dragging');
  });
  document.getElementById('zoom-in').onclick = function () {
    zoomAt(1 / 1.3, box.x + box.w / 2, box.y + box.h / 2); };
  document.getElementById('zoom-out').onclick = function () {
    zoomAt(1.3, box.x + box.w / 2, box.y + box.h / 2); };
  document.getElementById('zoom-fit').onclick = function () { box = Object.assign({}, home); apply(); };

  const byId = {};
  data.nodes.forEach(function (n) { byId[n.id] = n; });
  function centerOn(id) {
    const g = document.getElementById(id);
    if (!g) return;
    const b = g.getBBox();
    const ctm = g.getCTM(), root = svg.getCTM();
    const m = root.inverse().multiply(ctm);
    const cx = m.a * (b.x + b.width / 2) + m.c * (b.y + b.height / 2) + m.e;
    const cy = m.b * (b.x + b.width / 2) + m.d * (b.y + b.height / 2) + m.f;
    const r = svg.getBoundingClientRect();
    const w = Math.max(b.width * 5, 300), h = w * r.height / Math.max(r.width, 1);
    box = {x: cx - w / 2, y: cy - h / 2, w: w, h: h}; apply();
  }
  function cell(text, cls) {
    const td = document.createElement('td'); td.textContent = text;
    if (cls) td.className = cls; return td;
  }
  function show(id) {
    document.querySelectorAll('g.node.selected').forEach(function (g) {
      g.classList.remove('selected'); });
    const g = document.getElementById(id);
    if (g) g.classList.add('selected');
    const node = byId[id];
    const meta = document.getElementById('meta');
    meta.innerHTML = '';
    const title = document.createElement('h2');
    title.textContent = node.title;
    title.id = 'meta-title';
    meta.appendChild(title);
    node.layers.forEach(function (label) {
      const row = data.layers[label];
      if (node.layers.length > 1) {
        const head = document.createElement('h2'); head.textContent = label;
        meta.appendChild(head);
      }
      const table = document.createElement('table');
      table.className = 'layer-meta';
      table.dataset.label = label;
      Object.keys(row).forEach(function (key) {
        const tr = document.createElement('tr');
        const value = row[key];
        tr.appendChild(cell(key, 'key'));
        tr.appendChild(cell(typeof value === 'string' ? value : JSON.stringify(value), 'value'));
        tr.dataset.key = key;
        table.appendChild(tr);
      });
      meta.appendChild(table);
    });
  }
  svg.querySelectorAll('g.node').forEach(function (g) {
    g.addEventListener('click', function (evt) {
      if (drag && drag.moved) return;
      evt.stopPropagation(); show(g.id);
    });
  });
  const input = document.getElementById('search');
  const results = document.getElementById('results');
  const count = document.getElementById('count');
  function search() {
    const q = input.value.trim().toLowerCase();
    results.innerHTML = '';
    document.querySelectorAll('g.node.hit').forEach(function (g) { g.classList.remove('hit'); });
    if (!q) { count.textContent = ''; return []; }
    const hits = data.nodes.filter(function (n) { return n.search.indexOf(q) >= 0; });
    count.textContent = hits.length + ' match' + (hits.length === 1 ? '' : 'es');
    hits.forEach(function (n) {
      const g = document.getElementById(n.id);
      if (g) g.classList.add('hit');
      const li = document.createElement('li');
      li.textContent = n.title + (n.where ? '  \u2014 ' + n.where : '');
      li.dataset.node = n.id;
      li.onclick = function () { centerOn(n.id); show(n.id); };
      results.appendChild(li);
    });
    return hits;
  }
  input.addEventListener('input', search);
  input.addEventListener('keydown', function (evt) {
    if (evt.key === 'Enter') {
      const hits = search();
      if (hits.length) { centerOn(hits[0].id); show(hits[0].id); }
    }
  });
})();
"""
