// phasemap::stats — average-linkage (UPGMA) clustering, flat cuts and mutual nearest neighbours
// on a distance matrix. Pure; a non-square matrix or an invalid k throws std::invalid_argument.
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

#include <Eigen/Dense>

namespace phasemap::stats {

struct Merge {
    int a = 0, b = 0;       // cluster ids (scipy convention: leaves 0..n−1, merge k creates n + k)
    double height = 0;      // average-linkage distance at which a and b merge
    int size = 0;           // leaves in the new cluster
};
// UPGMA (average linkage) on a symmetric distance matrix; ties broken by the lowest (a, b) ids.
std::vector<Merge> average_linkage(const Eigen::MatrixXd& d);
// Flat clusters: cut the dendrogram into k clusters (undo the last k − 1 merges); labels 0..k−1 in
// order of each cluster's smallest leaf.
std::vector<int> cut_tree(const std::vector<Merge>& merges, std::size_t n, std::size_t k);
// Mutual nearest neighbours: pairs (i < j) with NN(i) = j and NN(j) = i (ties: the lower index).
std::vector<std::pair<int, int>> mutual_nearest_neighbours(const Eigen::MatrixXd& d);

}  // namespace phasemap::stats
