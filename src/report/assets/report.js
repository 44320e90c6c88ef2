// phasemap report: Vega-Lite specs for every figure, built from the report data that
// `phasemap report` assembles (src/report). Shared by the page (template.html) and by the
// Node exporter (export.js), so the SVG/PNG files are the same figures as on the page.
// Plain ES2020, no modules: defines globalThis.PhasemapReport.
(function (root) {
  'use strict';

  const STATES = ['COLLAPSE', 'RIVALRY', 'DIFFUSE', 'STEADY'];
  const STATE_COLOURS = ['#d62728', '#ff7f0e', '#9467bd', '#2ca02c'];
  const REGIMES = ['UNDERACTIVE', 'ADAPTIVE', 'TRANSITION', 'CHAOTIC'];
  const REGIME_COLOURS = ['#9ecae1', '#a1d99b', '#fdd0a2', '#fcbba1'];
  const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

  const base = (spec) => Object.assign({ $schema: SCHEMA, config: { view: { stroke: '#ccc' }, font: 'sans-serif', legend: { labelLimit: 280, titleLimit: 320 } } }, spec);
  const has = (a) => Array.isArray(a) && a.length > 0;

  // Regime bands [lo, hi) on the ratio_norm axis, from the cut-points in use.
  function regimeBands(cuts, lo, hi) {
    const edges = [Math.min(lo, cuts[0]) * 0.95, ...cuts, Math.max(hi, cuts[cuts.length - 1]) * 1.05];
    return REGIMES.map((r, i) => ({ regime: r, lo: edges[i], hi: edges[i + 1] }));
  }

  // One normalisation mode at a time: a parameter (a selector under the plot when the data hold
  // several modes) and a filter on it for every layer that draws runs or statistics.
  const normOf = (d) => (d.norm != null ? d.norm : '');
  function normParam(d) {
    const norms = d.norms || [''];
    const p = { name: 'pm_norm', value: normOf(d) };
    if (norms.length > 1) p.bind = { input: 'select', options: norms, name: 'normalisation ' };
    return p;
  }
  const normFilter = { filter: '(datum.norm || "") === pm_norm' };

  function phaseMap(d) {
    const vals = d.runs.map((r) => r.ratio_norm).filter((v) => v != null);
    const lo = Math.min(...vals, ...d.model_stats.map((m) => m.ci_low ?? m.median));
    const hi = Math.max(...vals, ...d.model_stats.map((m) => m.ci_high ?? m.median));
    const bands = regimeBands(d.cuts, lo, hi);
    const shown = d.model_stats.filter((m) => (m.norm || '') === normOf(d));
    const order = shown.slice().sort((a, b) => a.median - b.median).map((m) => m.model);
    for (const m of d.model_stats) if (!order.includes(m.model)) order.push(m.model);
    const y = { scale: { type: 'log', domain: [bands[0].lo, bands[3].hi], nice: false }, title: 'ratio_norm (log)' };
    const xModel = { field: 'model', type: 'nominal', sort: order, title: 'model', axis: { labelAngle: -30 } };
    return base({
      width: Math.max(240, 70 * order.length), height: 320,
      params: [normParam(d)],
      layer: [
        { data: { values: bands }, mark: { type: 'rect', opacity: 0.35 },
          encoding: { y: Object.assign({ field: 'lo', type: 'quantitative' }, y), y2: { field: 'hi' },
            fill: { field: 'regime', type: 'nominal', scale: { domain: REGIMES, range: REGIME_COLOURS }, title: 'regime (cuts ' + d.cuts.join(', ') + ')' },
            tooltip: [{ field: 'regime' }, { field: 'lo', format: '.3f', title: 'from' }, { field: 'hi', format: '.3f', title: 'to' }] } },
        { data: { values: d.runs.filter((r) => r.ratio_norm != null) },
          transform: [normFilter, { calculate: '(random() - 0.5) * 0.6', as: 'jitter' }],
          mark: { type: 'point', filled: true, size: 28, opacity: 0.65 },
          encoding: { x: xModel, xOffset: { field: 'jitter', type: 'quantitative', scale: { domain: [-0.5, 0.5] } },
            y: Object.assign({ field: 'ratio_norm', type: 'quantitative' }, y),
            color: { field: 'family', type: 'nominal', title: 'family' },
            tooltip: [{ field: 'id', title: 'run' }, { field: 'model' }, { field: 'family' }, { field: 'category' },
              { field: 'ratio_norm', format: '.3f' }, { field: 'regime' }, { field: 'temperature' }, { field: 'norm' }] } },
        { data: { values: d.model_stats.filter((m) => m.ci_low != null) }, transform: [normFilter], mark: { type: 'rule', strokeWidth: 2, color: '#222' },
          encoding: { x: xModel, y: Object.assign({ field: 'ci_low', type: 'quantitative' }, y), y2: { field: 'ci_high' } } },
        { data: { values: d.model_stats }, transform: [normFilter], mark: { type: 'tick', thickness: 3, size: 30, color: '#222' },
          encoding: { x: xModel, y: Object.assign({ field: 'median', type: 'quantitative' }, y),
            tooltip: [{ field: 'model' }, { field: 'family' }, { field: 'n', title: 'runs' }, { field: 'median', format: '.3f', title: 'median' },
              { field: 'ci_low', format: '.3f', title: 'CI low' }, { field: 'ci_high', format: '.3f', title: 'CI high' }] } },
      ],
    });
  }

  function phaseMapByCategory(d) {
    const rows = d.model_category_stats;
    return base({
      data: { values: rows },
      params: [normParam(d)],
      transform: [normFilter],
      width: Math.max(160, 60 * new Set(rows.map((r) => r.category)).size),
      height: Math.max(80, 26 * new Set(rows.map((r) => r.model)).size),
      encoding: { x: { field: 'category', type: 'nominal', axis: { labelAngle: -30 } }, y: { field: 'model', type: 'nominal' } },
      layer: [
        { mark: 'rect', encoding: { color: { field: 'median', type: 'quantitative', title: 'median ratio_norm',
            scale: { type: 'threshold', domain: d.cuts, range: REGIME_COLOURS } },
          tooltip: [{ field: 'model' }, { field: 'family' }, { field: 'category' }, { field: 'n', title: 'runs' },
            { field: 'median', format: '.3f' }, { field: 'ci_low', format: '.3f', title: 'CI low' }, { field: 'ci_high', format: '.3f', title: 'CI high' }] } },
        { mark: { type: 'text', fontSize: 10 }, encoding: { text: { field: 'label' } } },
      ],
    });
  }

  function trajectories(d) {
    const t = d.trajectories;
    const ids = t.runs.map((r) => r.id);
    const labels = t.runs.map((r) => r.label);
    const metrics = t.metrics;
    const params = [
      { name: 'pm_run', value: ids[0], bind: { input: 'select', options: ids, labels: labels, name: 'run ' } },
      { name: 'pm_metric', value: metrics[0], bind: { input: 'radio', options: metrics, name: 'series ' } },
    ];
    const filt = [{ filter: 'datum.run === pm_run' }];
    return base({
      params: params,
      data: { values: t.points },
      vconcat: [
        { width: 640, height: 220, transform: filt.concat([{ calculate: 'datum[pm_metric]', as: 'value' }, { filter: 'isValid(datum.value)' }]),
          layer: [
            { mark: { type: 'line', interpolate: 'linear', color: '#1f77b4' },
              encoding: { x: { field: 't', type: 'quantitative', title: 'generated token' }, y: { field: 'value', type: 'quantitative', title: 'value of the chosen series' } } },
            { mark: { type: 'point', filled: true, size: 18, color: '#1f77b4' },
              encoding: { x: { field: 't', type: 'quantitative' }, y: { field: 'value', type: 'quantitative' },
                tooltip: [{ field: 't', title: 'token #' }, { field: 'token', title: 'text' }, { field: 'value', format: '.4g', title: 'value' },
                  { field: 'state', title: 'output state' }] } },
          ] },
        { width: 640, height: 24, transform: filt.concat([{ filter: 'isValid(datum.state) && datum.state !== ""' }, { calculate: 'datum.t + (datum.w || 1)', as: 't2' }]),
          mark: { type: 'rect' },
          encoding: { x: { field: 't', type: 'quantitative', title: null, axis: null }, x2: { field: 't2' },
            color: { field: 'state', type: 'nominal', scale: { domain: STATES, range: STATE_COLOURS }, title: 'output state' },
            tooltip: [{ field: 't', title: 'token #' }, { field: 'token', title: 'text' }, { field: 'state' }] } },
      ],
      resolve: { scale: { x: 'shared' } },
    });
  }

  function layerProfiles(d) {
    const L = d.layer;
    return base({
      data: { values: L.rows },
      facet: { field: 'metric', type: 'nominal', sort: L.metrics, title: null },
      columns: 4,
      spec: { width: Math.max(90, 34 * d.models.length), height: 180,
        mark: { type: 'boxplot', extent: 'min-max', size: 14 },
        encoding: { x: { field: 'model', type: 'nominal', axis: { labelAngle: -40 } },
          y: { field: 'value', type: 'quantitative', scale: { zero: false }, title: L.value_title },
          color: { field: 'family', type: 'nominal' } } },
      resolve: { scale: { y: 'independent' } },
    });
  }

  // Layer profiles over depth: per metric a panel, x = layer depth, per model (colour) the median
  // over tokens as a line with points and the q1–q3 band as an area.
  function layerDepth(d) {
    const L = d.layer_depth;
    const x = { field: 'depth', type: 'quantitative', title: 'layer depth (hf index)', axis: { tickMinStep: 1, format: 'd' } };
    const y = (field) => ({ field: field, type: 'quantitative', title: 'median over tokens (band q1–q3)', scale: { zero: false } });
    const colour = { field: 'model', type: 'nominal', title: 'model', sort: L.models, legend: { symbolOpacity: 1 } };
    return base({
      data: { values: L.rows },
      facet: { column: { field: 'metric', type: 'nominal', sort: L.metrics, title: null, header: { labelFontWeight: 'bold' } } },
      spec: { width: 260, height: 200,
        layer: [
          { transform: [{ filter: 'isValid(datum.q1) && isValid(datum.q3)' }], mark: { type: 'area', opacity: 0.18 },
            encoding: { x: x, y: y('q1'), y2: { field: 'q3' }, color: colour } },
          { mark: { type: 'line', strokeWidth: 1.8 },
            encoding: { x: x, y: y('median'), color: colour } },
          { mark: { type: 'point', filled: true, size: 24 },
            encoding: { x: x, y: y('median'), color: colour,
              tooltip: [{ field: 'model' }, { field: 'layer' }, { field: 'metric' }, { field: 'median', format: '.4g' },
                { field: 'q1', format: '.4g' }, { field: 'q3', format: '.4g' }, { field: 'n', title: 'tokens' }, { field: 'runs' }] } },
        ] },
      resolve: { scale: { y: 'independent' } },
    });
  }

  function varianceBars(v) {
    const ci = v.rows.some((r) => r.ci_low != null);
    const layer = [
      { mark: 'bar', encoding: { x: { field: 'share', type: 'quantitative', title: v.value_title || 'share of variance' },
        y: { field: 'factor', type: 'nominal', sort: null, title: null }, color: { field: 'factor', type: 'nominal', legend: null },
        tooltip: [{ field: 'metric' }, { field: 'factor' }, { field: 'share', format: '.3f' }, { field: 'ci_low', format: '.3f', title: 'CI low' }, { field: 'ci_high', format: '.3f', title: 'CI high' }] } },
    ];
    if (ci) layer.push({ transform: [{ filter: 'isValid(datum.ci_low)' }], mark: { type: 'errorbar', ticks: true, color: '#222' },
      encoding: { x: { field: 'ci_low', type: 'quantitative', title: v.value_title || 'share of variance' }, x2: { field: 'ci_high' }, y: { field: 'factor', type: 'nominal', sort: null } } });
    return base({ data: { values: v.rows },
      facet: { row: { field: 'metric', type: 'nominal', title: null,
        header: { labelAngle: 0, labelOrient: 'top', labelAnchor: 'start', labelFontWeight: 'bold' } } },
      spec: { width: 420, height: { step: 18 }, layer: layer }, resolve: { scale: { y: 'independent' } } });
  }

  // The dendrogram's leaf i sits at x = i + 0.5 of [0, n], over the centre of heat-map column i
  // (a band scale without padding); both views share one width and one left edge. The merge
  // height is on a square-root scale, so that close merges stay visible under a distant one.
  function topology(t) {
    const n = t.order.length;
    const side = Math.max(216, Math.min(520, 36 * n));
    const labels = { labelLimit: 280 };
    return base({
      vconcat: [
        { width: side, height: 130, data: { values: t.dendrogram }, mark: { type: 'rule', color: '#444', strokeWidth: 1.5 },
          encoding: { x: { field: 'x', type: 'quantitative', scale: { domain: [0, n], nice: false, zero: false }, axis: null },
            x2: { field: 'x2' }, y: { field: 'y', type: 'quantitative', scale: { type: 'sqrt', zero: true }, title: 'merge height (√)' }, y2: { field: 'y2' } } },
        { width: side, height: side, data: { values: t.cells },
          encoding: { x: { field: 'a', type: 'nominal', sort: t.order, title: null, scale: { paddingInner: 0, paddingOuter: 0 }, axis: Object.assign({ labelAngle: -45 }, labels) },
            y: { field: 'b', type: 'nominal', sort: t.order, title: null, scale: { paddingInner: 0, paddingOuter: 0 }, axis: labels } },
          layer: [
            { mark: 'rect', encoding: { color: { field: 'd', type: 'quantitative', title: t.value_title || 'distance', scale: { scheme: 'viridis' } },
              tooltip: [{ field: 'a' }, { field: 'b' }, { field: 'd', format: '.4g', title: 'distance' }, { field: 'robust', title: 'robust pair' }] } },
            { transform: [{ filter: 'datum.robust' }], mark: { type: 'rect', filled: false, color: '#ff2d2d', strokeWidth: 2.5 } },
          ] },
      ],
      spacing: 4,
      resolve: { scale: { x: 'independent', y: 'independent' }, legend: { color: 'independent' } },
    });
  }

  // A forest plot: per panel (facet), a point per label with its interval as an error bar; a
  // dashed line at 0 when `zero`. Rows {panel, label, value, ci_low, ci_high, group?}.
  function forestPlot(f) {
    const y = { field: 'label', type: 'nominal', title: null, sort: null };
    const x = { field: 'value', type: 'quantitative', title: f.x_title, scale: f.domain ? { domain: f.domain } : { zero: !!f.zero } };
    const colour = f.rows.some((r) => r.group) ? { field: 'group', type: 'nominal', title: null } : { value: '#1f77b4' };
    const layer = [];
    if (f.zero) layer.push({ mark: { type: 'rule', color: '#999', strokeDash: [4, 3] }, encoding: { x: { datum: 0, type: 'quantitative' } } });
    layer.push({ transform: [{ filter: 'isValid(datum.ci_low) && isValid(datum.ci_high)' }], mark: { type: 'errorbar', ticks: true, color: '#222' },
      encoding: { x: { field: 'ci_low', type: 'quantitative', title: f.x_title }, x2: { field: 'ci_high' }, y: y } });
    layer.push({ mark: { type: 'point', filled: true, size: 60 }, encoding: { x: x, y: y, color: colour,
      tooltip: [{ field: 'panel', title: 'quantity' }, { field: 'label' }, { field: 'value', format: '.4g' },
        { field: 'ci_low', format: '.4g', title: 'CI low' }, { field: 'ci_high', format: '.4g', title: 'CI high' }] } });
    return base({ data: { values: f.rows },
      facet: { field: 'panel', type: 'nominal', sort: f.panels, title: null, header: { labelFontWeight: 'bold', labelLimit: 320 } },
      columns: Math.min(2, f.panels.length),
      spec: { width: 260, height: { step: 20 }, layer: layer },
      resolve: { scale: { x: 'independent', y: 'independent' } } });
  }

  // ROC curves of the collapse predictors on the test split: a line per predictor through its
  // points in the audit's order (ties are diagonal steps, so the points are not re-sorted), the
  // chance diagonal dashed, the majority-class baseline as a black square.
  function rocPlot(r) {
    const axis = (t) => ({ type: 'quantitative', scale: { domain: [0, 1] }, title: t });
    const fpr = Object.assign({ field: 'fpr' }, axis('false-positive rate (non-collapsed runs called collapsed)'));
    const tpr = Object.assign({ field: 'tpr' }, axis('true-positive rate (collapsed runs found)'));
    return base({
      width: 300, height: 300,
      layer: [
        { data: { values: [{ x: 0, y: 0, x2: 1, y2: 1 }] }, mark: { type: 'rule', color: '#999', strokeDash: [4, 3] },
          encoding: { x: Object.assign({ field: 'x' }, axis(fpr.title)), y: Object.assign({ field: 'y' }, axis(tpr.title)), x2: { field: 'x2' }, y2: { field: 'y2' } } },
        { data: { values: r.curves }, mark: { type: 'line', point: { filled: true, size: 36 }, strokeWidth: 2 },
          encoding: { x: fpr, y: tpr, order: { field: 'i', type: 'quantitative' },
            color: { field: 'curve', type: 'nominal', title: 'predictor (test split)' },
            tooltip: [{ field: 'curve', title: 'predictor' }, { field: 'fpr', format: '.3f', title: 'false-positive rate' },
              { field: 'tpr', format: '.3f', title: 'true-positive rate' }] } },
        { data: { values: r.baseline }, mark: { type: 'point', shape: 'square', size: 110, color: '#222', filled: true, opacity: 1 },
          encoding: { x: fpr, y: tpr, shape: { field: 'label', type: 'nominal', title: 'baseline', scale: { range: ['square'] } },
            tooltip: [{ field: 'label', title: 'baseline' }, { field: 'accuracy', format: '.3f', title: 'test accuracy' }] } },
      ],
    });
  }

  // The 4 × 4 transition matrix per model (facets): colour = row-normalised probability.
  function transitions(t) {
    const states = t.states;
    return base({ data: { values: t.rows },
      facet: { field: 'model', type: 'nominal', title: null, header: { labelFontWeight: 'bold', labelLimit: 260 } },
      columns: 3,
      spec: { width: 150, height: 150,
        encoding: { x: { field: 'to', type: 'nominal', sort: states, scale: { domain: states }, title: 'to', axis: { labelAngle: -40 } },
          y: { field: 'from', type: 'nominal', sort: states, scale: { domain: states }, title: 'from' } },
        layer: [
          { mark: 'rect', encoding: { color: { field: 'p', type: 'quantitative', title: 'P(to | from)', scale: { domain: [0, 1], scheme: 'blues' } },
            tooltip: [{ field: 'model' }, { field: 'from' }, { field: 'to' }, { field: 'p', format: '.3f', title: 'probability' }] } },
          { mark: { type: 'text', fontSize: 9 }, encoding: { text: { field: 'label' },
            color: { condition: { test: 'datum.p > 0.6', value: 'white' }, value: '#222' } } },
        ] } });
  }

  // Control audit: the paired Δ (mean over prompts, CI) of each measure per arm, the intervention
  // beside its random-direction and zero-strength controls, one panel per measure.
  const CONTROL_ARMS = ['intervened', 'random', 'zero'];
  const CONTROL_COLOURS = ['#d62728', '#7f7f7f', '#1f77b4'];
  function controlAudit(c) {
    const y = { field: 'label', type: 'nominal', title: null, sort: c.labels };
    const colour = { field: 'arm', type: 'nominal', title: 'arm', scale: { domain: CONTROL_ARMS, range: CONTROL_COLOURS } };
    const xTitle = 'paired Δ vs baseline (95 % CI)';
    return base({
      data: { values: c.rows },
      facet: { field: 'measure', type: 'nominal', sort: c.measures, title: null, header: { labelFontWeight: 'bold' } },
      columns: Math.min(4, c.measures.length),
      spec: { width: 190, height: { step: 22 },
        layer: [
          { mark: { type: 'rule', color: '#999', strokeDash: [4, 3] }, encoding: { x: { datum: 0, type: 'quantitative', title: xTitle } } },
          { transform: [{ filter: 'isValid(datum.ci_low) && isValid(datum.ci_high)' }], mark: { type: 'errorbar', ticks: true },
            encoding: { x: { field: 'ci_low', type: 'quantitative', title: xTitle }, x2: { field: 'ci_high' }, y: y, color: colour } },
          { mark: { type: 'point', filled: true, size: 70 },
            encoding: { x: { field: 'mean', type: 'quantitative', title: xTitle, scale: { zero: true } }, y: y, color: colour,
              tooltip: [{ field: 'result' }, { field: 'arm' }, { field: 'measure' }, { field: 'mean', format: '.4g', title: 'mean Δ' },
                { field: 'ci_low', format: '.4g', title: 'CI low' }, { field: 'ci_high', format: '.4g', title: 'CI high' }, { field: 'n', title: 'prompts' }] } },
        ] },
      resolve: { scale: { x: 'independent' } },
    });
  }

  // Monitor evaluation: accuracy, trigger rate and insertion rate per arm with CIs.
  const MONITOR_ARMS = ['baseline', 'monitor_only', 'guard_only', 'monitor_guard'];
  const MONITOR_COLOURS = ['#7f7f7f', '#1f77b4', '#ff7f0e', '#2ca02c'];
  function monitorArms(m) {
    const y = { field: 'label', type: 'nominal', title: null, sort: m.labels };
    const xTitle = 'share of prompts (95 % CI)';
    return base({
      data: { values: m.rows },
      facet: { column: { field: 'measure', type: 'nominal', sort: m.measures, title: null, header: { labelFontWeight: 'bold' } } },
      spec: { width: 190, height: { step: 22 },
        layer: [
          { mark: 'bar', encoding: { x: { field: 'mean', type: 'quantitative', title: xTitle, scale: { domain: [0, 1] } }, y: y,
            color: { field: 'arm', type: 'nominal', title: 'arm', scale: { domain: MONITOR_ARMS, range: MONITOR_COLOURS } },
            tooltip: [{ field: 'result' }, { field: 'arm' }, { field: 'measure' }, { field: 'mean', format: '.3f' },
              { field: 'ci_low', format: '.3f', title: 'CI low' }, { field: 'ci_high', format: '.3f', title: 'CI high' }, { field: 'n', title: 'prompts' }] } },
          { transform: [{ filter: 'isValid(datum.ci_low) && isValid(datum.ci_high)' }], mark: { type: 'errorbar', ticks: true, color: '#222' },
            encoding: { x: { field: 'ci_low', type: 'quantitative', title: xTitle }, x2: { field: 'ci_high' }, y: y } },
        ] },
    });
  }

  // Every figure of the report, in page order. A figure whose data is absent has spec null and a
  // note saying what is missing; the page and the exporter skip it.
  function figures(d) {
    const a = d.audit || {};
    const out = [];
    const add = (id, section, title, ok, build, missing) =>
      out.push({ id, section, title, spec: ok ? build() : null, note: ok ? null : missing });
    const nRuns = d.runs.filter((r) => r.ratio_norm != null).length;
    add('phase-map', 'phase', 'ratio_norm per model: runs, model median with bootstrap CI, regime bands', nRuns > 0, () => phaseMap(d),
      'No run has a ratio_norm value.');
    add('phase-map-category', 'phase', 'median ratio_norm per model × category (colour = regime of the median)',
      has(d.model_category_stats), () => phaseMapByCategory(d), 'No run has a ratio_norm value.');
    add('trajectories', 'trajectories', 'token series of the chosen runs, output state strip below', d.trajectories && has(d.trajectories.runs),
      () => trajectories(d), 'No per-token series: pass --runs-json (summaries from `phasemap analyze --json`).');
    add('layer-depth', 'layers', 'speed, turning angle and ct_t per layer over depth, per model', d.layer_depth && has(d.layer_depth.rows),
      () => layerDepth(d), d.layer_depth_missing || 'No per-layer values (token_layers of a results DB).');
    add('layer-profiles', 'layers', 'layer-axis summaries per run, per model', d.layer && has(d.layer.rows), () => layerProfiles(d),
      'No layer-axis metrics in the inputs (runs analysed with --no-layer-axis, or none given).');
    add('audit-variance', 'audits', 'variance decomposition (share of variance, with CIs)', a.variance && has(a.variance.rows),
      () => varianceBars(a.variance), 'No variance decomposition: no audit given, or the section could not run (see the notes below).');
    add('audit-topology', 'audits', 'model topology: distance heat map in the dendrogram\'s leaf order, dendrogram above' +
      (a.topology && a.topology.robust_pairs > 0 ? ', robust pairs outlined in red' : ' (no robust pair to outline)'),
      a.topology && has(a.topology.cells), () => topology(a.topology), 'No topology figure: the audit has no topology, or it could not run (see the notes below).');
    add('audit-normalisation', 'audits', 'normalisation sensitivity: η² per mode, agreement (κ) between modes',
      a.normalisation && has(a.normalisation.rows), () => forestPlot(a.normalisation),
      'No comparison between normalisation modes or models (see the notes below).');
    add('audit-cycles', 'audits', 'output-state shares and COLLAPSE cycle rates per model', a.cycles && has(a.cycles.rows),
      () => forestPlot(a.cycles), 'No state rates (see the notes below).');
    add('audit-transitions', 'audits', 'state transitions between consecutive tokens, per model', a.transitions && has(a.transitions.rows),
      () => transitions(a.transitions), 'No transition counts in the panel (see the notes below).');
    add('audit-dwell', 'audits', 'dwell times: mean run length per state', a.dwell && has(a.dwell.rows), () => forestPlot(a.dwell),
      'No dwell times in the panel (see the notes below).');
    add('audit-robustness', 'audits', 'ranking stability: Kendall τ-b between levels of temperature and token budget',
      a.robustness && has(a.robustness.rows), () => forestPlot(a.robustness), 'No pair of levels to compare (see the notes below).');
    add('audit-predictor', 'audits', 'collapse predictor on the test split, beside the majority baseline',
      a.predictor && has(a.predictor.rows), () => forestPlot(a.predictor), 'The collapse predictor could not run (see the notes below).');
    add('audit-roc', 'audits', 'ROC curves of the collapse predictors on the test split, beside the majority baseline and chance',
      a.roc && has(a.roc.curves), () => rocPlot(a.roc), 'No ROC curve: the audit keeps no ROC points (see the notes below).');
    add('audit-variants', 'audits', 'variants: Δ ratio_norm against the base model', a.variants && has(a.variants.rows),
      () => forestPlot(a.variants), 'No declared variant could be compared (see the notes below).');
    add('control-audit', 'audits', 'control audit: paired Δ per arm — intervention, random direction, zero strength',
      d.control && has(d.control.rows), () => controlAudit(d.control),
      'No per-arm summary in the control-audit results (summary_rows, written by `phasemap control-audit`).');
    add('monitor-arms', 'audits', 'monitor and guard: accuracy, trigger and insertion rate per arm',
      d.monitor && has(d.monitor.rows), () => monitorArms(d.monitor),
      'No per-arm summary in the monitor results (summary_rows, written by `phasemap monitor-eval`).');
    return out;
  }

  root.PhasemapReport = { figures, STATES, REGIMES };
})(typeof globalThis !== 'undefined' ? globalThis : this);
