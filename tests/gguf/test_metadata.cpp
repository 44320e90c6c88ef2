// The one GGUF-metadata reader (include/phasemap/gguf/metadata.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "phasemap/gguf/metadata.hpp"
#include "phasemap/modelgen/modelgen.hpp"
#include "support/paths.hpp"

using namespace phasemap;

TEST(GgufMetadata, ReadsTheFactsOfAModelHeader) {
    const auto vocab = pmtest::llama_src_dir() / "models";
    if (!std::filesystem::is_directory(vocab)) GTEST_SKIP() << "llama.cpp vocab files not found";
    pmtest::TempDir d;
    const modelgen::ModelSpec spec = modelgen::preset("qwen2", "tiny");
    modelgen::write_random_model(spec, vocab, d / "m.gguf");
    const gguf::Metadata m = gguf::read_metadata(d / "m.gguf");
    EXPECT_EQ(m.architecture, "qwen2");
    EXPECT_EQ(m.n_layer, int64_t(spec.n_layer));
    EXPECT_EQ(m.n_embd, int64_t(spec.n_embd));
    EXPECT_EQ(m.n_ctx_train, int64_t(spec.n_ctx));
    EXPECT_NE(std::find(m.tensors.begin(), m.tensors.end(), "token_embd.weight"), m.tensors.end());
    EXPECT_NE(std::find(m.tensors.begin(), m.tensors.end(), "blk." + std::to_string(int(spec.n_layer) - 1) + ".attn_q.weight"),
              m.tensors.end());
}

TEST(GgufMetadata, NamesTheFileItCannotRead) {
    pmtest::TempDir d;
    std::ofstream(d / "x.gguf") << "not a gguf";
    try {
        gguf::read_metadata(d / "x.gguf");
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("x.gguf' is not a readable GGUF file"), std::string::npos) << e.what();
    }
}
