// phasemap::stats — the portable seeded random numbers every resampling in phasemap draws from.
// The generator is std::mt19937_64, whose output sequence the C++ standard fixes exactly
// ([rand.predef]: the 10000th output of a default-constructed one is 9981545732273789042);
// integers are drawn from it by uniform_index (rejection sampling), never through
// std::uniform_int_distribution, whose algorithm differs between standard libraries. So a seed
// gives the same bootstrap, permutation and shuffle on every platform.
//
// Owns: Rng is a plain value (std::mt19937_64); the functions draw from the caller's Rng and keep nothing.
// Throws: nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace phasemap::stats {

using Rng = std::mt19937_64;

// Unbiased uniform integer in [0, bound]: draws x = rng() until x ≤ the largest value below a
// multiple of bound + 1, returns x mod (bound + 1). bound = 0 draws nothing and returns 0.
std::uint64_t uniform_index(Rng& rng, std::uint64_t bound);
// Fisher–Yates shuffle with uniform_index (i = n … 2: swap order[i−1] with order[uniform_index(i−1)]).
void shuffle_in_place(std::span<std::uint32_t> order, Rng& rng);
// splitmix64 (Steele, Lea & Flood 2014; Vigna's splitmix64.c) of (seed, stream): the (stream + 1)-th
// output of splitmix64 started at `seed` — independent, reproducible seeds for each statistic.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);
// Bootstrap index vector: n draws with replacement from [0, n) (uniform_index, in order).
std::vector<std::size_t> resample_indices(std::size_t n, Rng& rng);

}  // namespace phasemap::stats
