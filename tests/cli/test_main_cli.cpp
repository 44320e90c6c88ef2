// The phasemap entry point (src/cli/main.cpp): --version names the pinned llama.cpp commit.
#include <gtest/gtest.h>

#include "phasemap/capture/version.hpp"
#include "support/paths.hpp"

using pmtest::run_phasemap;

TEST(Cli, VersionNamesThePinnedLlamaCommit) {
    const auto r = run_phasemap({"--version"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find(phasemap::llama_commit()), std::string::npos) << r.out;
    EXPECT_EQ(phasemap::llama_commit().size(), 40u);
}
