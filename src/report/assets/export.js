// Node exporter behind `phasemap report --svg DIR --png DIR`: renders each figure of the report
// data with vega's own SVG renderer (headless vega.View.toSVG after vegaLite.compile), and the
// PNG from that SVG with rsvg-convert. Usage (run by phasemap from a temporary directory that
// holds this file, vega.min.js, vega-lite.min.js and report.js):
//   node export.js DATA.json SVG_DIR [PNG_DIR] [--list=FILE]
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { execFileSync } = require('child_process');

const here = __dirname;
// The browser bundles are UMD: evaluated as scripts they define globalThis.vega / vegaLite.
for (const f of ['vega.min.js', 'vega-lite.min.js', 'report.js'])
  vm.runInThisContext(fs.readFileSync(path.join(here, f), 'utf8'), { filename: f });
const vega = globalThis.vega, vegaLite = globalThis.vegaLite;

async function main() {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const list = process.argv.slice(2).find((a) => a.startsWith('--list='));
  const [dataFile, svgDir, pngDir] = args;
  const data = JSON.parse(fs.readFileSync(dataFile, 'utf8'));
  const written = [];
  for (const fig of globalThis.PhasemapReport.figures(data)) {
    if (!fig.spec) continue;
    const spec = vegaLite.compile(fig.spec).spec;
    const view = new vega.View(vega.parse(spec), { renderer: 'none' });
    const svg = await view.toSVG();
    view.finalize();
    if (!/<path|<rect|<line|<circle/.test(svg)) throw new Error('figure ' + fig.id + ' rendered no marks');
    const svgPath = path.join(svgDir, fig.id + '.svg');
    fs.writeFileSync(svgPath, svg);
    if (pngDir) {
      try {
        execFileSync('rsvg-convert', ['--zoom', '2', '--background-color', 'white', '-o', path.join(pngDir, fig.id + '.png'), svgPath]);
      } catch (e) {
        throw new Error('rsvg-convert failed for ' + fig.id + ' (Debian package librsvg2-bin): ' + e.message);
      }
    }
    written.push(fig.id);
  }
  if (list) fs.writeFileSync(list.slice('--list='.length), written.join('\n') + '\n');
}

main().catch((e) => { console.error('phasemap report export: ' + (e && e.message ? e.message : e)); process.exit(1); });
