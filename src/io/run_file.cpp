#include "phasemap/io/run_file.hpp"

#include <fmt/core.h>
#include "phasemap/io/files.hpp"
#include <limits>

#include <cmath>
#include <cstring>
#include <fmt/ranges.h>
#include <stdexcept>

#include "phasemap/io/npz.hpp"

namespace phasemap::io {

RunData load_run_npz(const std::filesystem::path& path) {
    NpzReader z(path);
    const std::string where = fmt::format("'{}'", path.string());
    RunData r;
    r.path = path;
    r.sha256 = file_sha256(path);
    if (!z.has("hidden_states"))
        throw std::runtime_error(fmt::format("{} has no 'hidden_states' array (members: {})", where, fmt::format("{}", fmt::join(z.members(), ", "))));
    {
        NpyArray hs = z.array("hidden_states");
        if (hs.shape.size() != 3)
            throw std::runtime_error(fmt::format("{}: hidden_states has rank {}, expected 3 ([tokens, layers, dim])", where, hs.shape.size()));
        r.tokens = hs.shape[0];
        r.layers = hs.shape[1];
        r.dim = hs.shape[2];
        // An empty array leaves the other dimensions unbacked by data (a 100-byte file could
        // declare 10^12 layers and make the per-layer / per-token vectors below exhaust memory).
        if (r.tokens == 0 || r.layers == 0 || r.dim == 0)
            throw std::runtime_error(fmt::format("{}: hidden_states is empty (shape [{}, {}, {}])", where, r.tokens, r.layers, r.dim));
        // float64 states beyond float32's range would become inf and their tokens be dropped as
        // non-finite: refuse them with the reason instead.
        if (hs.dtype == "<f8") {
            for (size_t i = 0; i < hs.size(); ++i) {
                double v;
                std::memcpy(&v, hs.data.data() + 8 * i, 8);
                if (std::isfinite(v) && std::fabs(v) > double(std::numeric_limits<float>::max()))
                    throw std::runtime_error(fmt::format("{}: hidden_states (float64) holds {:g}, beyond float32's range, which "
                                                         "the analysis computes in; rescale the states", where, v));
            }
        }
        try {
            r.states = hs.as_float();
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("{}: hidden_states: {}", where, e.what()));
        }
    }
    if (z.has("metadata.json")) {
        r.metadata = parse_json(z.bytes("metadata.json"), fmt::format("{}: metadata.json", where));
        r.phasemap_layout = r.metadata.is_object() && r.metadata.contains("phasemap_version");
    }
    if (r.metadata.is_object() && r.metadata.contains("layers") && r.metadata["layers"].is_array() &&
        r.metadata["layers"].size() == r.layers) {
        for (const auto& l : r.metadata["layers"])
            r.layer_names.push_back(l.is_object() && l.contains("label") && l["label"].is_string() ? l["label"].get<std::string>() : std::string());
    } else {
        for (size_t l = 0; l < r.layers; ++l) r.layer_names.push_back(fmt::format("layer[{}]", l));
    }
    if (r.metadata.is_object() && r.metadata.contains("tokens") && r.metadata["tokens"].is_array())
        for (const auto& t : r.metadata["tokens"]) r.token_texts.push_back(t.is_string() ? t.get<std::string>() : "");
    if (z.has("token_ids")) {
        NpyArray ids = z.array("token_ids");
        if (ids.shape.size() != 1 || ids.shape[0] != r.tokens)
            throw std::runtime_error(fmt::format("{}: token_ids has shape [{}], expected [{}]", where,
                                                 fmt::format("{}", fmt::join(ids.shape, ", ")), r.tokens));
        try { r.token_ids = ids.as_int64(); }
        catch (const std::exception& e) { throw std::runtime_error(fmt::format("{}: token_ids: {}", where, e.what())); }
    }
    // Per-token probability stats: stored arrays (phasemap), else computed from the logits.
    if (z.has("entropy") && z.has("top1") && z.has("margin")) {
        auto get = [&](const char* k) {
            NpyArray a = z.array(k);
            if (a.shape.size() != 1 || a.shape[0] != r.tokens)
                throw std::runtime_error(fmt::format("{}: {} has {} values, expected {}", where, k, a.size(), r.tokens));
            std::vector<double> v(a.size());
            if (a.dtype == "<f8") { if (!v.empty()) std::memcpy(v.data(), a.data.data(), v.size() * sizeof(double)); }
            else { auto f = a.as_float(); std::copy(f.begin(), f.end(), v.begin()); }
            return v;
        };
        const auto e = get("entropy"), t1 = get("top1"), m = get("margin");
        const auto s = z.has("surprisal") ? get("surprisal") : std::vector<double>(r.tokens, std::nan(""));
        r.stats.resize(r.tokens);
        for (size_t t = 0; t < r.tokens; ++t) {
            r.stats[t].entropy = e[t];
            r.stats[t].top1 = t1[t];
            r.stats[t].margin = m[t];
            r.stats[t].surprisal = s[t];
            r.stats[t].top1_id = -1;
        }
        r.stats_source = "stored";
    }
    if (z.has("logits")) {
        NpyArray lg = z.array("logits");
        if (lg.shape.size() != 2 || lg.shape[0] != r.tokens)
            throw std::runtime_error(fmt::format("{}: logits has shape [{}], expected [{}, vocab]", where,
                                                 fmt::format("{}", fmt::join(lg.shape, ", ")), r.tokens));
        r.logits_shape = lg.shape;
        if (r.stats.empty()) {
            std::vector<float> f;
            try { f = lg.as_float(); }
            catch (const std::exception& e) { throw std::runtime_error(fmt::format("{}: logits: {}", where, e.what())); }
            const size_t V = lg.shape[1];
            r.stats.resize(r.tokens);
            for (size_t t = 0; t < r.tokens; ++t)
                r.stats[t] = metrics::token_prob_stats(std::span<const float>(f.data() + t * V, V),
                                                       r.token_ids.empty() ? -1 : int32_t(r.token_ids[t]));
            r.stats_source = "logits";
        }
    }
    if (z.has("routing_experts") || z.has("routing_weights")) {
        if (!z.has("routing_experts") || !z.has("routing_weights"))
            throw std::runtime_error(fmt::format("{}: has only one of routing_experts / routing_weights", where));
        const nlohmann::json meta = r.metadata.is_object() ? r.metadata.value("routing", nlohmann::json()) : nlohmann::json();
        if (!meta.is_object() || !meta.contains("blocks") || !meta["blocks"].is_array() || !meta.contains("n_expert") ||
            !meta["n_expert"].is_number_unsigned())
            throw std::runtime_error(fmt::format("{}: routing members without metadata \"routing\" (blocks, n_expert)", where));
        for (const auto& b : meta["blocks"]) {
            if (!b.is_number_integer()) throw std::runtime_error(fmt::format("{}: metadata routing.blocks holds a non-integer", where));
            r.routing_blocks.push_back(b.get<int>());
        }
        r.routing_n_expert = meta["n_expert"].get<size_t>();
        NpyArray ex = z.array("routing_experts"), wt = z.array("routing_weights");
        if (ex.shape.size() != 3 || ex.shape[0] != r.tokens || ex.shape[1] != r.routing_blocks.size() || wt.shape != ex.shape)
            throw std::runtime_error(fmt::format("{}: routing_experts [{}] / routing_weights [{}], expected [{}, {}, k]", where,
                                                 fmt::join(ex.shape, ", "), fmt::join(wt.shape, ", "), r.tokens, r.routing_blocks.size()));
        r.routing_k = ex.shape[2];
        try {
            const std::vector<int64_t> e = ex.as_int64();
            r.routing_experts.reserve(e.size());
            for (int64_t v : e) {
                if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
                    throw std::runtime_error(fmt::format("expert id {} out of range", v));
                r.routing_experts.push_back(int32_t(v));
            }
            r.routing_weights = wt.as_float();
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("{}: routing: {}", where, e.what()));
        }
    }
    return r;
}

}  // namespace phasemap::io
