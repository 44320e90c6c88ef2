#include "cli_util.hpp"

#include <fmt/core.h>

#include <fstream>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/io/files.hpp"
#include "verb.hpp"

namespace phasemap::cli {

std::string read_text_file(const std::string& path, const char* what) { return io::read_input_file(path, what); }

void check_output(const std::string& out, const std::vector<std::string>& inputs, const char* option) {
    std::vector<std::filesystem::path> in(inputs.begin(), inputs.end());
    io::check_output_path(out, in, option);
}

std::string read_prompt_arg(const std::string& spec) {
    if (spec.empty() || spec[0] != '@') return spec;
    std::string text = read_text_file(spec.substr(1), "prompt file");
    if (!text.empty() && text.back() == '\n') {
        text.pop_back();
        if (!text.empty() && text.back() == '\r') text.pop_back();
    }
    return text;
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

int checked_threads(int threads) {
    return threads > 0 ? threads : capture::default_threads();
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
