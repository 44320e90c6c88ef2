#include "common.hpp"
#include "phasemap/audit/result.hpp"

#include "phasemap/stats/stats.hpp"

#include <algorithm>
#include <tuple>
#include <stdexcept>

namespace phasemap::audit {

void Options::validate() const {
    if (metric.empty()) throw std::invalid_argument("audit: --metric must not be empty");
    if (factor != "model" && factor != "family")
        throw std::invalid_argument("audit: factor must be \"model\" or \"family\", got \"" + factor + "\"");
    if (bootstrap < 2) throw std::invalid_argument("audit: --bootstrap must be ≥ 2");
    if (permutations < 1) throw std::invalid_argument("audit: permutations must be ≥ 1");
    if (!(level > 0 && level < 1)) throw std::invalid_argument("audit: confidence level must be in (0, 1)");
    if (!(robust_share > 0 && robust_share <= 1)) throw std::invalid_argument("audit: robust share must be in (0, 1]");
    if (!(train_fraction > 0 && train_fraction < 1))
        throw std::invalid_argument("audit: train fraction must be in (0, 1)");
    cuts.validate();
}

RunUnits distinct_runs(const PanelTable& p, const std::string& norm, bool keep_budgets, bool all_modes) {
    RunUnits u;
    std::vector<const PanelRun*> sel;
    for (const auto& r : p.runs)
        if (all_modes || r.norm == norm) sel.push_back(&r);
    u.total = sel.size();
    // A stream: what determines the generation apart from the budget. At temperature 0 the seed
    // does not enter (greedy decoding); when sampling it does.
    using Stream = std::tuple<std::string, std::string, std::string, std::string, double, std::uint64_t>;
    std::map<Stream, std::vector<std::size_t>> streams;
    for (std::size_t i = 0; i < sel.size(); ++i) {
        const PanelRun& r = *sel[i];
        if (r.text.empty() && r.tokens_digest.empty()) continue;   // generation unknown: never merged
        streams[{r.norm, r.model, r.category, r.prompt, r.temperature, r.temperature == 0 ? 0 : r.seed}].push_back(i);
    }
    std::vector<bool> drop(sel.size(), false);
    for (const auto& [key, idx] : streams) {
        if (std::get<4>(key) == 0) {
            // Same generation: the same token ids (their digest) where the store has them, else the
            // same text; and the same length.
            std::map<std::tuple<std::int64_t, std::int64_t, bool, std::string>, std::size_t> seen;
            for (std::size_t i : idx) {
                const PanelRun& r = *sel[i];
                const bool by_tokens = !r.tokens_digest.empty();
                const auto key = std::make_tuple(r.n_predict, r.n_generated, by_tokens, by_tokens ? r.tokens_digest : r.text);
                if (!seen.emplace(key, i).second) {
                    drop[i] = true;
                    ++u.merged_identical;
                }
            }
        }
        if (keep_budgets) continue;
        for (std::size_t i : idx) {
            if (drop[i] || sel[i]->text.empty()) continue;
            for (std::size_t j : idx) {
                if (j == i || drop[j]) continue;
                const PanelRun &a = *sel[i], &b = *sel[j];
                if (b.n_predict > a.n_predict && b.n_generated >= a.n_generated && b.text.size() >= a.text.size() &&
                    b.text.compare(0, a.text.size(), a.text) == 0) {
                    drop[i] = true;
                    ++u.nested_budget;
                    break;
                }
            }
        }
    }
    for (std::size_t i = 0; i < sel.size(); ++i)
        if (!drop[i]) u.runs.push_back(sel[i]);
    return u;
}

json to_json(const RunUnits& u) { return to_json(unit_counts(u)); }

namespace detail {

std::mt19937_64 rng_for(const Options& o, std::uint64_t stream) {
    return std::mt19937_64(stats::derive_seed(o.seed, stream));
}

std::string resolve_norm(const PanelTable& p, const Options& o) {
    if (!o.norm.empty()) return o.norm;
    std::map<std::string, std::size_t> count;
    for (const auto& r : p.runs) ++count[r.norm];
    std::string best;
    std::size_t n = 0;
    for (const auto& [k, c] : count)
        if (c > n) {
            n = c;
            best = k;
        }
    return best;
}

std::vector<const PanelRun*> runs_for(const PanelTable& p, const std::string& norm) {
    return distinct_runs(p, norm).runs;
}

double metric_of(const PanelRun& r, const std::string& name) {
    const auto it = r.metrics.find(name);
    return it == r.metrics.end() ? stats::kNaN : it->second;
}

std::string family_of(const PanelTable& p, const std::string& model) {
    const PanelModel* m = p.model(model);
    return (m && !m->family.empty()) ? m->family : model;
}

std::string regime_label(double ratio_norm, const metrics::RegimeCuts& cuts) {
    if (!std::isfinite(ratio_norm)) return "";
    return std::string(metrics::to_string(metrics::classify_regime(ratio_norm, cuts)));
}

Codes encode(const std::vector<std::string>& labels) {
    Codes c;
    std::map<std::string, int> m;
    for (const auto& l : labels) m.emplace(l, 0);
    for (auto& [k, v] : m) {
        v = static_cast<int>(c.names.size());
        c.names.push_back(k);
    }
    c.code.reserve(labels.size());
    for (const auto& l : labels) c.code.push_back(m[l]);
    return c;
}

Estimate bootstrap_mean(const std::vector<double>& xs, const Options& o, std::mt19937_64& rng) {
    Estimate e;
    e.n = xs.size();
    e.value = stats::mean(xs);
    if (xs.size() < 2) return e;
    e.ci = stats::percentile_interval(stats::bootstrap_draws(xs, o.bootstrap, stats::Statistic::mean, rng), o.level);
    return e;
}

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
json interval(const Interval& i) { return json::array({num(i.lo), num(i.hi)}); }
json estimate(const Estimate& e) { return {{"value", num(e.value)}, {"ci", interval(e.ci)}, {"n", e.n}}; }

std::string f(double v) {
    if (!std::isfinite(v)) return "–";
    return fmt::format("{:.4g}", v);
}
std::string ci(const Interval& i) {
    if (!i.ok()) return "–";
    return fmt::format("[{}, {}]", f(i.lo), f(i.hi));
}

namespace {
// Display width in code points (UTF-8 continuation bytes do not count).
std::size_t width(const std::string& s) {
    std::size_t w = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++w;
    return w;
}
}  // namespace

std::string TextTable::str() const {
    std::vector<std::size_t> w(headers_.size());
    for (std::size_t j = 0; j < headers_.size(); ++j) w[j] = width(headers_[j]);
    for (const auto& r : rows_)
        for (std::size_t j = 0; j < r.size() && j < w.size(); ++j) w[j] = std::max(w[j], width(r[j]));
    auto line = [&](const std::vector<std::string>& cells) {
        std::string s = " ";
        for (std::size_t j = 0; j < w.size(); ++j) {
            const std::string c = j < cells.size() ? cells[j] : "";
            s += " " + c + std::string(w[j] - std::min(w[j], width(c)), ' ');
        }
        while (!s.empty() && s.back() == ' ') s.pop_back();
        return s + "\n";
    };
    std::string out = line(headers_);
    std::size_t total = 1;
    for (auto x : w) total += x + 1;
    out += "  " + std::string(total - 2, '-') + "\n";
    for (const auto& r : rows_) out += line(r);
    return out;
}

std::string heading(const std::string& title, const SectionResult& r) {
    std::string s = "== " + title + (r.norm.empty() ? "" : " (norm: " + r.norm + ")") + "\n";
    if (!r.ok()) s += "  not enough data: " + r.reason + "\n";
    return s;
}

}  // namespace detail
}  // namespace phasemap::audit
