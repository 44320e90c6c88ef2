// Small helpers shared by the CLI verbs: reading prompt files, printing token text.
#pragma once
#include <string>
#include <vector>

namespace phasemap::cli {

// The whole file; UserError "cannot read <what> '<path>'" when it cannot be opened.
std::string read_text_file(const std::string& path, const char* what);
// One prompt per non-empty line (CR-LF tolerated); UserError when the file is unreadable or empty.
std::vector<std::string> read_prompt_lines(const std::string& path);
// Token text for one-line display: newline, tab and other control bytes escaped.
std::string printable(const std::string& s);

}  // namespace phasemap::cli
