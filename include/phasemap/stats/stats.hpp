// phasemap::stats — the one statistics module (DESIGN.md: depends on nothing of ours; Boost.Math
// and Eigen only). Quantiles and descriptive statistics, the portable seeded RNG, bootstrap and
// permutation, tests and correlations, linear models, clustering. This header includes them all.
#pragma once
#include "phasemap/stats/bootstrap.hpp"
#include "phasemap/stats/cluster.hpp"
#include "phasemap/stats/descriptive.hpp"
#include "phasemap/stats/inference.hpp"
#include "phasemap/stats/linear.hpp"
#include "phasemap/stats/rng.hpp"
