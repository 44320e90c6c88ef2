// Section 6: COLLAPSE–RIVALRY cycles per model, aggregated from the run-level rates.
#include <algorithm>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

namespace {

// Ratio estimator Σ w·x / Σ w with a bootstrap over runs; plain mean when no weights are known.
Estimate weighted_rate(const std::vector<double>& x, const std::vector<double>& w, const Options& o,
                       std::mt19937_64& rng) {
    Estimate e;
    e.n = x.size();
    if (x.empty()) return e;
    auto stat = [&](const std::vector<std::size_t>* idx) {
        double sw = 0, swx = 0;
        for (std::size_t k = 0; k < x.size(); ++k) {
            const std::size_t i = idx ? (*idx)[k] : k;
            sw += w[i];
            swx += w[i] * x[i];
        }
        return sw > 0 ? swx / sw : stats::kNaN;
    };
    e.value = stat(nullptr);
    if (x.size() < 2) return e;
    std::vector<double> draws(o.bootstrap);
    for (auto& d : draws) {
        const auto idx = stats::resample_indices(x.size(), rng);
        d = stat(&idx);
    }
    e.ci = stats::percentile_interval(draws, o.level);
    return e;
}

}  // namespace

Cycles cycles(const PanelTable& p, const Options& o) {
    Cycles c;
    if (p.runs.empty()) {
        c.reason = "empty panel: no runs";
        return c;
    }
    c.norm = resolve_norm(p, o);
    std::map<std::string, std::vector<const PanelRun*>> by_model;
    bool any = false;
    for (const PanelRun* r : runs_for(p, c.norm)) {
        by_model[r->model].push_back(r);
        for (const char* k : {"exit_rate", "reopening_rate", "collapse_rate", "rivalry_rate"})
            any = any || std::isfinite(metric_of(*r, k));
    }
    if (!any) {
        c.reason = "missing metric: no run has exit_rate, reopening_rate or state rates";
        return c;
    }
    auto rng = rng_for(o, kCycleBoot);
    bool any_trans = false, any_dwell = false;
    std::vector<double> all_x, all_w;
    for (const auto& [model, runs] : by_model) {
        CycleRow row;
        row.model = model;
        row.runs = runs.size();
        bool have_episodes = false;
        double episodes = 0;
        for (const PanelRun* r : runs) {
            const double e = metric_of(*r, "collapse_episodes");
            if (std::isfinite(e)) {
                have_episodes = true;
                episodes += e;
            }
        }
        if (have_episodes) row.episodes = episodes;
        for (int which = 0; which < 2; ++which) {
            const char* key = which == 0 ? "exit_rate" : "reopening_rate";
            std::vector<double> x, w;
            for (const PanelRun* r : runs) {
                const double v = metric_of(*r, key);
                if (!std::isfinite(v)) continue;   // no episode in this run
                const double e = metric_of(*r, "collapse_episodes");
                x.push_back(v);
                w.push_back(have_episodes ? (std::isfinite(e) ? e : 0.0) : 1.0);
                if (which == 1) {
                    all_x.push_back(v);
                    all_w.push_back(w.back());
                }
            }
            (which == 0 ? row.exit_rate : row.reopening_rate) = weighted_rate(x, w, o, rng);
        }
        for (std::size_t s = 0; s < 4; ++s) {
            std::string key = kStates[s];
            std::transform(key.begin(), key.end(), key.begin(), [](unsigned char ch) { return std::tolower(ch); });
            std::vector<double> x;
            for (const PanelRun* r : runs) {
                const double v = metric_of(*r, key + "_rate");
                if (std::isfinite(v)) x.push_back(v);
            }
            row.state_rates[s] = bootstrap_mean(x, o, rng);
            std::vector<double> dw;
            for (const PanelRun* r : runs) {
                const double v = metric_of(*r, std::string("dwell_mean_") + kStates[s]);
                if (std::isfinite(v)) dw.push_back(v);
            }
            if (!dw.empty()) any_dwell = true;
            row.dwell_mean[s] = bootstrap_mean(dw, o, rng);
        }
        std::array<std::array<double, 4>, 4> tr{};
        bool have_tr = false;
        for (const PanelRun* r : runs)
            for (std::size_t a = 0; a < 4; ++a)
                for (std::size_t b = 0; b < 4; ++b) {
                    const double v = metric_of(*r, std::string("transition_") + kStates[a] + "_" + kStates[b]);
                    if (std::isfinite(v)) {
                        tr[a][b] += v;
                        have_tr = true;
                    }
                }
        if (have_tr) {
            any_trans = true;
            for (auto& rowp : tr) {
                double s = 0;
                for (double v : rowp) s += v;
                for (double& v : rowp) v = s > 0 ? v / s : stats::kNaN;
            }
            row.transitions = tr;
        }
        c.models.push_back(std::move(row));
    }
    if (!any_trans)
        c.transitions_reason = "no run carries transition_<FROM>_<TO> counts (runs without probability stats)";
    if (!any_dwell) c.dwell_reason = "no run carries dwell_mean_<STATE> (runs without probability stats)";
    const Estimate pooled = weighted_rate(all_x, all_w, o, rng);
    c.pooled_reopening = pooled.value;
    c.pooled_reopening_ci = pooled.ci;
    double ep = 0;
    bool have = false;
    for (const auto& m : c.models)
        if (std::isfinite(m.episodes)) {
            ep += m.episodes;
            have = true;
        }
    if (have) c.pooled_episodes = ep;
    return c;
}

