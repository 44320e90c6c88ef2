// Section 7: ranking stability across temperatures and token budgets, ratio_norm vs perplexity,
// and the held-out collapse predictor.
#include <algorithm>
#include <set>
#include <sstream>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

bool text_collapsed(const std::string& text) {
    std::istringstream in(text);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (words.size() < 4) return true;
    std::set<std::string> distinct;
    for (std::size_t i = 0; i + 2 < words.size(); ++i) distinct.insert(words[i] + '\x1f' + words[i + 1] + '\x1f' + words[i + 2]);
    return 2 * distinct.size() < words.size() - 2;
}

namespace {

// Model means of the metric at each level of a run setting; the bootstrap resamples runs within
// each (model, level) cell.
std::vector<RankingStability> rankings(const std::vector<const PanelRun*>& runs, const std::string& metric,
                                       const std::string& factor, const Options& o, std::string& reason) {
    // level → model → values
    std::map<double, std::map<std::string, std::vector<double>>> cells;
    for (const PanelRun* r : runs) {
        const double v = metric_of(*r, metric);
        if (!std::isfinite(v)) continue;
        const double level = factor == "temperature" ? r->temperature : static_cast<double>(r->n_predict);
        cells[level][r->model].push_back(v);
    }
    std::vector<RankingStability> out;
    if (cells.size() < 2) {
        reason = cells.empty() ? "missing metric: no run has a finite " + metric
                               : "one " + factor + " only: rankings need ≥ 2 levels";
        return out;
    }
    auto rng = rng_for(o, kRankBoot + (factor == "temperature" ? 0 : 1000));
    for (auto a = cells.begin(); a != cells.end(); ++a)
        for (auto b = std::next(a); b != cells.end(); ++b) {
            std::vector<const std::vector<double>*> xa, xb;
            for (const auto& [m, xs] : a->second) {
                const auto it = b->second.find(m);
                if (it == b->second.end()) continue;
                xa.push_back(&xs);
                xb.push_back(&it->second);
            }
            if (xa.size() < 3) continue;   // a ranking of fewer than 3 models says nothing
            RankingStability rs;
            rs.factor = factor;
            rs.level_a = f(a->first);
            rs.level_b = f(b->first);
            auto means = [&](const std::vector<const std::vector<double>*>& v, bool boot) {
                std::vector<double> m;
                for (const auto* xs : v) {
                    if (!boot) {
                        m.push_back(stats::mean(*xs));
                        continue;
                    }
                    m.push_back(stats::resample_mean(*xs, rng));
                }
                return m;
            };
            rs.tau = stats::kendall_tau_b(means(xa, false), means(xb, false));
            std::vector<double> draws(o.bootstrap);
            for (auto& d : draws) d = stats::kendall_tau_b(means(xa, true), means(xb, true)).tau;
            rs.ci = stats::percentile_interval(draws, o.level);
            out.push_back(rs);
        }
    if (out.empty()) reason = "no two " + factor + " levels share ≥ 3 models with " + metric;
    return out;
}

CorrelationResult correlate(const std::string& xn, const std::string& yn, const std::string& unit,
                            const std::vector<double>& x, const std::vector<double>& y, const Options& o,
                            std::uint64_t stream) {
    CorrelationResult c;
    c.x = xn;
    c.y = yn;
    c.unit = unit;
    c.pearson = stats::pearson(x, y, o.level);
    c.spearman = stats::spearman(x, y, o.level);
    if (x.size() < 3) return c;
    auto rng = rng_for(o, kCorrBoot + stream);
    std::vector<double> dp(o.bootstrap), ds(o.bootstrap), xb(x.size()), yb(x.size());
    for (std::size_t b = 0; b < o.bootstrap; ++b) {
        for (std::size_t i = 0; i < x.size(); ++i) {
            const auto j = stats::uniform_index(rng, x.size() - 1);
            xb[i] = x[j];
            yb[i] = y[j];
        }
        dp[b] = stats::pearson(xb, yb).r;
        ds[b] = stats::spearman(xb, yb).r;
    }
    c.pearson_boot = stats::percentile_interval(dp, o.level);
    c.spearman_boot = stats::percentile_interval(ds, o.level);
    auto prng = rng_for(o, kCorrPerm + stream);
    std::vector<double> perm(o.permutations), yp(y.size());
    std::vector<std::uint32_t> order(y.size());
    for (auto& v : perm) {
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        stats::shuffle_in_place(order, prng);
        for (std::size_t i = 0; i < y.size(); ++i) yp[i] = y[order[i]];
        v = std::abs(stats::pearson(x, yp).r);
    }
    c.perm_p = stats::permutation_p(std::abs(c.pearson.r), perm);
    return c;
}

double accuracy(const std::vector<double>& x, const std::vector<int>& y, const std::vector<std::size_t>& idx, double t) {
    if (idx.empty()) return stats::kNaN;
    std::size_t ok = 0;
    for (auto i : idx) ok += static_cast<int>(x[i] < t) == y[i];
    return static_cast<double>(ok) / static_cast<double>(idx.size());
}

// Threshold maximising the train accuracy of "positive when x < t" (candidates: midpoints of the
// sorted distinct train values and both ends; ties → the smallest threshold).
double fit_threshold(const std::vector<double>& x, const std::vector<int>& y, const std::vector<std::size_t>& train) {
    std::vector<double> v;
    for (auto i : train) v.push_back(x[i]);
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    std::vector<double> cand = {v.front() - 1};
    for (std::size_t i = 0; i + 1 < v.size(); ++i) cand.push_back((v[i] + v[i + 1]) / 2);
    cand.push_back(v.back() + 1);
    double best_t = cand.front(), best = -1;
    for (double t : cand) {
        const double a = accuracy(x, y, train, t);
        if (a > best) {
            best = a;
            best_t = t;
        }
    }
    return best_t;
}

// A fitted threshold is a rule only when it splits the training runs and beats predicting the
// training majority class there.
bool degenerate_rule(const std::vector<double>& x, const std::vector<int>& y, const std::vector<std::size_t>& train,
                     double t) {
    std::size_t below = 0, pos = 0;
    for (auto i : train) {
        below += x[i] < t;
        pos += y[i] != 0;
    }
    const double majority = static_cast<double>(std::max(pos, train.size() - pos)) / static_cast<double>(train.size());
    return below == 0 || below == train.size() || !(accuracy(x, y, train, t) > majority);
}

const char* kNoRule = "no rule better than the majority class";

}  // namespace

