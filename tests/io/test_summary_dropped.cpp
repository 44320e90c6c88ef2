// A token the layer axis drops for non-finite states carries its reason into the summary JSON
// (issue 17, class 2), as the token axis's missing values do.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/io/summary_json.hpp"

namespace {

TEST(SummaryJson, LayerAxisDroppedTokensCarryTheirReason) {
    const size_t T = 6, L = 4, d = 5;
    std::vector<float> states(T * L * d);
    std::mt19937 rng(7);
    std::normal_distribution<float> n(0, 1);
    for (auto& x : states) x = n(rng);
    states[(3 * L + 2) * d + 1] = std::nanf("");  // token 3, layer 2
    const std::vector<std::string> names{"hf:1", "hf:2", "hf:3", "hf:4"};
    const phasemap::metrics::StatesView v{states.data(), T, L, d, names};
    const auto s = phasemap::metrics::analyze_run(v, {});
    phasemap::io::SummaryContext ctx;
    const auto j = phasemap::io::summary_json(s, ctx);
    ASSERT_TRUE(j.contains("layer_axis_dropped_tokens")) << j.dump();
    ASSERT_EQ(j["layer_axis_dropped_tokens"].size(), 1u);
    EXPECT_EQ(j["layer_axis_dropped_tokens"][0]["t"], 3);
    EXPECT_NE(j["layer_axis_dropped_tokens"][0]["reason"].get<std::string>().find("non-finite"), std::string::npos);
    // A clean run has no such key.
    states[(3 * L + 2) * d + 1] = 0.5f;
    EXPECT_FALSE(phasemap::io::summary_json(phasemap::metrics::analyze_run(v, {}), ctx).contains("layer_axis_dropped_tokens"));
}

}  // namespace