json to_json(const Cycles& r) {
    json j = {{"section", "cycles"}, {"ok", r.ok()}, {"norm", r.norm}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["pooled_reopening"] = {{"value", num(r.pooled_reopening)}, {"ci", interval(r.pooled_reopening_ci)},
                             {"episodes", num(r.pooled_episodes)}};
    j["models"] = json::array();
    for (const auto& m : r.models) {
        json x = {{"model", m.model},
                  {"runs", m.runs},
                  {"episodes", num(m.episodes)},
                  {"exit_rate", estimate(m.exit_rate)},
                  {"reopening_rate", estimate(m.reopening_rate)}};
        for (std::size_t s = 0; s < 4; ++s) {
            x["state_rates"][kStates[s]] = estimate(m.state_rates[s]);
            if (m.dwell_mean[s].n) x["dwell_mean"][kStates[s]] = estimate(m.dwell_mean[s]);
        }
        if (m.transitions) {
            json t = json::array();
            for (const auto& row : *m.transitions) {
                json a = json::array();
                for (double v : row) a.push_back(num(v));
                t.push_back(a);
            }
            x["transition_probs"] = t;
        }
        j["models"].push_back(x);
    }
    if (!r.transitions_reason.empty()) j["transitions_reason"] = r.transitions_reason;
    if (!r.dwell_reason.empty()) j["dwell_reason"] = r.dwell_reason;
    return j;
}

std::string to_table(const Cycles& r) {
    std::string s = heading("6. COLLAPSE–RIVALRY cycles", r);
    if (!r.ok()) return s;
    s += fmt::format("  pooled reopening rate {} {} over {} episodes\n", f(r.pooled_reopening), ci(r.pooled_reopening_ci),
                     f(r.pooled_episodes));
    TextTable t({"model", "runs", "episodes", "exit rate", "95% CI", "reopening", "95% CI", "COLLAPSE", "RIVALRY",
                 "DIFFUSE", "STEADY"});
    for (const auto& m : r.models)
        t.row({m.model, std::to_string(m.runs), f(m.episodes), f(m.exit_rate.value), ci(m.exit_rate.ci),
               f(m.reopening_rate.value), ci(m.reopening_rate.ci), f(m.state_rates[0].value), f(m.state_rates[1].value),
               f(m.state_rates[2].value), f(m.state_rates[3].value)});
    s += t.str();
    for (const auto& m : r.models) {
        if (!m.transitions) continue;
        s += "  transitions of " + m.model + " (row → column, probabilities)\n";
        TextTable tt({"from", "COLLAPSE", "RIVALRY", "DIFFUSE", "STEADY"});
        for (std::size_t a = 0; a < 4; ++a)
            tt.row({kStates[a], f((*m.transitions)[a][0]), f((*m.transitions)[a][1]), f((*m.transitions)[a][2]),
                    f((*m.transitions)[a][3])});
        s += tt.str();
    }
    if (!r.transitions_reason.empty()) s += "  transition matrix: " + r.transitions_reason + "\n";
    if (!r.dwell_reason.empty()) s += "  dwell times: " + r.dwell_reason + "\n";
    return s;
}

}  // namespace phasemap::audit
