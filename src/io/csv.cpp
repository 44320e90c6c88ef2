// The one CSV reader (include/phasemap/io/csv.hpp).
#include "phasemap/io/csv.hpp"

#include <fmt/core.h>

#include <stdexcept>

namespace phasemap::io {

std::vector<CsvRow> parse_csv(std::string_view text, std::string_view source, const CsvOptions& opt) {
    std::vector<CsvRow> out;
    size_t i = 0, line = 1;
    auto fail = [&](size_t ln, const std::string& msg) { throw std::invalid_argument(fmt::format("{}:{}: {}", source, ln, msg)); };
    auto eol_at = [&](size_t p) { return p >= text.size() || text[p] == '\n' || (text[p] == '\r' && (p + 1 >= text.size() || text[p + 1] == '\n')); };
    while (i < text.size()) {
        size_t e = text.find('\n', i);
        if (e == std::string_view::npos) e = text.size();
        std::string_view first_line = text.substr(i, e - i);
        if (!first_line.empty() && first_line.back() == '\r') first_line.remove_suffix(1);
        if (first_line.find_first_not_of(" \t") == std::string_view::npos || (opt.comments && first_line.front() == '#')) {
            i = e + 1;
            ++line;
            continue;
        }
        CsvRow row;
        row.line = line;
        size_t p = i;
        for (;;) {
            std::string field;
            const bool last = opt.max_fields > 0 && row.fields.size() + 1 == opt.max_fields;
            const bool verbatim_first = row.fields.empty() && !opt.quoted_first;
            if (!verbatim_first && p < text.size() && text[p] == '"') {
                ++p;
                for (;;) {
                    if (p >= text.size()) fail(row.line, "unterminated quoted field");
                    if (text[p] == '"') {
                        if (p + 1 < text.size() && text[p + 1] == '"') { field.push_back('"'); p += 2; continue; }
                        ++p;
                        break;
                    }
                    if (text[p] == '\n') ++line;
                    field.push_back(text[p++]);
                }
                if (!eol_at(p) && (last || text[p] != ',')) fail(row.line, "unexpected text after the closing quote of a field");
            } else if (last) {
                while (!eol_at(p)) field.push_back(text[p++]);
            } else {
                while (!eol_at(p) && text[p] != ',') {
                    if (text[p] != '\r') field.push_back(text[p]);
                    ++p;
                }
            }
            row.fields.push_back(std::move(field));
            if (eol_at(p)) break;
            ++p;  // the comma
        }
        if (p < text.size() && text[p] == '\r') ++p;
        i = p + 1;  // past the '\n' (or the end)
        ++line;
        out.push_back(std::move(row));
    }
    return out;
}

}  // namespace phasemap::io
