// Section 4: topology of the models (signatures, distances, average linkage, mutual nearest
// neighbours, bootstrap robust pairs, fragmentation, ARI against the declared families).
#include <algorithm>
#include <set>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

namespace {

// Signatures (models × categories) from cell means, each category column standardised across
// models (population sd; a constant column becomes 0).
Eigen::MatrixXd standardise(Eigen::MatrixXd m) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
        const double mu = m.col(j).mean();
        const double sd = std::sqrt((m.col(j).array() - mu).square().mean());
        if (sd > 0) m.col(j) = (m.col(j).array() - mu) / sd;
        else m.col(j).setZero();
    }
    return m;
}

Eigen::MatrixXd euclidean(const Eigen::MatrixXd& s) {
    const Eigen::Index n = s.rows();
    Eigen::MatrixXd d = Eigen::MatrixXd::Zero(n, n);
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index j = i + 1; j < n; ++j) d(i, j) = d(j, i) = (s.row(i) - s.row(j)).norm();
    return d;
}

}  // namespace

Topology topology(const PanelTable& p, const Options& o) {
    Topology t;
    t.metric = o.metric;
    if (p.runs.empty()) {
        t.reason = "empty panel: no runs";
        return t;
    }
    t.norm = resolve_norm(p, o);
    // model → category → values
    std::map<std::string, std::map<std::string, std::vector<double>>> cells;
    for (const PanelRun* r : runs_for(p, t.norm)) {
        const double v = metric_of(*r, o.metric);
        if (std::isfinite(v)) cells[r->model][r->category].push_back(v);
    }
    if (cells.empty()) {
        t.reason = "missing metric: no run has a finite " + o.metric;
        return t;
    }
    if (cells.size() < 3) {
        t.reason = cells.size() == 1 ? "single model: topology needs ≥ 3 models"
                                     : "2 models: topology needs ≥ 3 models";
        return t;
    }
    // Categories every model has.
    std::set<std::string> common;
    for (const auto& [c, xs] : cells.begin()->second) common.insert(c);
    for (const auto& [m, byc] : cells) {
        std::set<std::string> here;
        for (const auto& [c, xs] : byc)
            if (common.count(c)) here.insert(c);
        common = here;
    }
    if (common.size() < 2) {
        t.reason = common.empty() ? "no category is shared by every model"
                                  : "single category (" + *common.begin() + ") shared by every model: a signature needs ≥ 2";
        return t;
    }
    for (const auto& [m, byc] : cells) {
        t.models.push_back(m);
        const PanelModel* pm = p.model(m);
        t.families.push_back(pm ? pm->family : "");
    }
    t.categories.assign(common.begin(), common.end());
    const auto M = static_cast<Eigen::Index>(t.models.size());
    const auto K = static_cast<Eigen::Index>(t.categories.size());
    std::vector<std::vector<const std::vector<double>*>> cv(t.models.size());
    for (Eigen::Index i = 0; i < M; ++i)
        for (Eigen::Index j = 0; j < K; ++j)
            cv[static_cast<std::size_t>(i)].push_back(&cells[t.models[static_cast<std::size_t>(i)]][t.categories[static_cast<std::size_t>(j)]]);
    Eigen::MatrixXd raw(M, K);
    for (Eigen::Index i = 0; i < M; ++i)
        for (Eigen::Index j = 0; j < K; ++j) raw(i, j) = stats::mean(*cv[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)]);
    t.signatures = standardise(raw);
    t.distances = euclidean(t.signatures);
    t.merges = stats::average_linkage(t.distances);
    for (const auto& [a, b] : stats::mutual_nearest_neighbours(t.distances))
        t.mnn.emplace_back(t.models[static_cast<std::size_t>(a)], t.models[static_cast<std::size_t>(b)]);

    // Nearest neighbour in the same family (models with a declared family only).
    {
        std::size_t n = 0, same = 0;
        for (Eigen::Index i = 0; i < M; ++i) {
            const auto& fi = t.families[static_cast<std::size_t>(i)];
            if (fi.empty()) continue;
            Eigen::Index nn = -1;
            double best = std::numeric_limits<double>::infinity();
            for (Eigen::Index j = 0; j < M; ++j)
                if (j != i && t.distances(i, j) < best) {
                    best = t.distances(i, j);
                    nn = j;
                }
            ++n;
            same += t.families[static_cast<std::size_t>(nn)] == fi;
        }
        if (n > 0) t.family_nn_share = static_cast<double>(same) / static_cast<double>(n);
    }

    // Bootstrap over runs (within each model × category cell).
    auto rng = rng_for(o, kTopoBoot);
    std::map<std::pair<int, int>, std::size_t> counts;
    Eigen::MatrixXd rb(M, K);
    for (std::size_t b = 0; b < o.bootstrap; ++b) {
        for (Eigen::Index i = 0; i < M; ++i)
            for (Eigen::Index j = 0; j < K; ++j) {
                const auto& xs = *cv[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
                rb(i, j) = stats::resample_mean(xs, rng);
            }
        for (const auto& pr : stats::mutual_nearest_neighbours(euclidean(standardise(rb)))) ++counts[pr];
    }
    for (const auto& [pr, c] : counts) {
        PairShare ps;
        ps.a = t.models[static_cast<std::size_t>(pr.first)];
        ps.b = t.models[static_cast<std::size_t>(pr.second)];
        ps.share = static_cast<double>(c) / static_cast<double>(o.bootstrap);
        ps.robust = ps.share >= o.robust_share;
        const auto& fa = t.families[static_cast<std::size_t>(pr.first)];
        ps.same_family = !fa.empty() && fa == t.families[static_cast<std::size_t>(pr.second)];
        t.robust_pairs += ps.robust;
        t.pairs.push_back(ps);
    }
    std::stable_sort(t.pairs.begin(), t.pairs.end(), [](const PairShare& x, const PairShare& y) { return x.share > y.share; });
    t.fragmentation = 1.0 - 2.0 * static_cast<double>(t.robust_pairs) / static_cast<double>(M);

    // ARI of the dendrogram cut into k = number of declared families, over the models with a family.
    std::vector<std::size_t> with_family;
    std::vector<std::string> fam;
    for (std::size_t i = 0; i < t.models.size(); ++i)
        if (!t.families[i].empty()) {
            with_family.push_back(i);
            fam.push_back(t.families[i]);
        }
    const Codes F = encode(fam);
    if (with_family.size() < 2 || F.names.size() < 2) {
        t.ari_reason = "fewer than 2 declared families among the models";
        return t;
    }
    t.clusters = stats::cut_tree(t.merges, t.models.size(), F.names.size());
    std::vector<int> cl;
    for (auto i : with_family) cl.push_back(t.clusters[i]);
    t.ari = stats::adjusted_rand_index(cl, F.code);
    auto prng = rng_for(o, kTopoPerm);
    std::vector<double> perm(o.permutations);
    std::vector<std::uint32_t> order(F.code.size());
    std::vector<int> fp(F.code.size());
    for (auto& v : perm) {
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        stats::shuffle_in_place(order, prng);
        for (std::size_t i = 0; i < fp.size(); ++i) fp[i] = F.code[order[i]];
        v = stats::adjusted_rand_index(cl, fp);
    }
    t.ari_perm_p = stats::permutation_p(t.ari, perm);
    return t;
}

