// Layer-spec grammar and resolution to graph tensor names (see include/phasemap/capture/layers.hpp).
#include "phasemap/capture/layers.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
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
            r.id = {metrics::LayerKind::hf, i, {}};
            r.hf_index = i;
            r.tensor = i == 0 ? "embd" : i == n_layer ? "result_norm" : fmt::format("l_out-{}", i - 1);
        } else {
            r.id = {metrics::LayerKind::block, i, {}};
            r.hf_index = i < n_layer - 1 ? i + 1 : -1;
            r.tensor = fmt::format("l_out-{}", i);
        }
        r.label = r.id.label();
        if (seen.insert(r.label).second) out.push_back(std::move(r));
    };
    enum class Comp { resid_mid, attn_out, ffn_out };
    auto add_comp = [&](Comp c, int i) {
        ResolvedLayer r;
        r.block = i;
        switch (c) {
            case Comp::resid_mid: r.id = {metrics::LayerKind::resid_mid, i, {}}; r.tensor = fmt::format("ffn_inp-{}", i); break;
            case Comp::attn_out: r.id = {metrics::LayerKind::attn_out, i, {}}; r.tensor = fmt::format("attn_out-{}", i); break;
            case Comp::ffn_out:
                r.id = {metrics::LayerKind::ffn_out, i, {}};
                r.tensor = fmt::format("ffn_out-{}", i);
                r.alternatives = {fmt::format("ffn_moe_out-{}", i)};
                break;
        }
        r.label = r.id.label();
        if (seen.insert(r.label).second) out.push_back(std::move(r));
    };

    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        if (comma == std::string::npos) comma = spec.size();
        const std::string item = trim(std::string_view(spec).substr(pos, comma - pos));
        pos = comma + 1;
        if (item.empty()) throw std::invalid_argument(fmt::format("layer spec '{}': empty item", spec));
        // A bare integer N is hf:N, as everywhere a layer is chosen (metrics/layer_id.hpp).
        if (std::all_of(item.begin(), item.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
            add(true, parse_index(item, n_layer, item));
            continue;
        }
        if (item == "all") { for (int i = 0; i <= n_layer; ++i) add(true, i); continue; }
        const size_t colon = item.find(':');
        if (colon == std::string::npos)
            throw std::invalid_argument(fmt::format("layer spec item '{}': expected hf:SEL or block:SEL (or resid_mid, attn_out, ffn_out:SEL, tensor:NAME-N)", item));
        const std::string kind = item.substr(0, colon);
        const std::string sel = item.substr(colon + 1);
        if (kind == "tensor") {
            // NAME-N: the last '-' separates the block index (a name may itself contain '-').
            const size_t dash = sel.rfind('-');
            if (dash == std::string::npos || dash == 0 || dash + 1 == sel.size())
                throw std::invalid_argument(fmt::format("layer spec item '{}': expected tensor:NAME-N (e.g. tensor:ffn_norm-3)", item));
            const std::string name = sel.substr(0, dash);
            for (char ch : name)
                if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.'))
                    throw std::invalid_argument(fmt::format("layer spec item '{}': tensor name '{}' may hold only letters, digits, '_' and '.'", item, name));
            const int i = parse_index(sel.substr(dash + 1), n_layer - 1, item);
            ResolvedLayer r;
            r.block = i;
            r.id = {metrics::LayerKind::tensor, i, name};
            r.label = r.id.label();
            r.tensor = fmt::format("{}-{}", name, i);
            if (seen.insert(r.label).second) out.push_back(std::move(r));
            continue;
        }
        bool hf = false;
        std::optional<Comp> comp;
        if (kind == "hf") hf = true;
        else if (kind == "block") hf = false;
        else if (kind == "resid_mid") comp = Comp::resid_mid;
        else if (kind == "attn_out") comp = Comp::attn_out;
        else if (kind == "ffn_out") comp = Comp::ffn_out;
        else
            throw std::invalid_argument(fmt::format(
                "layer spec item '{}': unknown kind '{}' (use hf, block, resid_mid, attn_out, ffn_out or tensor)", item, kind));
        const int max_index = hf ? n_layer : n_layer - 1;
        auto put = [&](int i) {
            if (comp) add_comp(*comp, i);
            else add(hf, i);
        };
        if (sel == "all") { for (int i = 0; i <= max_index; ++i) put(i); continue; }
        if (sel == "last") { put(max_index); continue; }
        // A range A-B (A, B ≥ 0); a leading '-' is a negative single index.
        const size_t dash = sel.find('-', 1);
        if (dash != std::string::npos && sel[0] != '-') {
            const int a = parse_index(sel.substr(0, dash), max_index, item);
            const int b = parse_index(sel.substr(dash + 1), max_index, item);
            if (a > b) throw std::invalid_argument(fmt::format("layer spec item '{}': empty range {}>{}", item, a, b));
            for (int i = a; i <= b; ++i) put(i);
            continue;
        }
        put(parse_index(sel, max_index, item));
    }
    if (out.empty()) throw std::invalid_argument(fmt::format("layer spec '{}' selects no layer", spec));
    return out;
}

}  // namespace phasemap
