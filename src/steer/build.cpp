// Control vectors from contrastive prompts (include/phasemap/steer/eval.hpp).
#include <fmt/core.h>

#include <stdexcept>

#include "phasemap/steer/eval.hpp"

namespace phasemap::steer {

ControlVector build_control_vector(const std::shared_ptr<capture::Model>& model, const BuildOptions& opt) {
    const capture::ModelInfo& mi = model->info();
    if (opt.pos.empty()) throw std::invalid_argument("no contrastive prompt given");
    if (opt.pos.size() != opt.neg.size())
        throw std::invalid_argument(fmt::format("{} positive but {} negative prompts: they pair by line", opt.pos.size(), opt.neg.size()));
    if (mi.n_layer < 2) throw std::invalid_argument("the model has a single block: llama.cpp control vectors start at block 1");
    std::vector<int> blocks = opt.blocks;
    if (blocks.empty())
        for (int i = 1; i < mi.n_layer; ++i) blocks.push_back(i);
    std::string spec;
    for (int b : blocks) {
        if (b < 1 || b >= mi.n_layer)
            throw std::invalid_argument(fmt::format("block:{} is out of range: control vectors apply to blocks 1..{}", b, mi.n_layer - 1));
        spec += fmt::format("{}block:{}", spec.empty() ? "" : ",", b);
    }
    capture::EngineOptions eo;
    eo.layers = spec;
    eo.n_threads = opt.n_threads;
    capture::Engine engine(model, eo);
    const auto& layers = engine.layers();  // in spec order, duplicates removed
    const size_t d = size_t(mi.n_embd), n = opt.pos.size(), Lp = layers.size();
    std::vector<std::vector<float>> pos(Lp), neg(Lp);
    auto states_of = [&](const std::string& text, std::vector<std::vector<float>>& dst) {
        std::vector<int32_t> ids;
        if (opt.chat) ids = model->tokenize(model->apply_chat_template(text), true, true);
        else ids = model->tokenize(text, true, false);
        if (ids.empty()) throw std::invalid_argument(fmt::format("prompt '{}' tokenises to no tokens", text));
        const std::vector<float> st = engine.prefill_states(ids);
        for (size_t l = 0; l < Lp; ++l) dst[l].insert(dst[l].end(), st.begin() + std::ptrdiff_t(l * d), st.begin() + std::ptrdiff_t((l + 1) * d));
    };
    for (size_t i = 0; i < n; ++i) {
        states_of(opt.pos[i], pos);
        states_of(opt.neg[i], neg);
    }
    ControlVector cv;
    cv.n_embd = mi.n_embd;
    cv.model_hint = mi.architecture;
    cv.model_n_layer = mi.n_layer;
    cv.model_sha256 = mi.sha256;
    cv.method = method_name(opt.method);
    for (size_t l = 0; l < Lp; ++l) {
        const int b = std::stoi(layers[l].tensor.substr(6));  // "l_out-N"
        cv.directions[b] = build_direction(pos[l], neg[l], n, d, opt.method);
    }
    return cv;
}

std::vector<capture::Intervention> control_vector_interventions(const ControlVector& cv, float scale) {
    std::vector<capture::Intervention> out;
    for (const auto& [b, v] : cv.directions) {
        capture::Intervention iv;
        iv.op = capture::InterventionOp::add;
        iv.block = b;
        iv.vec = v;
        iv.strength = scale;
        iv.prefill = true;
        iv.label = fmt::format("direction.{}", b);
        out.push_back(std::move(iv));
    }
    return out;
}

}  // namespace phasemap::steer