std::vector<RankingStability> ranking_stability(const PanelTable& p, const Options& o, const std::string& factor,
                                                std::string& reason) {
    if (factor != "temperature" && factor != "n_predict")
        throw std::invalid_argument("ranking_stability: factor must be temperature or n_predict");
    return rankings(distinct_runs(p, resolve_norm(p, o), factor == "n_predict").runs, o.metric, factor, o, reason);
}

Robustness robustness(const PanelTable& p, const Options& o) {
    Robustness r;
    if (p.runs.empty()) {
        r.reason = "empty panel: no runs";
        return r;
    }
    r.norm = resolve_norm(p, o);
    const auto runs = runs_for(p, r.norm);
    r.temperature = rankings(runs, o.metric, "temperature", o, r.temperature_reason);
    // Budgets are compared on every length of a run (its shorter budgets are the same generation
    // measured earlier), so the comparison keeps the nested runs the pooled analyses merge.
    r.budget = rankings(distinct_runs(p, r.norm, true).runs, o.metric, "n_predict", o, r.budget_reason);

    // ratio_norm (the selected metric) vs perplexity, per run and per model.
    std::uint64_t stream = 0;
    for (const char* py : {"perplexity", "reference_perplexity"}) {
        std::vector<double> x, y;
        std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> per_model;
        for (const PanelRun* run : runs) {
            const double a = metric_of(*run, o.metric), b = metric_of(*run, py);
            if (!std::isfinite(a) || !std::isfinite(b)) continue;
            x.push_back(a);
            y.push_back(b);
            per_model[run->model].first.push_back(a);
            per_model[run->model].second.push_back(b);
        }
        if (x.size() < 3) continue;
        r.perplexity.push_back(correlate(o.metric, py, "run", x, y, o, stream++));
        std::vector<double> mx, my;
        for (const auto& [m, v] : per_model) {
            mx.push_back(stats::mean(v.first));
            my.push_back(stats::mean(v.second));
        }
        if (mx.size() >= 3) r.perplexity.push_back(correlate(o.metric, py, "model", mx, my, o, stream++));
    }
    if (r.perplexity.empty()) r.perplexity_reason = "missing metric: fewer than 3 runs with both " + o.metric + " and perplexity";

    // Collapse predictor.
    auto& cp = r.predictor;
    cp.label_definition =
        "collapsed = generated text has < 4 whitespace words, or < 50 % of its word trigrams are distinct";
    std::vector<double> late, ent;
    std::vector<int> lab;
    bool any_text = false;
    for (const PanelRun* run : runs) any_text = any_text || !run->text.empty();
    const char* ent_keys[] = {"mean_entropy", "median_entropy", "entropy"};
    for (const char* k : ent_keys) {
        bool found = false;
        for (const PanelRun* run : runs) found = found || std::isfinite(metric_of(*run, k));
        if (found) {
            cp.entropy_metric = k;
            break;
        }
    }
    if (!any_text) {
        r.predictor_reason = "no run carries its generated text: the collapse label cannot be defined";
        return r;
    }
    for (const PanelRun* run : runs) {
        const double v = metric_of(*run, "late_ct");
        if (!std::isfinite(v)) continue;
        late.push_back(v);
        ent.push_back(cp.entropy_metric.empty() ? stats::kNaN : metric_of(*run, cp.entropy_metric));
        lab.push_back(text_collapsed(run->text));
    }
    if (late.size() < 4) {
        r.predictor_reason = "missing metric: fewer than 4 runs with late_ct";
        return r;
    }
    std::vector<std::uint32_t> order(late.size());
    for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    auto rng = rng_for(o, kSplit);
    stats::shuffle_in_place(order, rng);
    const auto ntrain = std::clamp<std::size_t>(
        static_cast<std::size_t>(std::llround(o.train_fraction * static_cast<double>(late.size()))), 1, late.size() - 1);
    std::vector<std::size_t> train(order.begin(), order.begin() + static_cast<long>(ntrain)),
        test(order.begin() + static_cast<long>(ntrain), order.end());
    std::sort(train.begin(), train.end());
    std::sort(test.begin(), test.end());
    cp.train = train.size();
    cp.test = test.size();
    for (auto i : train) cp.train_positive += lab[i];
    for (auto i : test) cp.test_positive += lab[i];
    if (cp.train_positive == 0 || cp.train_positive == cp.train || cp.test_positive == 0 || cp.test_positive == cp.test) {
        r.predictor_reason = fmt::format("one class only in a split (train {}/{} collapsed, test {}/{}): accuracy/AUC "
                                         "need both collapsed and non-collapsed runs",
                                         cp.train_positive, cp.train, cp.test_positive, cp.test);
        return r;
    }
    cp.threshold = fit_threshold(late, lab, train);
    if (degenerate_rule(late, lab, train, cp.threshold)) {
        cp.rule = kNoRule;
        cp.threshold = stats::kNaN;
    } else {
        cp.rule = "collapsed when late_ct < " + f(cp.threshold);
        cp.train_accuracy = accuracy(late, lab, train, cp.threshold);
        cp.test_accuracy = accuracy(late, lab, test, cp.threshold);
    }
    cp.fixed_threshold_test_accuracy = accuracy(late, lab, test, o.collapse_threshold);
    const int majority = 2 * cp.train_positive >= cp.train ? 1 : 0;
    std::size_t maj_ok = 0;
    for (auto i : test) maj_ok += lab[i] == majority;
    cp.majority_test_accuracy = static_cast<double>(maj_ok) / static_cast<double>(test.size());
    // AUC and ROC curve on the test split; lower value → more likely collapsed.
    auto test_auc = [&](const std::vector<double>& x, std::vector<stats::RocPoint>& roc) {
        std::vector<double> s;
        std::vector<int> l;
        for (auto i : test) {
            s.push_back(-x[i]);
            l.push_back(lab[i]);
        }
        roc = stats::roc_curve(s, l);
        return stats::auc(s, l);
    };
    cp.test_auc = test_auc(late, cp.test_roc);
    if (cp.entropy_metric.empty()) {
        cp.entropy_reason = "no run-level entropy metric (mean_entropy / median_entropy) in the panel";
    } else {
        std::vector<std::size_t> tr2, te2;
        for (auto i : train)
            if (std::isfinite(ent[i])) tr2.push_back(i);
        for (auto i : test)
            if (std::isfinite(ent[i])) te2.push_back(i);
        if (tr2.empty() || te2.empty()) {
            cp.entropy_reason = "entropy missing in a split";
        } else {
            cp.entropy_threshold = fit_threshold(ent, lab, tr2);
            if (degenerate_rule(ent, lab, tr2, cp.entropy_threshold)) {
                cp.entropy_rule = kNoRule;
                cp.entropy_threshold = stats::kNaN;
            } else {
                cp.entropy_rule = "collapsed when " + cp.entropy_metric + " < " + f(cp.entropy_threshold);
                cp.entropy_test_accuracy = accuracy(ent, lab, te2, cp.entropy_threshold);
            }
            cp.entropy_test_auc = test_auc(ent, cp.entropy_test_roc);
        }
    }
    return r;
}

