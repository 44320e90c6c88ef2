// Prompt sets: the built-in panels (src/panel/panels/*.csv, compiled in) and user CSV files with
// `category,prompt` rows (docs/panels.md).
//
// Lifetimes: builtin_panel_csv returns a reference to text compiled into the binary (valid for the process).
// Throws: std::invalid_argument (unknown panel, bad CSV naming its file).
#pragma once
#include <string>
#include <vector>

#include "phasemap/panel/manifest.hpp"

namespace phasemap::panel {

// Names of the built-in panels, sorted ("general", "stories").
std::vector<std::string> builtin_panel_names();
// The CSV text of a built-in panel; throws std::invalid_argument for an unknown name.
const std::string& builtin_panel_csv(const std::string& name);

// Parses `category,prompt` rows. An optional first row `category,prompt` is a header; empty
// lines and lines starting with '#' are skipped. The category ends at the first comma; the
// prompt is the rest of the line, or a double-quoted field ("" for a quote, may span lines).
// Prompt indices count per category in file order. Throws std::invalid_argument naming
// source:line for a row without a comma, an empty category or prompt, or an unterminated quote.
std::vector<Prompt> parse_prompt_csv(const std::string& text, const std::string& source);

}  // namespace phasemap::panel
