// Average linkage, flat cuts, mutual nearest neighbours (include/phasemap/stats/cluster.hpp).
#include "phasemap/stats/cluster.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <stdexcept>

namespace phasemap::stats {

std::vector<Merge> average_linkage(const Eigen::MatrixXd& d0) {
    const Eigen::Index n = d0.rows();
    if (d0.cols() != n) throw std::invalid_argument("average_linkage: distance matrix is not square");
    Eigen::MatrixXd d = d0;
    std::vector<int> id(static_cast<std::size_t>(n)), size(static_cast<std::size_t>(n), 1);
    std::iota(id.begin(), id.end(), 0);
    std::vector<bool> active(static_cast<std::size_t>(n), true);
    std::vector<Merge> merges;
    for (Eigen::Index step = 0; step + 1 < n; ++step) {
        Eigen::Index bi = -1, bj = -1;
        double best = std::numeric_limits<double>::infinity();
        std::pair<int, int> best_ids{INT32_MAX, INT32_MAX};
        for (Eigen::Index i = 0; i < n; ++i) {
            if (!active[static_cast<std::size_t>(i)]) continue;
            for (Eigen::Index j = i + 1; j < n; ++j) {
                if (!active[static_cast<std::size_t>(j)]) continue;
                const auto ids = std::minmax(id[static_cast<std::size_t>(i)], id[static_cast<std::size_t>(j)]);
                const std::pair<int, int> key{ids.first, ids.second};
                if (d(i, j) < best || (d(i, j) == best && key < best_ids)) {
                    best = d(i, j);
                    best_ids = key;
                    bi = i;
                    bj = j;
                }
            }
        }
        const auto si = static_cast<std::size_t>(bi), sj = static_cast<std::size_t>(bj);
        Merge m;
        m.a = best_ids.first;
        m.b = best_ids.second;
        m.height = best;
        m.size = size[si] + size[sj];
        merges.push_back(m);
        for (Eigen::Index k = 0; k < n; ++k) {
            if (!active[static_cast<std::size_t>(k)] || k == bi || k == bj) continue;
            const double v = (size[si] * d(bi, k) + size[sj] * d(bj, k)) / (size[si] + size[sj]);
            d(bi, k) = d(k, bi) = v;
        }
        active[sj] = false;
        size[si] = m.size;
        id[si] = static_cast<int>(n + step);
    }
    return merges;
}

std::vector<int> cut_tree(const std::vector<Merge>& merges, std::size_t n, std::size_t k) {
    if (k == 0 || k > n) throw std::invalid_argument("cut_tree: k must be in [1, n]");
    std::vector<int> parent(2 * n);
    std::iota(parent.begin(), parent.end(), 0);
    auto find = [&](int x) {
        while (parent[static_cast<std::size_t>(x)] != x) x = parent[static_cast<std::size_t>(x)];
        return x;
    };
    for (std::size_t s = 0; s < n - k && s < merges.size(); ++s) {
        const int root = static_cast<int>(n + s);
        parent[static_cast<std::size_t>(find(merges[s].a))] = root;
        parent[static_cast<std::size_t>(find(merges[s].b))] = root;
    }
    std::map<int, int> label;
    std::vector<int> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const int r = find(static_cast<int>(i));
        auto it = label.emplace(r, static_cast<int>(label.size())).first;
        out[i] = it->second;
    }
    return out;
}

std::vector<std::pair<int, int>> mutual_nearest_neighbours(const Eigen::MatrixXd& d) {
    const Eigen::Index n = d.rows();
    std::vector<Eigen::Index> nn(static_cast<std::size_t>(n), -1);
    for (Eigen::Index i = 0; i < n; ++i) {
        double best = std::numeric_limits<double>::infinity();
        for (Eigen::Index j = 0; j < n; ++j)
            if (j != i && d(i, j) < best) {
                best = d(i, j);
                nn[static_cast<std::size_t>(i)] = j;
            }
    }
    std::vector<std::pair<int, int>> out;
    for (Eigen::Index i = 0; i < n; ++i) {
        const Eigen::Index j = nn[static_cast<std::size_t>(i)];
        if (j > i && nn[static_cast<std::size_t>(j)] == i) out.emplace_back(static_cast<int>(i), static_cast<int>(j));
    }
    return out;
}

}  // namespace phasemap::stats