namespace {
json roc_json(const std::vector<stats::RocPoint>& roc) {
    json a = json::array();
    for (const auto& p : roc) a.push_back({{"fpr", num(p.fpr)}, {"tpr", num(p.tpr)}});
    return a;
}
json corr_json(const CorrelationResult& c) {
    auto one = [](const stats::Correlation& k, const Interval& boot) {
        return json{{"r", num(k.r)}, {"fisher_ci", json::array({num(k.lo), num(k.hi)})}, {"bootstrap_ci", interval(boot)},
                    {"p", num(k.p)}, {"n", k.n}};
    };
    return {{"x", c.x},
            {"y", c.y},
            {"unit", c.unit},
            {"pearson", one(c.pearson, c.pearson_boot)},
            {"spearman", one(c.spearman, c.spearman_boot)},
            {"perm_p", num(c.perm_p)}};
}
json rank_json(const std::vector<RankingStability>& v) {
    json a = json::array();
    for (const auto& x : v)
        a.push_back({{"level_a", x.level_a}, {"level_b", x.level_b}, {"n_models", x.tau.n}, {"tau_b", num(x.tau.tau)},
                     {"p", num(x.tau.p)}, {"p_method", x.tau.method}, {"ci", interval(x.ci)}});
    return a;
}
}  // namespace

