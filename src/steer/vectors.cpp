// Steering directions from contrastive states (include/phasemap/steer/vectors.hpp).
#include "phasemap/steer/vectors.hpp"

#include <fmt/core.h>

#include <Eigen/Dense>
#include <cmath>
#include <stdexcept>

namespace phasemap::steer {

VectorMethod parse_vector_method(const std::string& s) {
    if (s == "mean-diff" || s == "mean_diff") return VectorMethod::mean_diff;
    if (s == "pca") return VectorMethod::pca;
    throw std::invalid_argument(fmt::format("unknown method '{}' (use mean-diff or pca)", s));
}

const char* method_name(VectorMethod m) { return m == VectorMethod::mean_diff ? "mean-diff" : "pca"; }

std::vector<float> build_direction(const std::vector<float>& pos, const std::vector<float>& neg, size_t n, size_t d, VectorMethod m) {
    if (n == 0 || d == 0) throw std::invalid_argument("no contrastive pair to build a direction from");
    if (pos.size() != n * d || neg.size() != n * d)
        throw std::invalid_argument(fmt::format("contrastive states have {} and {} values, expected {} × {}", pos.size(), neg.size(), n, d));
    Eigen::MatrixXd D(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < d; ++j) {
            const double x = double(pos[i * d + j]) - double(neg[i * d + j]);
            if (!std::isfinite(x)) throw std::invalid_argument("contrastive states hold a non-finite value");
            D(Eigen::Index(i), Eigen::Index(j)) = x;
        }
    const Eigen::VectorXd mean = D.colwise().mean().transpose();
    Eigen::VectorXd dir = mean;
    if (m == VectorMethod::pca) {
        // Leading right singular vector of the difference matrix = first principal axis of the
        // uncentred differences.
        Eigen::JacobiSVD<Eigen::MatrixXd> svd(D, Eigen::ComputeThinV);
        Eigen::VectorXd v = svd.matrixV().col(0);
        if (v.dot(mean) < 0) v = -v;
        dir = v * mean.norm();
    }
    std::vector<float> out(d);
    for (size_t j = 0; j < d; ++j) out[j] = float(dir(Eigen::Index(j)));
    return out;
}

}  // namespace phasemap::steer