json to_json(const Topology& r) {
    json j = {{"section", "topology"}, {"ok", r.ok()}, {"norm", r.norm}, {"metric", r.metric}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["models"] = r.models;
    j["families"] = r.families;
    j["categories"] = r.categories;
    json sig = json::array(), dist = json::array();
    for (Eigen::Index i = 0; i < r.signatures.rows(); ++i) {
        json a = json::array(), b = json::array();
        for (Eigen::Index k = 0; k < r.signatures.cols(); ++k) a.push_back(num(r.signatures(i, k)));
        for (Eigen::Index k = 0; k < r.distances.cols(); ++k) b.push_back(num(r.distances(i, k)));
        sig.push_back(a);
        dist.push_back(b);
    }
    j["signatures"] = sig;
    j["distances"] = dist;
    j["merges"] = json::array();
    for (const auto& m : r.merges)
        j["merges"].push_back({{"a", m.a}, {"b", m.b}, {"height", num(m.height)}, {"size", m.size}});
    j["mnn"] = json::array();
    for (const auto& [a, b] : r.mnn) j["mnn"].push_back({a, b});
    j["pairs"] = json::array();
    for (const auto& x : r.pairs)
        j["pairs"].push_back({{"a", x.a}, {"b", x.b}, {"share", num(x.share)}, {"robust", x.robust},
                              {"same_family", x.same_family}});
    j["robust_pairs"] = r.robust_pairs;
    j["fragmentation"] = num(r.fragmentation);
    j["family_nn_share"] = num(r.family_nn_share);
    j["clusters"] = r.clusters;
    j["ari"] = num(r.ari);
    j["ari_perm_p"] = num(r.ari_perm_p);
    if (!r.ari_reason.empty()) j["ari_reason"] = r.ari_reason;
    return j;
}

std::string to_table(const Topology& r) {
    std::string s = heading("4. Topology of " + r.metric + " signatures", r);
    if (!r.ok()) return s;
    s += fmt::format("  {} models × {} categories; robust pairs (MNN share ≥ robust threshold): {}; fragmentation "
                     "index {}; nearest neighbour in own family: {}\n",
                     r.models.size(), r.categories.size(), r.robust_pairs, f(r.fragmentation), f(r.family_nn_share));
    if (r.ari_reason.empty())
        s += fmt::format("  ARI(clusters cut at k = families, declared families) = {} (perm p {})\n", f(r.ari),
                         f(r.ari_perm_p));
    else
        s += "  ARI: " + r.ari_reason + "\n";
    TextTable m({"merge", "a", "b", "height", "size"});
    auto name = [&](int id) {
        return id < static_cast<int>(r.models.size()) ? r.models[static_cast<std::size_t>(id)]
                                                      : "#" + std::to_string(id - static_cast<int>(r.models.size()));
    };
    for (std::size_t i = 0; i < r.merges.size(); ++i)
        m.row({"#" + std::to_string(i), name(r.merges[i].a), name(r.merges[i].b), f(r.merges[i].height),
               std::to_string(r.merges[i].size)});
    s += m.str();
    TextTable t({"model a", "model b", "MNN share", "robust", "same family"});
    for (const auto& x : r.pairs)
        t.row({x.a, x.b, f(x.share), x.robust ? "yes" : "no", x.same_family ? "yes" : "no"});
    return s + t.str();
}

}  // namespace phasemap::audit
