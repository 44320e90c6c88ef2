// Replays the fuzz seed corpora (fuzz/corpus/<target>) and every crash/regression input kept
// under tests/hardening/regressions/<target> through the same harnesses libFuzzer runs
// (fuzz/harness.cpp). A harness aborts on a contract violation, so a failure here is a crash
// with the parser's report on stderr.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "harness.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> inputs(const fs::path& dir) {
    std::vector<fs::path> v;
    if (fs::is_directory(dir))
        for (const auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file()) v.push_back(e.path());
    std::sort(v.begin(), v.end());
    return v;
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

class ParserCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(ParserCorpus, SeedsAndRegressionsKeepTheContract) {
    const std::string t = GetParam();
    const fs::path root = PHASEMAP_SOURCE_DIR;
    const auto seeds = inputs(root / "fuzz" / "corpus" / t);
    EXPECT_GE(seeds.size(), 5u) << "seed corpus of " << t << " is missing or tiny";
    auto all = seeds;
    for (const auto& p : inputs(root / "tests" / "hardening" / "regressions" / t)) all.push_back(p);
    for (const auto& p : all) {
        SCOPED_TRACE(p.string());
        const std::string b = slurp(p);
        EXPECT_EQ(pmfuzz::run_target(t, reinterpret_cast<const uint8_t*>(b.data()), b.size()), 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Fuzz, ParserCorpus, ::testing::ValuesIn(pmfuzz::kTargets));

}  // namespace
