// The capture points inside the block that phasemap refuses per architecture (layers.hpp:
// resid_mid / attn_out / ffn_out). The graph may compute a tensor of that name that is not the
// residual piece the component promises — a scaled residual (granite, minicpm), a post-norm
// (olmo2, exaone4), a tensor that is only verifiable together with one the graph lacks — so a
// component is accepted only where the architecture sweep (tests/archs/sweep) verified it through
// a residual identity, and refused elsewhere. The sweep fails when this table and its
// measurements disagree in either direction.
#include <cstring>
#include <string>

#include "llama_common.hpp"

namespace phasemap::capture {
namespace {

struct ComponentRefusal {
    const char* arch;
    const char* kinds;   // space-separated
    const char* reason;
};

// PM_COMPONENT_TABLE_BEGIN (regenerate from `archs_sweep --emit-components`)
constexpr ComponentRefusal kRefused[] = {
    {"afmoe", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"arctic", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"bailingmoe2", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"cohere2", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"cohere2moe", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"command-r", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"dots3note", "attn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"exaone4", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"falcon", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"falcon-h1", "attn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"gemma", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"gemma2", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"gemma3", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"glm4", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"granite", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"granite_swa", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"granitehybrid", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"granitemoe", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"grok", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"grovemoe", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"hrm_text", "attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"jamba", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"kimi-k3", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"laguna", "attn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"llama4", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"minicpm", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"minicpm3", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"minimax-01", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"muse-glimmer", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"nemotron", "resid_mid", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"olmo2", "resid_mid ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"pangu-embedded", "resid_mid", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"phi3", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"phimoe", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"plamo", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"qwen35", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"qwen35moe", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"qwen3next", "ffn_out", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"rwkv7", "resid_mid", "the architecture sweep cannot verify it (the graph lacks the component it is checked against)"},
    {"spark2_5", "attn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
    {"talkie", "resid_mid attn_out ffn_out", "the residual identity the architecture sweep checks fails for it (the block scales or normalises it before the residual add)"},
};
// PM_COMPONENT_TABLE_END

}  // namespace

const char* component_refusal(const std::string& arch, const std::string& kind) {
    for (const ComponentRefusal& r : kRefused) {
        if (arch != r.arch) continue;
        const std::string kinds = std::string(" ") + r.kinds + " ";
        if (kinds.find(" " + kind + " ") != std::string::npos) return r.reason;
    }
    return nullptr;
}

}  // namespace phasemap::capture
