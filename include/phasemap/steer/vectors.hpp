// Steering vectors from contrastive prompt pairs (repeng-style), per layer, with Eigen.
//
// Owns: nothing kept; spans are read during the call, vectors returned are owned. Throws: as stated below.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace phasemap::steer {

enum class VectorMethod { mean_diff, pca };
VectorMethod parse_vector_method(const std::string& s);  // "mean-diff" | "pca"; throws std::invalid_argument
const char* method_name(VectorMethod m);

// pos and neg: n pairs of states of one layer, row-major [n, d] (row i of pos pairs with row i
// of neg).
//   mean_diff: mean_i (pos_i − neg_i).
//   pca: first principal component of the paired differences pos_i − neg_i (uncentred, as repeng's
//        pca_diff), scaled to the norm of the mean difference and signed so that it points
//        the way the mean difference does (a direction that makes outputs more "pos").
// Throws std::invalid_argument for mismatched shapes, n = 0, or non-finite values.
std::vector<float> build_direction(const std::vector<float>& pos, const std::vector<float>& neg, size_t n, size_t d, VectorMethod m);

}  // namespace phasemap::steer
