// Grid size and token / disk estimates from the manifest and the models' GGUF headers.
#include "phasemap/panel/plan.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include "phasemap/gguf/metadata.hpp"

#include <map>
#include <stdexcept>

#include "phasemap/capture/layers.hpp"
#include "phasemap/store/store.hpp"

namespace phasemap::panel {

namespace {

std::string human(int64_t b) {
    const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = double(b);
    int i = 0;
    while (x >= 1024 && i < 4) x /= 1024, ++i;
    return i == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", x, u[i]);
}

}  // namespace

PlanEstimate plan_panel(const Manifest& m) {
    PlanEstimate p;
    p.prompts = int64_t(m.prompts.size());
    for (const auto& me : m.models) {
        ModelPlan mp;
        mp.label = me.label;
        gguf::Metadata md;
        try {
            md = gguf::read_metadata(me.path);
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("model '{}': {}", me.label, e.what()));
        }
        mp.architecture = md.architecture;
        mp.n_layer = md.n_layer;
        mp.n_embd = md.n_embd;
        try {
            mp.captured_layers = int64_t(resolve_layers(me.gen.layers, int(mp.n_layer)).size());
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("model '{}': layers '{}': {}", me.label, me.gen.layers, e.what()));
        }
        // Saturating arithmetic: estimates of a huge grid print as huge, never wrap around.
        auto mul = [](int64_t a, int64_t b) { return a && b > INT64_MAX / a ? INT64_MAX : a * b; };
        auto add = [](int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; };
        const int64_t per_prompt = mul(int64_t(me.gen.temperatures.size()), int64_t(me.gen.seeds.size()));
        int64_t budget = 0;
        for (int64_t n : me.gen.n_predict) budget = add(budget, n);
        mp.generations = mul(mul(p.prompts, per_prompt), int64_t(me.gen.n_predict.size()));
        mp.runs = mul(mp.generations, int64_t(m.norms.size()));
        mp.max_tokens = mul(mul(p.prompts, per_prompt), budget);
        p.runs = add(p.runs, mp.runs);
        p.generations = add(p.generations, mp.generations);
        p.max_tokens = add(p.max_tokens, mp.max_tokens);
        // Token rows: run id, ids, text, ~ per-token metric columns of 8 bytes (uncompressed bound).
        const int64_t token_row = 64 + 8 * int64_t(store::token_metric_columns().size());
        const int64_t run_row = 1024 + 8 * int64_t(store::run_metric_columns().size());
        p.db_bytes = add(p.db_bytes, add(mul(mul(mp.max_tokens, int64_t(m.norms.size())), token_row), mul(mp.runs, run_row)));
        if (m.save_states)
            p.states_bytes = add(p.states_bytes, mul(mp.max_tokens, add(mul(mul(mp.captured_layers, mp.n_embd), 4), 64)));
        p.models.push_back(mp);
    }
    return p;
}

std::string format_plan(const Manifest& m, const PlanEstimate& p) {
    std::string s = fmt::format("panel '{}' ({})\n", m.name, m.file.string());
    std::map<std::string, int64_t> cats;
    for (const auto& pr : m.prompts) ++cats[pr.category];
    s += fmt::format("prompts: {} in {} categories (", p.prompts, cats.size());
    bool first = true;
    for (const auto& [c, n] : cats) s += fmt::format("{}{} {}", first ? "" : ", ", c, n), first = false;
    s += fmt::format(")\nnormalisations: {}\n", fmt::join(m.norms, ", "));
    s += fmt::format("{:<20} {:>8} {:>8} {:>12} {:>12} {:>8}\n", "model", "layers", "d", "generations", "runs", "tokens≤");
    for (const auto& mp : p.models)
        s += fmt::format("{:<20} {:>8} {:>8} {:>12} {:>12} {:>8}\n", mp.label, fmt::format("{}/{}", mp.captured_layers, mp.n_layer + 1),
                         mp.n_embd, mp.generations, mp.runs, mp.max_tokens);
    s += fmt::format("grid: {} runs ({} generations), at most {} generated tokens\n", p.runs, p.generations, p.max_tokens);
    s += fmt::format("disk: results DB ≤ {}", human(p.db_bytes));
    if (m.save_states) s += fmt::format(", raw states (NPZ) ≤ {}", human(p.states_bytes));
    s += "\n";
    for (const auto& w : design_warnings(m)) s += "warning: " + w + "\n";
    return s;
}

std::vector<std::string> design_warnings(const Manifest& m) {
    std::vector<std::string> out;
    // Models with the same offending settings share one line.
    std::map<std::string, std::vector<std::string>> seeds, budgets;
    for (const auto& me : m.models) {
        bool greedy = false;
        for (double t : me.gen.temperatures) greedy = greedy || t == 0;
        if (!greedy) continue;
        if (me.gen.seeds.size() > 1)
            seeds[fmt::format("{} seeds ({})", me.gen.seeds.size(), fmt::join(me.gen.seeds, ", "))].push_back(me.label);
        if (me.gen.n_predict.size() > 1)
            budgets[fmt::format("token budgets {}", fmt::join(me.gen.n_predict, ", "))].push_back(me.label);
    }
    for (const auto& [what, models] : seeds)
        out.push_back(fmt::format("temperature 0 is crossed with {} for model(s) {}: greedy decoding ignores the seed, "
                                  "so these runs repeat one generation per prompt and budget (the audit counts it once)",
                                  what, fmt::join(models, ", ")));
    for (const auto& [what, models] : budgets)
        out.push_back(fmt::format("{} at temperature 0 for model(s) {}: the shorter budgets are prefixes of the longest "
                                  "greedy generation (the audit analyses them as one run at several lengths)",
                                  what, fmt::join(models, ", ")));
    return out;
}

}  // namespace phasemap::panel
