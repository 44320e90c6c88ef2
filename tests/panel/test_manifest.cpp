// Manifest parsing (every problem at once, with file:line:column), prompt CSVs, built-in panels,
// grid expansion, run identity and shards. No model is run here.
#include <gtest/gtest.h>

#include <set>

#include "phasemap/panel/manifest.hpp"
#include "phasemap/panel/prompts.hpp"

using namespace phasemap::panel;

namespace {

const char* kGood = R"(
name = "t"
[generation]
temperatures = [0.0, 0.7]
n_predict = [8, 16]
seeds = [1, 2, 3]
[metrics]
norms = ["raw", "clipped_mad"]
late_window = 0.5
[[models]]
label = "a"
path = "a.gguf"
covariates = { training_loss = 2.5 }
[[models]]
label = "b"
path = "b.gguf"
variant_of = "a"
[models.overrides]
seeds = [9]
[[prompts]]
builtin = "stories"
categories = ["animals", "family"]
limit = 2
)";

std::vector<std::string> problems(const std::string& text) {
    try {
        (void)parse_manifest(text, "m.toml", true);
    } catch (const ManifestError& e) {
        return e.problems;
    }
    return {};
}

}  // namespace

TEST(Manifest, ParsesAxesOverridesAndBuiltinPrompts) {
    const Manifest m = parse_manifest(kGood, "dir/m.toml", false);
    ASSERT_EQ(m.models.size(), 2u);
    EXPECT_EQ(m.models[0].path, fs::path("dir/a.gguf"));
    EXPECT_EQ(m.models[0].covariates.at("training_loss"), 2.5);
    EXPECT_EQ(m.models[1].variant_of, "a");
    EXPECT_EQ(m.models[1].gen.seeds, (std::vector<uint64_t>{9}));
    EXPECT_EQ(m.models[1].gen.temperatures.size(), 2u);  // not overridden
    ASSERT_EQ(m.prompts.size(), 4u);
    EXPECT_EQ(m.prompts[0].category, "animals");
    EXPECT_EQ(m.prompts[3].category, "family");
    EXPECT_EQ(m.analysis.token.late_window, 0.5);
    const auto g = expand_grid(m);
    // a: 4 prompts × 2 temps × 2 budgets × 3 seeds × 2 norms; b: seeds overridden to one.
    EXPECT_EQ(g.size(), 4u * 2 * 2 * 3 * 2 + 4u * 2 * 2 * 1 * 2);
    // Norm variants share one generation group.
    EXPECT_EQ(g[0].group, g[1].group);
    EXPECT_NE(g[0].norm, g[1].norm);
    EXPECT_NE(g[1].group, g[2].group);
}

TEST(Manifest, RunIdsAreStableAndCoverEverySetting) {
    const Manifest m = parse_manifest(kGood, "m.toml", false);
    const auto g = expand_grid(m);
    std::set<std::string> ids;
    for (const auto& p : g) ids.insert(run_id(m, p, "sha-" + m.models[p.model].label));
    EXPECT_EQ(ids.size(), g.size());
    EXPECT_EQ(run_id(m, g[0], "x"), run_id(m, g[0], "x"));
    EXPECT_NE(run_id(m, g[0], "x"), run_id(m, g[0], "y"));  // model file hash
    Manifest m2 = m;
    m2.analysis.token.collapse_threshold = 0.01;  // a metric option
    EXPECT_NE(run_id(m, g[0], "x"), run_id(m2, g[0], "x"));
    Manifest m3 = m;
    m3.models[0].gen.top_p = 0.9;
    EXPECT_NE(run_id(m, g[0], "x"), run_id(m3, g[0], "x"));
    Manifest m4 = m;
    m4.models[0].label = "renamed";  // the label is not part of the identity
    EXPECT_EQ(run_id(m, g[0], "x"), run_id(m4, g[0], "x"));
}

TEST(Manifest, ShardsPartitionTheGrid) {
    const Manifest m = parse_manifest(kGood, "m.toml", false);
    const auto g = expand_grid(m);
    for (size_t n : {1u, 3u, 4u}) {
        std::vector<int> hit(g.size(), 0);
        for (size_t i = 1; i <= n; ++i) {
            const Shard s = parse_shard(std::to_string(i) + "/" + std::to_string(n));
            for (size_t k = 0; k < g.size(); ++k) hit[k] += s.contains(g[k].group);
        }
        for (int h : hit) EXPECT_EQ(h, 1);
    }
    EXPECT_THROW(parse_shard("0/4"), std::invalid_argument);
    EXPECT_THROW(parse_shard("5/4"), std::invalid_argument);
    EXPECT_THROW(parse_shard("2of4"), std::invalid_argument);
    EXPECT_THROW(parse_shard("1/4x"), std::invalid_argument);
}

