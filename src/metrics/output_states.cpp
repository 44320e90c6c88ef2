// Output-distribution states, episodes, rates, transitions and dwell times (METRICS.md §5).
#include "phasemap/metrics/output_states.hpp"
#include "phasemap/metrics/option_domains.hpp"

#include <cmath>
#include <string>

namespace phasemap::metrics {

std::string_view to_string(OutputState s) {
    switch (s) {
        case OutputState::COLLAPSE: return "COLLAPSE";
        case OutputState::RIVALRY: return "RIVALRY";
        case OutputState::DIFFUSE: return "DIFFUSE";
        case OutputState::STEADY: return "STEADY";
    }
    return "?";
}

std::optional<OutputState> parse_output_state(std::string_view s) {
    for (OutputState o : kOutputStates)
        if (to_string(o) == s) return o;
    return std::nullopt;
}

void StateThresholds::validate() const {
    if (!std::isfinite(collapse_top1) || !std::isfinite(rivalry_margin) || !std::isfinite(diffuse_entropy))
        throw MetricError("output-state thresholds must be finite numbers");
    // Domains shared with the CLI flags (option_domains.hpp): top1 and margin are probabilities.
    if (auto p = opt::domain_problem(collapse_top1, opt::kProbability); !p.empty()) throw MetricError("collapse_top1: " + p);
    if (auto p = opt::domain_problem(rivalry_margin, opt::kProbability); !p.empty()) throw MetricError("rivalry_margin: " + p);
    if (auto p = opt::domain_problem(diffuse_entropy, opt::kEntropy); !p.empty()) throw MetricError("diffuse_entropy: " + p);
}

OutputState classify_output_state(const TokenProbStats& s, const StateThresholds& th) {
    if (!std::isfinite(s.entropy) || !std::isfinite(s.top1) || !std::isfinite(s.margin))
        throw MetricError("output state needs finite entropy, top1 and margin");
    if (s.top1 >= th.collapse_top1) return OutputState::COLLAPSE;
    if (s.margin <= th.rivalry_margin) return OutputState::RIVALRY;
    if (s.entropy >= th.diffuse_entropy) return OutputState::DIFFUSE;
    return OutputState::STEADY;
}

OutputStatesResult output_states(std::span<const OutputState> states) {
    OutputStatesResult r;
    r.states.assign(states.begin(), states.end());
    const std::size_t T = states.size();
    auto idx = [](OutputState s) { return static_cast<std::size_t>(s); };

    for (OutputState s : states) ++r.counts[idx(s)];
    for (std::size_t i = 0; i < kOutputStateCount; ++i)
        r.rates[i] = T == 0 ? kNaN : static_cast<double>(r.counts[i]) / static_cast<double>(T);

    // Maximal runs: dwell times of every state, episodes of COLLAPSE.
    for (std::size_t t = 0; t < T;) {
        std::size_t e = t;
        while (e < T && states[e] == states[t]) ++e;
        r.dwell[idx(states[t])].push_back(e - t);
        if (states[t] == OutputState::COLLAPSE) {
            Episode ep;
            ep.start = t;
            ep.length = e - t;
            ep.exits = e < T;
            // Reopening: a RIVALRY token after the episode, before the next COLLAPSE or the end.
            for (std::size_t u = e; u < T && states[u] != OutputState::COLLAPSE; ++u)
                if (states[u] == OutputState::RIVALRY) {
                    ep.reopens = true;
                    break;
                }
            r.episodes.push_back(ep);
        }
        t = e;
    }
    if (r.episodes.empty()) {
        r.exit_rate = r.reopening_rate = Value::missing("no COLLAPSE episode");
    } else {
        std::size_t exits = 0, reopens = 0;
        for (const Episode& ep : r.episodes) {
            exits += ep.exits;
            reopens += ep.reopens;
        }
        const double n = static_cast<double>(r.episodes.size());
        r.exit_rate = Value::of(static_cast<double>(exits) / n);
        r.reopening_rate = Value::of(static_cast<double>(reopens) / n);
    }

    for (std::size_t t = 0; t + 1 < T; ++t) ++r.transitions[idx(states[t])][idx(states[t + 1])];
    for (std::size_t i = 0; i < kOutputStateCount; ++i) {
        std::size_t row = 0;
        for (std::size_t j = 0; j < kOutputStateCount; ++j) row += r.transitions[i][j];
        for (std::size_t j = 0; j < kOutputStateCount; ++j)
            r.transition_probs[i][j] =
                row == 0 ? kNaN : static_cast<double>(r.transitions[i][j]) / static_cast<double>(row);
    }
    return r;
}

OutputStatesResult output_states(std::span<const TokenProbStats> stats, const StateThresholds& th) {
    th.validate();
    std::vector<OutputState> s(stats.size());
    for (std::size_t t = 0; t < stats.size(); ++t) {
        try {
            s[t] = classify_output_state(stats[t], th);
        } catch (const MetricError& e) {
            throw MetricError(std::string(e.what()) + " (token " + std::to_string(t) + ")");
        }
    }
    return output_states(s);
}

}  // namespace phasemap::metrics
