// Fuzz harnesses for the parsers phasemap owns. Each takes arbitrary bytes, feeds them to one
// parser and checks its contract: either a result that satisfies the documented invariants, or
// an exception of the documented type (std::runtime_error / std::invalid_argument) whose message
// is non-empty. Anything else — another exception type, a broken invariant, a sanitizer report —
// aborts, which libFuzzer records as a crash.
//
// The same functions are linked into the libFuzzer targets (fuzz/fuzz_target.cpp, built by
// scripts/fuzz.sh) and into tests/hardening, which replays the seed corpora and the regression
// inputs in the normal test suite.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pmfuzz {

int fuzz_npy(const uint8_t* data, size_t size);       // io::parse_npy on the bytes
int fuzz_npz(const uint8_t* data, size_t size);       // io::NpzReader on the bytes as a file, every member read
int fuzz_layers(const uint8_t* data, size_t size);    // resolve_layers(spec = bytes[1:], n_layer from bytes[0])
int fuzz_run_file(const uint8_t* data, size_t size);  // io::load_run_npz on an NPZ assembled from the bytes

// Structured input of fuzz_run_file: the bytes split at kMemberSeparator; chunk i becomes the
// member kRunMembers[i] (chunks beyond the list are ignored; an empty chunk means "absent").
inline constexpr const char* kMemberSeparator = "|PM|";
inline const std::vector<std::string> kRunMembers{"hidden_states.npy", "token_ids.npy", "entropy.npy", "top1.npy",
                                                  "margin.npy",        "surprisal.npy", "logits.npy",  "metadata.json"};

#ifdef PM_FUZZ_PANEL
int fuzz_manifest(const uint8_t* data, size_t size);    // panel::parse_manifest (TOML), files not checked
int fuzz_prompts(const uint8_t* data, size_t size);     // panel::parse_prompt_csv (`category,prompt` rows)
#endif
#ifdef PM_FUZZ_AUDIT
int fuzz_hypotheses(const uint8_t* data, size_t size);  // audit::parse_hypotheses (TOML)
#endif
#ifdef PM_FUZZ_CVEC
// steer::read_control_vector on the bytes as a GGUF file, then check_control_vector and flat()
// against kCvecModel.
int fuzz_control_vector(const uint8_t* data, size_t size);
struct CvecModel {
    const char* arch;
    int n_layer, n_embd;
};
inline constexpr CvecModel kCvecModel{"llama", 8, 4};  // fuzz/make_seeds.py writes vectors for it
#endif

// Names of the targets, in the order scripts/fuzz.sh runs them (the panel and audit parsers
// when those modules are part of the build, the control-vector reader when ggml is).
inline const std::vector<std::string> kTargets{"npy", "npz", "layers", "run_file"
#ifdef PM_FUZZ_PANEL
                                               , "manifest", "prompts"
#endif
#ifdef PM_FUZZ_AUDIT
                                               , "hypotheses"
#endif
#ifdef PM_FUZZ_CVEC
                                               , "control_vector"
#endif
};
int run_target(const std::string& name, const uint8_t* data, size_t size);

}  // namespace pmfuzz