TEST(Manifest, ReportsEveryProblemAtOnceWithPositions) {
    const auto p = problems(R"(name = 3
colour = "blue"
[generation]
temperatures = ["hot"]
n_predict = 0
[metrics]
norms = ["raw", "zscore"]
[[models]]
label = "a"
path = "does-not-exist.gguf"
[[models]]
label = "a"
path = "also-missing.gguf"
sizee = 1
[[prompts]]
builtin = "stories"
categories = ["dragons"]
)");
    ASSERT_EQ(p.size(), 10u) << ::testing::PrintToString(p);
    auto has = [&](const std::string& prefix, const std::string& text) {
        for (const auto& s : p)
            if (s.starts_with(prefix) && s.find(text) != std::string::npos) return true;
        return false;
    };
    EXPECT_TRUE(has("m.toml:1:8:", "'name' must be a string"));
    EXPECT_TRUE(has("m.toml:2:1:", "unknown key 'colour'"));
    EXPECT_TRUE(has("m.toml:4:17:", "must be a number, not a string"));
    EXPECT_TRUE(has("m.toml:5:13:", "must be at least 1"));
    EXPECT_TRUE(has("m.toml:7:", "unknown normalisation 'zscore'"));
    EXPECT_TRUE(has("m.toml:10:8:", "does-not-exist.gguf' does not exist"));
    EXPECT_TRUE(has("m.toml:12:9:", "duplicate model label 'a'"));
    EXPECT_TRUE(has("m.toml:13:8:", "also-missing.gguf' does not exist"));
    EXPECT_TRUE(has("m.toml:14:1:", "unknown key 'sizee'"));
    EXPECT_TRUE(has("m.toml:17:", "category 'dragons' is not in this prompt set"));
}

TEST(Manifest, SyntaxErrorsAndMissingSections) {
    auto p = problems("name = \"x\"\n[generation\n");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_TRUE(p[0].starts_with("m.toml:2:")) << p[0];
    p = problems("name = \"x\"\n");
    ASSERT_EQ(p.size(), 2u);
    EXPECT_NE(p[0].find("no [[models]]"), std::string::npos);
    EXPECT_NE(p[1].find("no [[prompts]]"), std::string::npos);
    p = problems("[[models]]\nlabel='a'\npath='/dev/null'\nvariant_of='zz'\n[[prompts]]\nbuiltin='nope'\nfile='x.csv'\n");
    ASSERT_EQ(p.size(), 3u) << ::testing::PrintToString(p);
    EXPECT_NE(p[0].find("m.toml:3:6: model file '/dev/null' does not exist"), std::string::npos);  // not a regular file
    EXPECT_NE(p[1].find("m.toml:4:12: 'variant_of' = \"zz\""), std::string::npos);
    EXPECT_NE(p[2].find("m.toml:5:1: [[prompts]] #1: give exactly one of 'builtin'"), std::string::npos);
}

TEST(Prompts, BuiltinPanelsHaveSixCategoriesOfTwelve) {
    EXPECT_EQ(builtin_panel_names(), (std::vector<std::string>{"general", "stories"}));
    for (const auto& name : builtin_panel_names()) {
        const auto ps = parse_prompt_csv(builtin_panel_csv(name), name);
        std::map<std::string, int> n;
        std::set<std::string> unique;
        for (const auto& p : ps) ++n[p.category], unique.insert(p.text);
        EXPECT_EQ(n.size(), 6u) << name;
        for (const auto& [c, k] : n) EXPECT_GE(k, 12) << name << " " << c;
        EXPECT_EQ(unique.size(), ps.size()) << name << ": duplicate prompts";
    }
    const auto g = parse_prompt_csv(builtin_panel_csv("general"), "general");
    std::set<std::string> cats;
    for (const auto& p : g) cats.insert(p.category);
    EXPECT_EQ(cats, (std::set<std::string>{"code", "creative_writing", "factual_recall", "false_premise",
                                           "instruction_following", "scientific_reasoning"}));
}

TEST(Prompts, CsvQuotingAndErrors) {
    const auto ps = parse_prompt_csv("category,prompt\n# comment\na,plain, with comma\nb,\"quoted \"\"x\"\", y\"\n\na,\"two\nlines\"\r\n", "f.csv");
    ASSERT_EQ(ps.size(), 3u);
    EXPECT_EQ(ps[0].text, "plain, with comma");
    EXPECT_EQ(ps[1].text, "quoted \"x\", y");
    EXPECT_EQ(ps[2].text, "two\nlines");
    EXPECT_EQ(ps[2].index, 1);
    auto err = [](const std::string& t) {
        try {
            parse_prompt_csv(t, "f.csv");
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(err("a,ok\nno comma here\n").find("f.csv:2:"), std::string::npos);
    EXPECT_NE(err("a,\"open\n").find("unterminated"), std::string::npos);
    EXPECT_NE(err(",x\n").find("empty category"), std::string::npos);
    EXPECT_NE(err("category,prompt\n").find("no `category,prompt` rows"), std::string::npos);
}