json to_json(const Robustness& r) {
    json j = {{"section", "robustness"}, {"ok", r.ok()}, {"norm", r.norm}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["temperature"] = rank_json(r.temperature);
    if (!r.temperature_reason.empty()) j["temperature_reason"] = r.temperature_reason;
    j["n_predict"] = rank_json(r.budget);
    if (!r.budget_reason.empty()) j["n_predict_reason"] = r.budget_reason;
    j["perplexity"] = json::array();
    for (const auto& c : r.perplexity) j["perplexity"].push_back(corr_json(c));
    if (!r.perplexity_reason.empty()) j["perplexity_reason"] = r.perplexity_reason;
    const auto& c = r.predictor;
    json pj = {{"label_definition", c.label_definition}};
    if (!r.predictor_reason.empty()) {
        pj["reason"] = r.predictor_reason;
    } else {
        pj.update({{"train", c.train},
                   {"test", c.test},
                   {"train_collapsed", c.train_positive},
                   {"test_collapsed", c.test_positive},
                   {"late_ct_rule", c.rule},
                   {"late_ct_threshold", num(c.threshold)},
                   {"train_accuracy", num(c.train_accuracy)},
                   {"test_accuracy", num(c.test_accuracy)},
                   {"test_auc", num(c.test_auc)},
                   {"fixed_threshold_test_accuracy", num(c.fixed_threshold_test_accuracy)},
                   {"majority_test_accuracy", num(c.majority_test_accuracy)},
                   {"entropy_metric", c.entropy_metric},
                   {"entropy_rule", c.entropy_rule},
                   {"entropy_threshold", num(c.entropy_threshold)},
                   {"entropy_test_accuracy", num(c.entropy_test_accuracy)},
                   {"entropy_test_auc", num(c.entropy_test_auc)}});
        // The ROC points, when there is a curve (audits written before they were kept have none).
        if (!c.test_roc.empty()) pj["test_roc"] = roc_json(c.test_roc);
        if (!c.entropy_test_roc.empty()) pj["entropy_test_roc"] = roc_json(c.entropy_test_roc);
        if (!c.entropy_reason.empty()) pj["entropy_reason"] = c.entropy_reason;
    }
    j["collapse_predictor"] = pj;
    return j;
}

std::string to_table(const Robustness& r) {
    std::string s = heading("7. Robustness and correlations", r);
    if (!r.ok()) return s;
    for (int which = 0; which < 2; ++which) {
        const auto& v = which == 0 ? r.temperature : r.budget;
        const auto& why = which == 0 ? r.temperature_reason : r.budget_reason;
        s += which == 0 ? "  model rankings across temperatures (Kendall τ-b)" : "  model rankings across token budgets (Kendall τ-b)";
        if (!why.empty()) {
            s += ": " + why + "\n";
            continue;
        }
        s += "\n";
        TextTable t({"level a", "level b", "models", "τ-b", "p", "p method", "95% CI"});
        for (const auto& x : v)
            t.row({x.level_a, x.level_b, std::to_string(x.tau.n), f(x.tau.tau), f(x.tau.p), x.tau.method, ci(x.ci)});
        s += t.str();
    }
    if (!r.perplexity_reason.empty()) {
        s += "  perplexity: " + r.perplexity_reason + "\n";
    } else {
        TextTable t({"x", "y", "unit", "n", "Pearson r", "Fisher CI", "boot CI", "Spearman ρ", "Fisher CI", "boot CI",
                     "perm p"});
        for (const auto& c : r.perplexity)
            t.row({c.x, c.y, c.unit, std::to_string(c.pearson.n), f(c.pearson.r), ci({c.pearson.lo, c.pearson.hi}),
                   ci(c.pearson_boot), f(c.spearman.r), ci({c.spearman.lo, c.spearman.hi}), ci(c.spearman_boot),
                   f(c.perm_p)});
        s += t.str();
    }
    const auto& c = r.predictor;
    s += "  collapse predictor (" + c.label_definition + ")";
    if (!r.predictor_reason.empty()) return s + ": " + r.predictor_reason + "\n";
    s += fmt::format("\n    split {} train ({} collapsed) / {} test ({} collapsed); majority-class test accuracy {}\n",
                     c.train, c.train_positive, c.test, c.test_positive, f(c.majority_test_accuracy));
    if (std::isfinite(c.threshold))
        s += fmt::format("    late_ct < {}: train accuracy {}, test accuracy {}, test AUC {}", f(c.threshold),
                         f(c.train_accuracy), f(c.test_accuracy), f(c.test_auc));
    else
        s += fmt::format("    late_ct: {} (test AUC {})", c.rule, f(c.test_auc));
    s += fmt::format("; published threshold test accuracy {}\n", f(c.fixed_threshold_test_accuracy));
    if (c.entropy_reason.empty() && std::isfinite(c.entropy_threshold))
        s += fmt::format("    {} < {}: test accuracy {}, test AUC {}\n", c.entropy_metric, f(c.entropy_threshold),
                         f(c.entropy_test_accuracy), f(c.entropy_test_auc));
    else if (c.entropy_reason.empty())
        s += fmt::format("    {}: {} (test AUC {})\n", c.entropy_metric, c.entropy_rule, f(c.entropy_test_auc));
    else
        s += "    entropy-only predictor: " + c.entropy_reason + "\n";
    return s;
}

}  // namespace phasemap::audit
