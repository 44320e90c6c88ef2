#include "cli_util.hpp"

#include <fmt/core.h>

#include <fstream>
#include <sstream>

#include "verb.hpp"

namespace phasemap::cli {

std::string read_text_file(const std::string& path, const char* what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw UserError(fmt::format("cannot read {} '{}'", what, path));
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string> read_prompt_lines(const std::string& path) {
    std::istringstream in(read_text_file(path, "prompt file"));
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) out.push_back(line);
    }
    if (out.empty()) throw UserError(fmt::format("prompt file '{}' holds no prompt", path));
    return out;
}

std::string printable(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '\n') o += "\\n";
        else if (c == '\t') o += "\\t";
        else if (c < 0x20 || c == 0x7f) o += fmt::format("\\x{:02x}", c);
        else o.push_back(char(c));
    }
    return o;
}

}  // namespace phasemap::cli
