# stats (issue 12): the one statistics module — quantiles, the portable seeded RNG, bootstrap and
# permutation, tests, linear models, clustering. Pure (spans in, values out); depends on nothing of
# ours, only Eigen and Boost.Math. Used by metrics, audit, steer and report; tests/stats.
find_package(Boost REQUIRED)
file(GLOB PM_STATS_SRC CONFIGURE_DEPENDS src/stats/*.cpp)
add_library(phasemap_stats STATIC ${PM_STATS_SRC})
target_include_directories(phasemap_stats PUBLIC include)
target_link_libraries(phasemap_stats PUBLIC Eigen3::Eigen Boost::boost)
pm_test(stats phasemap_stats)
target_link_libraries(phasemap_metrics PUBLIC phasemap_stats)   # metrics may use stats (DESIGN.md)
