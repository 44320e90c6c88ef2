// The files the report inlines, embedded into the binary at build time (assets.cpp).
#pragma once
#include <string_view>

namespace phasemap::report::assets {

std::string_view vega();        // vega.min.js (pinned npm bundle)
std::string_view vega_lite();   // vega-lite.min.js
std::string_view vega_embed();  // vega-embed.min.js
std::string_view template_html();  // src/report/assets/template.html
std::string_view report_js();      // src/report/assets/report.js
std::string_view export_js();      // src/report/assets/export.js (Node exporter for --svg / --png)

}  // namespace phasemap::report::assets
