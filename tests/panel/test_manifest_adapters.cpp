// LoRA adapters in the manifest: `adapters = [{ path, scale }]` on a model, paths resolved like
// the model's, problems reported with file:line:column together with the other problems, and
// the run identity covering each adapter's file hash and scale.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "phasemap/panel/manifest.hpp"
#include "support/paths.hpp"

using namespace phasemap::panel;

namespace {

std::string manifest(const std::string& models) {
    return "name = \"lora\"\n[generation]\nseeds = [1, 2]\n" + models + "[[prompts]]\nbuiltin = \"stories\"\nlimit = 1\n";
}

const char* kTwoModels = R"([[models]]
label = "base"
path = "m.gguf"
[[models]]
label = "tuned"
path = "m.gguf"
variant_of = "base"
adapters = [{ path = "lora/a.gguf", scale = 0.5 }, { path = "/abs/b.gguf" }]
)";

std::vector<std::string> problems(const std::string& text, const fs::path& file = "m.toml") {
    try {
        (void)parse_manifest(text, file, true);
    } catch (const ManifestError& e) {
        return e.problems;
    }
    return {};
}

bool has(const std::vector<std::string>& ps, const std::string& needle) {
    for (const auto& p : ps)
        if (p.find(needle) != std::string::npos) return true;
    return false;
}

std::string joined(const std::vector<std::string>& ps) {
    std::string s;
    for (const auto& p : ps) s += p + "\n";
    return s;
}

}  // namespace

TEST(ManifestAdapters, ParsesPathsAndScales) {
    const Manifest m = parse_manifest(manifest(kTwoModels), "dir/m.toml", false);
    ASSERT_EQ(m.models.size(), 2u);
    EXPECT_TRUE(m.models[0].adapters.empty());
    ASSERT_EQ(m.models[1].adapters.size(), 2u);
    EXPECT_EQ(m.models[1].adapters[0].path, fs::path("dir/lora/a.gguf"));  // relative to the manifest
    EXPECT_EQ(m.models[1].adapters[0].scale, 0.5);
    EXPECT_EQ(m.models[1].adapters[1].path, fs::path("/abs/b.gguf"));
    EXPECT_EQ(m.models[1].adapters[1].scale, 1.0);  // default
    // One inline table is a list of one; an integer scale is a number.
    const Manifest one = parse_manifest(manifest("[[models]]\nlabel = \"x\"\npath = \"m.gguf\"\nadapters = { path = \"a.gguf\", scale = 2 }\n"),
                                        "m.toml", false);
    ASSERT_EQ(one.models[0].adapters.size(), 1u);
    EXPECT_EQ(one.models[0].adapters[0].scale, 2.0);
}

TEST(ManifestAdapters, RunIdCoversAdapterHashAndScale) {
    const Manifest m = parse_manifest(manifest(kTwoModels), "m.toml", false);
    const auto g = expand_grid(m);
    const GridPoint* pb = nullptr;
    const GridPoint* pt = nullptr;
    for (const auto& p : g) {
        if (p.model == 0 && !pb) pb = &p;
        if (p.model == 1 && !pt) pt = &p;
    }
    ASSERT_TRUE(pb && pt);
    const std::vector<std::string> ah{"sha-a", "sha-b"};
    // Same model file, same prompt and settings: the adapters alone make the runs differ.
    EXPECT_NE(run_id(m, *pb, "x"), run_id(m, *pt, "x", ah));
    EXPECT_EQ(run_id(m, *pt, "x", ah), run_id(m, *pt, "x", ah));
    EXPECT_NE(run_id(m, *pt, "x", ah), run_id(m, *pt, "x", {"sha-a", "sha-other"}));  // adapter file
    Manifest m2 = m;
    m2.models[1].adapters[0].scale = 0.25;
    EXPECT_NE(run_id(m, *pt, "x", ah), run_id(m2, *pt, "x", ah));  // scale
    Manifest m3 = m;
    std::swap(m3.models[1].adapters[0], m3.models[1].adapters[1]);
    EXPECT_NE(run_id(m, *pt, "x", ah), run_id(m3, *pt, "x", {"sha-b", "sha-a"}));  // order (scales move with files)
    // A model without adapters keeps the identity it had before adapters existed: the same
    // point with the adapters removed equals the base model's id.
    Manifest m4 = m;
    m4.models[1].adapters.clear();
    GridPoint same = *pt;
    same.model = 0;
    EXPECT_EQ(run_id(m4, *pt, "x"), run_id(m, same, "x"));
    // The adapter hashes must be given for a model with adapters.
    EXPECT_THROW((void)run_id(m, *pt, "x"), std::invalid_argument);
    // The grid hash (the DB's manifest_hash) changes with them too.
    const std::vector<std::string> sha{"x", "x"};
    EXPECT_NE(grid_hash(m, sha, {{}, ah}), grid_hash(m, sha, {{}, {"sha-a", "sha-other"}}));
}

TEST(ManifestAdapters, ProblemsHaveFileLineColumn) {
    const auto ps = problems(manifest(R"([[models]]
label = "a"
path = "m.gguf"
adapters = [{ path = "a.gguf", scale = "high", rank = 4 }, "b.gguf", { scale = 1.0 }]
[[models]]
label = "b"
path = "m.gguf"
adapters = "c.gguf"
)"));
    const std::string all = joined(ps);
    EXPECT_TRUE(has(ps, "m.toml:7:")) << all;
    EXPECT_TRUE(has(ps, "'scale' must be a number, not a string")) << all;
    EXPECT_TRUE(has(ps, "unknown key 'rank' in an adapter")) << all;
    EXPECT_TRUE(has(ps, "each adapter must be a table")) << all;
    EXPECT_TRUE(has(ps, "adapter: missing 'path'")) << all;
    EXPECT_TRUE(has(ps, "m.toml:11:12: 'adapters' must be an array of tables")) << all;
}

TEST(ManifestAdapters, MissingAdapterFilesAreReportedWithMissingModels) {
    pmtest::TempDir tmp;
    std::ofstream(tmp / "m.gguf") << "x";
    std::ofstream(tmp / "here.gguf") << "x";
    const std::string text = manifest(R"([[models]]
label = "a"
path = "m.gguf"
adapters = [{ path = "here.gguf" }, { path = "gone.gguf", scale = 1.0 }]
[[models]]
label = "b"
path = "no-model.gguf"
)");
    const auto ps = problems(text, tmp / "m.toml");
    const std::string all = joined(ps);
    ASSERT_EQ(ps.size(), 2u) << all;
    EXPECT_NE(ps[0].find(":7:46: adapter file '" + (tmp / "gone.gguf").string() + "' does not exist"), std::string::npos) << all;
    EXPECT_NE(ps[1].find("model file '" + (tmp / "no-model.gguf").string() + "' does not exist"), std::string::npos) << all;
    // Without the missing files the manifest loads.
    std::ofstream(tmp / "gone.gguf") << "x";
    std::ofstream(tmp / "no-model.gguf") << "x";
    EXPECT_TRUE(problems(text, tmp / "m.toml").empty());
}
