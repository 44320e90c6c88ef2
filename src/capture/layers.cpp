// Layer-spec grammar and resolution to graph tensor names (see include/phasemap/layers.hpp).
#include "phasemap/layers.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

namespace phasemap {
namespace {

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

// Parses a (possibly negative) integer; negative counts from the end: -1 → max_index.
int parse_index(const std::string& s, int max_index, const std::string& item) {
    int v = 0;
    const char* b = s.data();
    const char* e = s.data() + s.size();
    auto [p, ec] = std::from_chars(b, e, v);
    if (s.empty() || ec != std::errc() || p != e)
        throw std::invalid_argument(fmt::format("layer spec item '{}': '{}' is not an integer", item, s));
    if (v < 0) v = max_index + 1 + v;
    if (v < 0 || v > max_index)
        throw std::invalid_argument(fmt::format("layer spec item '{}': index {} out of range (valid 0..{})", item, s,
                                                max_index));
    return v;
}

}  // namespace

std::vector<ResolvedLayer> resolve_layers(const std::string& spec_in, int n_layer) {
    if (n_layer < 1) throw std::invalid_argument("model has no layers");
    const std::string spec = trim(spec_in);
    std::vector<ResolvedLayer> out;
    if (spec.empty() || spec == "none") return out;
    std::unordered_set<std::string> seen;  // labels already added (a linear scan is quadratic for hf:all)

    auto add = [&](bool hf, int i) {
        ResolvedLayer r;
        if (hf) {
            r.label = fmt::format("hf:{}", i);
            r.hf_index = i;
            r.tensor = i == 0 ? "embd" : i == n_layer ? "result_norm" : fmt::format("l_out-{}", i - 1);
        } else {
            r.label = fmt::format("block:{}", i);
            r.hf_index = i < n_layer - 1 ? i + 1 : -1;
            r.tensor = fmt::format("l_out-{}", i);
        }
        if (seen.insert(r.label).second) out.push_back(std::move(r));
    };

    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        if (comma == std::string::npos) comma = spec.size();
        const std::string item = trim(std::string_view(spec).substr(pos, comma - pos));
        pos = comma + 1;
        if (item.empty()) throw std::invalid_argument(fmt::format("layer spec '{}': empty item", spec));
        if (item == "all") { for (int i = 0; i <= n_layer; ++i) add(true, i); continue; }
        const size_t colon = item.find(':');
        if (colon == std::string::npos)
            throw std::invalid_argument(fmt::format("layer spec item '{}': expected hf:SEL or block:SEL", item));
        const std::string kind = item.substr(0, colon);
        const std::string sel = item.substr(colon + 1);
        bool hf;
        if (kind == "hf") hf = true;
        else if (kind == "block") hf = false;
        else throw std::invalid_argument(fmt::format("layer spec item '{}': unknown kind '{}' (use hf or block)", item, kind));
        const int max_index = hf ? n_layer : n_layer - 1;
        if (sel == "all") { for (int i = 0; i <= max_index; ++i) add(hf, i); continue; }
        if (sel == "last") { add(hf, max_index); continue; }
        // A range A-B (A, B ≥ 0); a leading '-' is a negative single index.
        const size_t dash = sel.find('-', 1);
        if (dash != std::string::npos && sel[0] != '-') {
            const int a = parse_index(sel.substr(0, dash), max_index, item);
            const int b = parse_index(sel.substr(dash + 1), max_index, item);
            if (a > b) throw std::invalid_argument(fmt::format("layer spec item '{}': empty range {}>{}", item, a, b));
            for (int i = a; i <= b; ++i) add(hf, i);
            continue;
        }
        add(hf, parse_index(sel, max_index, item));
    }
    if (out.empty()) throw std::invalid_argument(fmt::format("layer spec '{}' selects no layer", spec));
    return out;
}

}  // namespace phasemap
