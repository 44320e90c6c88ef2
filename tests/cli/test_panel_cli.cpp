// `phasemap panel` (src/cli/cmd_panel.cpp) through the binary: `panel slurm` creates the folder its
// #SBATCH --output points into (issue 17, class 8).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/paths.hpp"

namespace {

namespace fs = std::filesystem;

TEST(CliUsability, PanelSlurmCreatesItsLogFolder) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    std::ofstream(d / "m.toml") << "name = \"s\"\n[[models]]\nlabel = \"s\"\npath = \"" << m.string()
                                << "\"\n[[prompts]]\nbuiltin = \"stories\"\nlimit = 1\n";
    const auto logs = d / "runs" / "logs";
    const auto r = pmtest::run_phasemap({"panel", "slurm", (d / "m.toml").string(), "--out-dir", logs.string(), "-o", (d / "job.sh").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(fs::is_directory(logs));
    std::ifstream in(d / "job.sh");
    const std::string script((std::istreambuf_iterator<char>(in)), {});
    EXPECT_NE(script.find("#SBATCH --output=" + fs::absolute(logs).string() + "/slurm-"), std::string::npos) << script;
    EXPECT_TRUE((fs::status(d / "job.sh").permissions() & fs::perms::owner_exec) != fs::perms::none);
}

}  // namespace
