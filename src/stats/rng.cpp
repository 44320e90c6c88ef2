// Portable seeded random numbers (include/phasemap/stats/rng.hpp).
#include "phasemap/stats/rng.hpp"

#include <utility>

namespace phasemap::stats {

std::uint64_t uniform_index(Rng& rng, std::uint64_t bound) {
    if (bound == 0) return 0;
    if (bound == UINT64_MAX) return rng();
    // Accept draws below the largest multiple of (bound + 1), so every residue is equally likely.
    const std::uint64_t range = bound + 1;
    const std::uint64_t limit = UINT64_MAX - (UINT64_MAX % range + 1) % range;
    std::uint64_t x;
    do x = rng();
    while (x > limit);
    return x % range;
}

void shuffle_in_place(std::span<std::uint32_t> order, Rng& rng) {
    for (std::size_t i = order.size(); i > 1; --i) {
        const std::size_t j = uniform_index(rng, i - 1);
        std::swap(order[i - 1], order[j]);
    }
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

std::vector<std::size_t> resample_indices(std::size_t n, Rng& rng) {
    std::vector<std::size_t> idx(n);
    if (n == 0) return idx;
    for (auto& i : idx) i = static_cast<std::size_t>(uniform_index(rng, n - 1));
    return idx;
}

}  // namespace phasemap::stats
