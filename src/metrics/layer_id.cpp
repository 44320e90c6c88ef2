// The layer type shared by every module (include/phasemap/metrics/layer_id.hpp).
#include "phasemap/metrics/layer_id.hpp"

#include "phasemap/metrics/analyze.hpp"

#include <cctype>
#include <charconv>
#include <stdexcept>

namespace phasemap::metrics {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// A non-negative decimal integer (digits only), or nullopt.
std::optional<int> index_of(std::string_view s) {
    if (s.empty() || s.front() == '-' || s.front() == '+') return std::nullopt;
    int v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::string_view to_string(LayerKind k) {
    switch (k) {
        case LayerKind::hf: return "hf";
        case LayerKind::block: return "block";
        case LayerKind::resid_mid: return "resid_mid";
        case LayerKind::attn_out: return "attn_out";
        case LayerKind::ffn_out: return "ffn_out";
        case LayerKind::tensor: return "tensor";
    }
    return "hf";
}

std::optional<LayerId> LayerId::try_parse(std::string_view text) noexcept {
    const std::string_view s = trim(text);
    if (auto n = index_of(s)) return LayerId{LayerKind::hf, *n, {}};
    const size_t colon = s.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    const std::string_view kind = s.substr(0, colon), sel = s.substr(colon + 1);
    if (kind == "tensor") {
        const size_t dash = sel.rfind('-');
        if (dash == std::string_view::npos || dash == 0) return std::nullopt;
        const std::string_view name = sel.substr(0, dash);
        for (char ch : name)
            if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.')) return std::nullopt;
        const auto n = index_of(sel.substr(dash + 1));
        if (!n) return std::nullopt;
        try {
            return LayerId{LayerKind::tensor, *n, std::string(name)};
        } catch (...) {
            return std::nullopt;
        }
    }
    for (LayerKind k : {LayerKind::hf, LayerKind::block, LayerKind::resid_mid, LayerKind::attn_out, LayerKind::ffn_out})
        if (kind == to_string(k)) {
            const auto n = index_of(sel);
            if (!n) return std::nullopt;
            return LayerId{k, *n, {}};
        }
    return std::nullopt;
}

LayerId LayerId::parse(std::string_view text) {
    if (auto id = try_parse(text)) return *id;
    throw std::invalid_argument("'" + std::string(text) +
                                "' is not a layer (hf:N, block:N, resid_mid:N, attn_out:N, ffn_out:N, tensor:NAME-N, or an "
                                "integer N = hf:N)");
}

std::string LayerId::label() const {
    if (kind == LayerKind::tensor) return "tensor:" + tensor + "-" + std::to_string(index);
    return std::string(to_string(kind)) + ":" + std::to_string(index);
}

double LayerId::depth(int n_layer) const {
    const double i = index;
    switch (kind) {
        case LayerKind::hf: return index == n_layer ? i + 0.5 : i;
        case LayerKind::block: return i + 1;
        case LayerKind::attn_out: return i + 0.25;
        case LayerKind::resid_mid: return i + 0.5;
        case LayerKind::ffn_out: return i + 0.75;
        case LayerKind::tensor: return i + 0.5;
    }
    return i;
}

std::size_t resolve_layer_choice(std::string_view choice, std::span<const std::string> captured) {
    return resolve_layer_index(parse_layer_choice(choice, captured), captured.size());
}

}  // namespace phasemap::metrics
