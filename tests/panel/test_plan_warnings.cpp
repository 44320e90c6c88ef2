// Issue 16: the plan warns when seeds are crossed with temperature 0 (greedy decoding ignores the
// seed) and when several token budgets run at temperature 0 (the shorter ones are prefixes).
#include <gtest/gtest.h>

#include <string>

#include "phasemap/panel/manifest.hpp"
#include "phasemap/panel/plan.hpp"

using namespace phasemap::panel;

namespace {
const char* kGrid = R"(
name = "t"
[generation]
temperatures = [0.0, 0.7]
n_predict = [8, 16]
seeds = [1, 2, 3]
[[models]]
label = "a"
path = "a.gguf"
[[models]]
label = "b"
path = "b.gguf"
[models.overrides]
seeds = [9]
[[prompts]]
builtin = "stories"
categories = ["animals"]
limit = 1
)";
}  // namespace

TEST(PanelPlan, WarnsAboutSeedsAndBudgetsAtTemperatureZero) {
    const Manifest m = parse_manifest(kGrid, "m.toml", false);
    const auto w = design_warnings(m);
    ASSERT_EQ(w.size(), 2u);
    // a: seeds 1, 2, 3 at temperatures 0 and 0.7; b overrides seeds = [9] (one seed, no warning).
    EXPECT_NE(w[0].find("crossed with 3 seeds (1, 2, 3) for model(s) a:"), std::string::npos) << w[0];
    EXPECT_NE(w[1].find("token budgets 8, 16 at temperature 0 for model(s) a, b"), std::string::npos) << w[1];
    Manifest sampled = m;
    for (auto& me : sampled.models) me.gen.temperatures = {0.7};
    EXPECT_TRUE(design_warnings(sampled).empty());
}
